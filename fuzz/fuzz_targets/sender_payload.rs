//! A sender's payload through each preset mapping: events or errors naming
//! the item, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tollgate::domain::ids::SourceSystem;
use tollgate::domain::presets::{NAMES, preset};

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let source = SourceSystem::parse("fuzz").expect("a valid name");
    let params = serde_json::json!({"project": "OPS"});
    for name in NAMES {
        if let Some(m) = preset(name) {
            let _ = m.apply(&payload, &source, &params);
        }
    }
});
