//! Any text (`template\npath`) as a path template and a request path: a parse error or a
//! template that a table can hold and look up without panicking or running away.
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
