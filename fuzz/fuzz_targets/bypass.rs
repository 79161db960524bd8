//! Any text as a --bypass or --ablate value: an error or a setting, never a panic or a huge
//! range expansion; a --bypass set is a sorted, deduplicated layer set that the sweep accepts
//! exactly when its layers exist, and an --ablate setting's label parses back to it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use llm_mem::intervene::{parse_bypass, parse_setting, sweep, ModelSites};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(set) = parse_bypass(text) {
        let layers = set.bypass_layers().expect("a bypass set");
        assert!(!layers.is_empty());
        assert!(layers.windows(2).all(|w| w[0] < w[1]));
        let fits = layers.iter().all(|&l| l < 24);
        let model = ModelSites {
            layers: 24,
            heads: 4,
        };
        assert_eq!(
            sweep(model, None, &[], std::slice::from_ref(&set)).is_ok(),
            fits
        );
    }
    if let Ok(set) = parse_setting(text) {
        assert_eq!(parse_setting(&set.label()).as_ref(), Ok(&set));
    }
});
