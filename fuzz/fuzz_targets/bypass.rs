//! Any text as a --bypass value: an error or a sorted, deduplicated layer set, never a panic
//! or a huge range expansion; the sweep then accepts it exactly when its layers exist.
#![no_main]
use libfuzzer_sys::fuzz_target;
use llm_mem::memorize::settings::{parse_bypass, sweep};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(set) = parse_bypass(text) {
        let layers = set.layers();
        assert!(!layers.is_empty());
        assert!(layers.windows(2).all(|w| w[0] < w[1]));
        let fits = layers.iter().all(|&l| l < 24);
        assert_eq!(sweep(24, 24, std::slice::from_ref(&set)).is_ok(), fits);
    }
});
