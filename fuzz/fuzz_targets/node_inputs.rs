//! One node fed arbitrary sequences of inputs — frames from arbitrary peers
//! (structured and raw), clock advances, local commands — with every
//! invariant checked after every step (see `mpreg_fuzz::harness`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = arbitrary::Unstructured::new(data);
    let _ = mpreg_fuzz::harness::Single::run(&mut u);
});
