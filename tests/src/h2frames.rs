//! Raw HTTP/2 frames, for what a well-behaved client never sends (floods, silence) and for
//! looking at what the server sends (SETTINGS, GOAWAY).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
/// SETTINGS_MAX_CONCURRENT_STREAMS.
pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// A frame as read off the wire.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A GOAWAY's error code.
    pub fn goaway_code(&self) -> Option<u32> {
        (self.kind == GOAWAY && self.payload.len() >= 8)
            .then(|| u32::from_be_bytes(self.payload[4..8].try_into().unwrap()))
    }

    /// A SETTINGS frame's value for `id`.
    pub fn setting(&self, id: u16) -> Option<u32> {
        if self.kind != SETTINGS {
            return None;
        }
        self.payload.chunks_exact(6).find_map(|entry| {
            (u16::from_be_bytes([entry[0], entry[1]]) == id)
                .then(|| u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]))
        })
    }
}

/// Encodes one frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The preface and an empty SETTINGS frame: what a client sends first.
pub fn client_start() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out
}

/// An HPACK block for `GET http://x/` (static-table indices, `:authority` literal).
pub fn get_block() -> Vec<u8> {
    vec![0x82, 0x86, 0x84, 0x41, 0x01, b'x']
}

/// A complete `GET /` request on `stream`.
pub fn get(stream: u32) -> Vec<u8> {
    frame(HEADERS, END_HEADERS | END_STREAM, stream, &get_block())
}

/// RST_STREAM with CANCEL.
pub fn cancel(stream: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &0x8u32.to_be_bytes())
}

/// Reads one frame; `None` when the connection closed (or reset).
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Option<Frame> {
    let mut head = [0u8; 9];
    reader.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; len];
    reader.read_exact(&mut payload).await.ok()?;
    Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    })
}

/// Reads frames until one matches `wanted`, the connection closes (`Err` with the frames
/// seen), or `within` passes (`Err` too).
pub async fn read_until<R: AsyncRead + Unpin>(
    reader: &mut R,
    within: Duration,
    wanted: impl Fn(&Frame) -> bool,
) -> Result<Frame, String> {
    let mut seen = Vec::new();
    let outcome = tokio::time::timeout(within, async {
        loop {
            match read_frame(reader).await {
                Some(frame) if wanted(&frame) => return Some(frame),
                Some(frame) => seen.push((frame.kind, frame.flags, frame.stream)),
                None => return None,
            }
        }
    })
    .await;
    match outcome {
        Ok(Some(frame)) => Ok(frame),
        Ok(None) => Err(format!(
            "connection closed; frames (type, flags, stream) seen: {seen:?}"
        )),
        Err(_) => Err(format!(
            "nothing matching within {within:?}; frames seen: {seen:?}"
        )),
    }
}

/// Reads frames until GOAWAY.
pub async fn goaway<R: AsyncRead + Unpin>(
    reader: &mut R,
    within: Duration,
) -> Result<Frame, String> {
    read_until(reader, within, |frame| frame.kind == GOAWAY).await
}
