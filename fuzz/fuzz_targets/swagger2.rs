//! Any bytes into the Swagger 2.0 parser: an error or a model, never a panic; a model's
//! endpoints can always be extracted.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = buckler_docs::parse_swagger2(data, &buckler_docs::Limits::default()) {
        let _ = buckler_docs::endpoints(&model);
    }
});
