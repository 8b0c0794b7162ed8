//! The conformance scenarios over WebSockets (mpreg-tokio) on loopback.

use mpreg_conformance::real::RealHarness;
use mpreg_conformance::scenarios::run_all;
use mpreg_tokio::WsTransport;

#[test]
fn websocket_passes_every_conformance_scenario() {
    let report = run_all(|| RealHarness::new("ws", || WsTransport));
    eprintln!("{}", report.table());
}
