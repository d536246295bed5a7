//! Any bytes as what a client sends on an HTTP/1.1 connection, through the gateway's own
//! request-head handling: the connection watch that catches `Content-Length` with
//! `Transfer-Encoding` and rewrites hyper's empty error responses
//! (crates/buckler-gateway/src/resilience/framing.rs, compiled here from its source), in front
//! of hyper's server as the listener configures it. Properties: nothing panics, the connection
//! ends, the watch's alarm does not depend on how the bytes were split and agrees with a plain
//! line-by-line reading, and a rewritten error response is well formed.
#![no_main]

#[path = "../../crates/buckler-gateway/src/resilience/framing.rs"]
#[allow(dead_code)]
mod framing;
mod http1;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The watch alone: whole, and split at a point the input chooses.
    let whole = framing::Scanner::default().feed(data);
    assert_eq!(
        whole,
        http1::expected_alarm(data),
        "the watch disagrees with the reference"
    );
    if let Some(&first) = data.first() {
        let at = (first as usize * 7) % data.len();
        let mut scanner = framing::Scanner::default();
        let split = scanner.feed(&data[..at]) | scanner.feed(&data[at..]);
        assert_eq!(
            whole, split,
            "the alarm depends on where the bytes were split"
        );
    }
    // hyper's own error responses, as the watch rewrites them.
    if let Some(rewritten) = framing::rewrite_hyper_error(data) {
        http1::check_written(&rewritten);
    }
    // The whole connection.
    let served = http1::serve(data);
    // hyper may stop reading at an error before the end: the connection's alarm can only
    // miss what it never read, never be raised by what is not there.
    assert!(
        !served.alarm || whole,
        "the connection raised an alarm the bytes do not hold"
    );
    http1::check_written(&served.written);
});
