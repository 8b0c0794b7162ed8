//! Configuration: TOML files and `MPREG_*` environment values resolved into
//! `mpreg_tokio` Settings (typed errors, never a panic), and protocol
//! configurations (fuzzed tweaks of a small one, or wholly arbitrary):
//! any that validates must make nodes that run without panicking.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use mpreg_fuzz::{harness, settings};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut u = Unstructured::new(rest);
    match mode % 3 {
        0 => {
            let _ = settings::run(&mut u);
        }
        1 => {
            if let Ok(c) = harness::tweaked_config(&mut u) {
                harness::check_config(&c);
            }
        }
        _ => {
            if let Ok(c) = mpreg_proto::Config::arbitrary(&mut u) {
                harness::check_config(&c);
            }
        }
    }
});
