//! Any text as a configuration file and as a strict-JSON upstream list: errors with
//! positions, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = buckler_config::parse(text, std::path::Path::new("fuzz.json5"));
    let _ = buckler_config::parse_upstreams(text, "fuzz", &buckler_config::LambdaDefaults::default());
});
