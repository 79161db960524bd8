//! Any bytes as a checkpoint's pickle: the guard answers without panicking, and whatever it
//! accepts names only allowed globals.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = llm_mem::pickle_guard::check_pickle(data);
});
