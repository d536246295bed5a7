//! Any bytes into the OpenAPI 3.0/3.1 parser: an error or a model, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = buckler_docs::parse_openapi3(data, &buckler_docs::Limits::default()) {
        let _ = buckler_docs::endpoints(&model);
    }
});
