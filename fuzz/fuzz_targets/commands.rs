#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use oxidis::fuzzing::CommandFuzzer;

thread_local! {
    static FUZZER: RefCell<CommandFuzzer> = RefCell::new(CommandFuzzer::default());
}

fuzz_target!(|data: &[u8]| FUZZER.with(|f| f.borrow_mut().run(data)));
