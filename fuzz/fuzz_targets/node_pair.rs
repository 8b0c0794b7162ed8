//! Two nodes exchanging frames through a fuzzer-controlled link that loses,
//! duplicates and reorders them, with local commands and clock advances;
//! once the link is made clean they must converge (equal digests and
//! replicated state, each Alive in the other's table).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = arbitrary::Unstructured::new(data);
    let _ = mpreg_fuzz::harness::Pair::run(&mut u);
});
