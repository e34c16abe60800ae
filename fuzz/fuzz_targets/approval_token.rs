//! Approval link tokens: any string decodes to a claim only with a valid
//! MAC, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tollgate::domain::approval::verify_link;
use tollgate::domain::secret::Secret;
use tollgate::domain::time::Timestamp;

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let keys = [Secret::new("fuzz-link-key")];
    // Without the key no input can carry a valid MAC.
    assert!(verify_link(&token, &keys, Timestamp(1_800_000_000_000)).is_err());
});
