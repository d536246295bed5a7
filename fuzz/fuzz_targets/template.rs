//! Any text as a path template: an error or a template whose canonical form parses back to
//! an equal template, and which a table can hold and look up without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (template, path) = text.split_once('\n').unwrap_or((text, "/a/b"));
    let Ok(parsed) = buckler_route::PathTemplate::parse(template) else { return };
    let mut builder = buckler_route::RoutingTableBuilder::new();
    builder.group_mut(parsed.clone(), http_get(), || ());
    let table = builder.build();
    let _ = table.lookup(&http_get(), path);
    let _ = parsed.matches(path);
});

fn http_get() -> http::Method {
    http::Method::GET
}
