//! The fuzz targets' invariants as proptests, so they run in the normal
//! `cargo test` without libFuzzer. The harness is the fuzz crate's own
//! (`fuzz/src/harness.rs`, included by path): the same inputs, decoded
//! from bytes by `arbitrary`, and the same checks after every step.
//!
//! * one node fed arbitrary inputs keeps its caps, never marks itself Dead
//!   and never moves a version backwards;
//! * two nodes behind a lossy, duplicating, reordering link converge once
//!   it heals;
//! * every protocol configuration that validates makes working nodes;
//! * every committed seed of the fuzz targets (`fuzz/seeds/`) passes.

#[allow(dead_code, unreachable_pub)]
#[path = "../../fuzz/src/harness.rs"]
mod harness;

use arbitrary::Unstructured;
use proptest::prelude::*;
use std::path::Path;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn one_node_keeps_every_invariant_under_arbitrary_input(data in bytes(3000)) {
        let _ = harness::Single::run(&mut Unstructured::new(&data));
    }

    #[test]
    fn two_nodes_converge_once_a_faulty_link_heals(data in bytes(600)) {
        let _ = harness::Pair::run(&mut Unstructured::new(&data));
    }

    #[test]
    fn configurations_that_validate_make_working_nodes(data in bytes(200)) {
        if let Ok(c) = harness::tweaked_config(&mut Unstructured::new(&data)) {
            harness::check_config(&c);
        }
    }
}

/// The committed inputs of a fuzz target under `fuzz/KIND/TARGET/`.
fn inputs(kind: &str, target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target);
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        out.push(std::fs::read(e.unwrap().path()).unwrap());
    }
    assert!(!out.is_empty(), "no inputs in {}", dir.display());
    out
}

/// The committed seeds of a fuzz target (`fuzz/seeds/TARGET/`).
fn seeds(target: &str) -> Vec<Vec<u8>> {
    inputs("seeds", target)
}

/// The protocol-config mode of the config target (its TOML and
/// environment mode needs mpreg-tokio, which this crate cannot depend on).
fn check_config_input(s: &[u8]) {
    if let Some((&mode, rest)) = s.split_first()
        && mode % 3 == 1
        && let Ok(c) = harness::tweaked_config(&mut Unstructured::new(rest))
    {
        harness::check_config(&c);
    }
}

#[test]
fn the_committed_seeds_pass() {
    for s in seeds("node_inputs") {
        let _ = harness::Single::run(&mut Unstructured::new(&s));
    }
    for s in seeds("node_pair") {
        let _ = harness::Pair::run(&mut Unstructured::new(&s));
    }
    for s in seeds("frame_decode") {
        let _ = mpreg_proto::wire::decode(&s, 1 << 20, None);
    }
    for s in seeds("config") {
        check_config_input(&s);
    }
}

/// Every input that once crashed a target (`fuzz/regressions/TARGET/`, kept
/// as libFuzzer saved it) now passes. `fuzz/run-ci.sh` replays them all
/// through the targets themselves, TOML and environment mode included.
#[test]
fn past_crashes_stay_fixed() {
    for s in inputs("regressions", "node_inputs") {
        let _ = harness::Single::run(&mut Unstructured::new(&s));
    }
    for s in inputs("regressions", "config") {
        check_config_input(&s);
    }
}
