//! Any bytes as a token-id .npy: an error or rows whose shape matches the ids, never a panic
//! or a huge allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rows) = llm_mem::memorize::npy::parse_token_rows(data) {
        assert_eq!(rows.ids.len(), rows.rows * rows.cols);
        assert!(rows.rows > 0 && rows.cols > 0);
    }
});
