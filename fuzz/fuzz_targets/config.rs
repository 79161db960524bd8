//! Any text as config.json: an error or a config whose sizes are consistent, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use llm_mem::model::arch::gpt_neo::GptNeoConfig;
use llm_mem::model::ModelConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = ModelConfig::from_json(text) {
        assert!(config.num_layers() > 0 && config.vocab_size() > 0);
        if let Some(c) = config.family_config::<GptNeoConfig>() {
            assert_eq!(c.layer_kinds().len(), c.num_layers);
        }
    }
});
