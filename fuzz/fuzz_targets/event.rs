//! Event parsing and validation, and batch parsing: any bytes give an event
//! or a list of errors naming fields, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(errors) = tollgate::domain::validation::parse_event(data) {
        assert!(!errors.0.is_empty());
        for e in &errors.0 {
            assert!(!e.field.is_empty() || !e.message.is_empty());
        }
    }
    let _ = tollgate::domain::batch::parse_batch(data);
});
