//! Any bytes into the Swagger 1.2 parser: the input is split at the first NUL byte into a
//! resource listing and one API declaration.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = buckler_docs::Limits::default();
    let (listing, declaration) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let _ = buckler_docs::swagger1_listing(listing, &limits);
    if let Ok(model) = buckler_docs::parse_swagger1(listing, &[declaration.to_vec()], &limits) {
        let _ = buckler_docs::endpoints(&model);
    }
});
