//! Shared code of the fuzz targets. The harness is also compiled into
//! mpreg-proto's tests (`tests/fuzz_invariants.rs`), so it stays free of
//! libFuzzer.

pub mod harness;
pub mod settings;
