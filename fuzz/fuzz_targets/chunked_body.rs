//! Any bytes as the body of a chunked HTTP/1.1 request (after a fixed head), through the
//! gateway's connection watch into hyper's server as the listener configures it, the body read
//! frame by frame as the pipeline streams it. Properties: nothing panics, the connection ends
//! (a malformed or truncated body fails the body, never hangs it), a body whose bytes look
//! like a header block with both framing fields still only raises the watch's alarm (which the
//! checks apply to chunked requests), and any error response the watch rewrote is well formed.
#![no_main]

#[path = "../../crates/buckler-gateway/src/resilience/framing.rs"]
#[allow(dead_code)]
mod framing;
mod http1;

use libfuzzer_sys::fuzz_target;

const HEAD: &[u8] = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let mut input = Vec::with_capacity(HEAD.len() + data.len());
    input.extend_from_slice(HEAD);
    input.extend_from_slice(data);
    let served = http1::serve(&input);
    assert!(
        !served.alarm || http1::expected_alarm(&input),
        "the connection raised an alarm the bytes do not hold"
    );
    http1::check_written(&served.written);
});
