#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| oxidis::fuzzing::hll_payload(data));
