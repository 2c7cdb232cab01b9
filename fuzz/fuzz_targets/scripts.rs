#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use oxidis::fuzzing::ScriptFuzzer;

thread_local! {
    static FUZZER: RefCell<ScriptFuzzer> = RefCell::new(ScriptFuzzer::default());
}

fuzz_target!(|data: &[u8]| FUZZER.with(|f| {
    f.borrow_mut().run(data);
}));
