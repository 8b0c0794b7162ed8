//! The conformance scenarios over QUIC (mpreg-quic) on loopback.

use mpreg_conformance::real::RealHarness;
use mpreg_conformance::scenarios::run_all;
use mpreg_quic::QuicTransport;

#[test]
fn quic_passes_every_conformance_scenario() {
    let report = run_all(|| {
        RealHarness::new("quic", || {
            QuicTransport::self_signed().unwrap_or_else(|e| panic!("a QUIC identity: {e}"))
        })
    });
    eprintln!("{}", report.table());
}
