//! What the `request_head` and `chunked_body` targets share: one HTTP/1.1 client connection,
//! served by hyper as the gateway's listener serves it (its `max_buf_size`, behind the
//! gateway's connection watch), over an in-memory pipe.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::framing;

/// The listener's HTTP/1 read buffer (crates/buckler-gateway/src/listen/mod.rs, `H1_MAX_BUF`).
const H1_MAX_BUF: usize = 128 * 1024;

/// What one connection did.
pub struct Served {
    /// Everything the gateway side wrote back.
    pub written: Vec<u8>,
    /// Whether the framing watch raised its alarm.
    pub alarm: bool,
}

/// Sends `input` as a client would (then closes its sending side), serves it, and returns
/// what was answered. Panics if the connection does not end within 10 s: a hang is a finding.
pub fn serve(input: &[u8]) -> Served {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (watched, alarm) = framing::Watched::new(server);
        let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
            // Read the body frame by frame, as the gateway's pipeline streams it; a declared
            // length that hyper accepted is what arrives, or the body fails.
            let declared = request
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let chunked = request
                .headers()
                .contains_key(http::header::TRANSFER_ENCODING);
            let mut body = request.into_body();
            let mut received = 0u64;
            let mut failed = false;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Some(data) = frame.data_ref() {
                            received += data.len() as u64;
                        }
                    }
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            if let (Some(declared), false, false) = (declared, chunked, failed) {
                assert_eq!(
                    received, declared,
                    "a complete body differs from its length"
                );
            }
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.max_buf_size(H1_MAX_BUF);
        let connection = builder.serve_connection(TokioIo::new(watched), service);
        let (mut reader, mut writer) = tokio::io::split(client);
        let send = async {
            let _ = writer.write_all(input).await;
            let _ = writer.shutdown().await;
        };
        let receive = async {
            let mut written = Vec::new();
            let _ = reader.read_to_end(&mut written).await;
            written
        };
        let serving = async {
            let _ = connection.await;
        };
        let ((), written, ()) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(send, receive, serving)
        })
        .await
        .expect("the connection ended within 10 s");
        Served {
            written,
            alarm: alarm.raised(),
        }
    })
}

/// Checks what hyper and the watch wrote: every response the watch rewrote is well formed
/// (its `content-length` is its body's length).
pub fn check_written(written: &[u8]) {
    const MARK: &[u8] = b"content-type: application/json\r\ncontent-length: ";
    let Some(at) = find(written, MARK) else {
        return;
    };
    let rest = &written[at + MARK.len()..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let length: usize = std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|d| d.parse().ok())
        .expect("a rewritten content-length is a number");
    let head_end = find(rest, b"\r\n\r\n").expect("a rewritten head ends");
    let body = &rest[head_end + 4..];
    assert_eq!(
        body.len(),
        length,
        "a rewritten response's body differs from its length"
    );
}

/// The reference: split into lines, a blank line ends a header block, and a block holding a
/// line that starts with both field names (any case) raises the alarm.
pub fn expected_alarm(data: &[u8]) -> bool {
    let (mut length, mut coding) = (false, false);
    for line in data.split(|&b| b == b'\n') {
        if line.is_empty() || line == b"\r" {
            (length, coding) = (false, false);
            continue;
        }
        let starts =
            |name: &[u8]| line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name);
        length |= starts(b"content-length:");
        coding |= starts(b"transfer-encoding:");
        if length && coding {
            return true;
        }
    }
    false
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
