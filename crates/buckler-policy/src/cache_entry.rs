//! What the response cache puts in a store: a compact binary encoding of a stored response
//! (status, headers, body, [`Freshness`]) or of a `Vary` record, the same bytes in memory and
//! in Redis. Decoding checks every length, name and value and never panics: bytes that do not
//! decode (another version, corruption) are a cache miss.
//!
//! Layout for responses with `Vary`: the primary key ([`cache_key`](crate::cache::cache_key))
//! holds a [`CacheEntry::Vary`] with the header names, and each variant is a
//! [`CacheEntry::Response`] under [`variant_key`](crate::cache::variant_key)`(primary,
//! secondary_key(names, request))`. Without `Vary`, the response sits at the primary key.

use std::time::{Duration, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::cache::Freshness;

const MAGIC_RESPONSE: &[u8; 4] = b"BKR1";
const MAGIC_VARY: &[u8; 4] = b"BKV1";

/// A stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers as they will be served (hop-by-hop ones already removed by the caller).
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// Its timing.
    pub freshness: Freshness,
}

/// One value of the cache in a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheEntry {
    /// A response.
    Response(CachedResponse),
    /// The response at this key varies on these request headers (see the module docs).
    Vary(Vec<HeaderName>),
}

/// Bytes that are not a cache entry of this version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a cache entry of this version")]
pub struct DecodeError;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl CacheEntry {
    /// Encodes the entry.
    pub fn encode(&self) -> Bytes {
        match self {
            CacheEntry::Vary(names) => {
                let mut out = BytesMut::with_capacity(
                    8 + names.iter().map(|n| 2 + n.as_str().len()).sum::<usize>(),
                );
                out.put_slice(MAGIC_VARY);
                out.put_u16(u16::try_from(names.len()).unwrap_or(u16::MAX));
                for name in names.iter().take(usize::from(u16::MAX)) {
                    put_short(&mut out, name.as_str().as_bytes());
                }
                out.freeze()
            }
            CacheEntry::Response(r) => {
                let head: usize = r
                    .headers
                    .iter()
                    .map(|(n, v)| 6 + n.as_str().len() + v.len())
                    .sum();
                let mut out = BytesMut::with_capacity(48 + head + r.body.len());
                out.put_slice(MAGIC_RESPONSE);
                out.put_u16(r.status.as_u16());
                let since_epoch = r
                    .freshness
                    .response_time
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or(Duration::ZERO);
                out.put_u64(millis(since_epoch));
                out.put_u64(millis(r.freshness.lifetime));
                out.put_u64(millis(r.freshness.initial_age));
                out.put_u8(u8::from(r.freshness.must_revalidate));
                out.put_u32(u32::try_from(r.headers.len()).unwrap_or(u32::MAX));
                for (name, value) in &r.headers {
                    put_short(&mut out, name.as_str().as_bytes());
                    out.put_u32(u32::try_from(value.len()).unwrap_or(u32::MAX));
                    out.put_slice(value.as_bytes());
                }
                out.put_u64(r.body.len() as u64);
                out.put_slice(&r.body);
                out.freeze()
            }
        }
    }

    /// Decodes an entry; the body shares `bytes`' buffer (no copy).
    pub fn decode(bytes: &Bytes) -> Result<CacheEntry, DecodeError> {
        let mut r = Reader { bytes, at: 0 };
        let magic = r.take(4)?;
        if magic == MAGIC_VARY {
            let count = r.u16()?;
            let mut names = Vec::with_capacity(usize::from(count).min(64));
            for _ in 0..count {
                let len = usize::from(r.u16()?);
                names.push(HeaderName::from_bytes(r.take(len)?).map_err(|_| DecodeError)?);
            }
            r.end()?;
            return Ok(CacheEntry::Vary(names));
        }
        if magic != MAGIC_RESPONSE {
            return Err(DecodeError);
        }
        let status = StatusCode::from_u16(r.u16()?).map_err(|_| DecodeError)?;
        let response_time = SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_millis(r.u64()?))
            .ok_or(DecodeError)?;
        let lifetime = Duration::from_millis(r.u64()?);
        let initial_age = Duration::from_millis(r.u64()?);
        let must_revalidate = match r.take(1)?[0] {
            0 => false,
            1 => true,
            _ => return Err(DecodeError),
        };
        let count = r.u32()?;
        let mut headers = HeaderMap::with_capacity(usize::try_from(count.min(256)).unwrap_or(0));
        for _ in 0..count {
            let name_len = usize::from(r.u16()?);
            let name = HeaderName::from_bytes(r.take(name_len)?).map_err(|_| DecodeError)?;
            let value_len = usize::try_from(r.u32()?).map_err(|_| DecodeError)?;
            let value = HeaderValue::from_bytes(r.take(value_len)?).map_err(|_| DecodeError)?;
            headers.append(name, value);
        }
        let body_len = usize::try_from(r.u64()?).map_err(|_| DecodeError)?;
        let start = r.at;
        r.take(body_len)?;
        r.end()?;
        Ok(CacheEntry::Response(CachedResponse {
            status,
            headers,
            body: bytes.slice(start..start + body_len),
            freshness: Freshness {
                lifetime,
                initial_age,
                response_time,
                must_revalidate,
            },
        }))
    }
}

fn put_short(out: &mut BytesMut, bytes: &[u8]) {
    // Header names are far below 64 KiB (hyper refuses longer heads).
    let len = bytes.len().min(usize::from(u16::MAX));
    out.put_u16(len as u16);
    out.put_slice(&bytes[..len]);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, len: usize) -> Result<&[u8], DecodeError> {
        let end = self.at.checked_add(len).ok_or(DecodeError)?;
        let slice = self.bytes.get(self.at..end).ok_or(DecodeError)?;
        self.at = end;
        Ok(slice)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(DecodeError)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response() -> CachedResponse {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        headers.insert("x-raw", HeaderValue::from_bytes(b"\xfe\xff").unwrap());
        CachedResponse {
            status: StatusCode::NOT_FOUND,
            headers,
            body: Bytes::from_static(b"{\"error\": 1}\x00"),
            freshness: Freshness {
                lifetime: Duration::from_secs(60),
                initial_age: Duration::from_millis(1_500),
                response_time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_765_000_000_123),
                must_revalidate: true,
            },
        }
    }

    #[test]
    fn responses_round_trip() {
        let entry = CacheEntry::Response(response());
        let bytes = entry.encode();
        assert_eq!(CacheEntry::decode(&bytes), Ok(entry));
        let empty = CacheEntry::Response(CachedResponse {
            headers: HeaderMap::new(),
            body: Bytes::new(),
            ..response()
        });
        assert_eq!(CacheEntry::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn vary_records_round_trip() {
        let entry = CacheEntry::Vary(vec![
            HeaderName::from_static("accept"),
            HeaderName::from_static("accept-encoding"),
        ]);
        assert_eq!(CacheEntry::decode(&entry.encode()), Ok(entry));
        let none = CacheEntry::Vary(Vec::new());
        assert_eq!(CacheEntry::decode(&none.encode()), Ok(none));
    }

    #[test]
    fn every_truncation_and_extension_is_refused_without_panic() {
        let bytes = CacheEntry::Response(response()).encode();
        for len in 0..bytes.len() {
            assert_eq!(
                CacheEntry::decode(&bytes.slice(..len)),
                Err(DecodeError),
                "{len}"
            );
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(CacheEntry::decode(&Bytes::from(longer)), Err(DecodeError));
        assert_eq!(
            CacheEntry::decode(&Bytes::from_static(b"nope")),
            Err(DecodeError)
        );
    }

    #[test]
    fn corrupted_bytes_never_panic() {
        let bytes = CacheEntry::Response(response()).encode().to_vec();
        let mut seed: u32 = 7;
        for _ in 0..2_000 {
            let mut copy = bytes.clone();
            for _ in 0..3 {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let at = (seed as usize >> 8) % copy.len();
                copy[at] = (seed >> 24) as u8;
            }
            let _ = CacheEntry::decode(&Bytes::from(copy));
        }
        // A huge declared length does not allocate it.
        let mut huge = MAGIC_RESPONSE.to_vec();
        huge.extend_from_slice(&200u16.to_be_bytes());
        huge.extend_from_slice(&[0; 25]);
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(CacheEntry::decode(&Bytes::from(huge)), Err(DecodeError));
    }
}
