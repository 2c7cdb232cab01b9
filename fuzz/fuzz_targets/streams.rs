#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut session = oxidis::embedded::Session::default();
    oxidis::fuzzing::stream_payload(&mut session, data);
});
