//! The conformance scenarios over WebSockets on async-std (mpreg-async-std)
//! on loopback: the same assertions as on tokio.

use mpreg_conformance::real::RealHarness;
use mpreg_conformance::scenarios::run_all;

#[test]
fn async_std_passes_every_conformance_scenario() {
    let report = run_all(|| RealHarness::new("async-std", || mpreg_async_std::WsTransport));
    eprintln!("{}", report.table());
}
