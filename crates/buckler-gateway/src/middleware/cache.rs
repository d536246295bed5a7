//! `response-cache` (SPEC §10): the RFC 9111 subset of `buckler_policy::cache` on a memory
//! or Redis store. GET responses are stored when they allow it (HEAD is answered from a GET
//! entry); `Age` and `X-Cache: hit|miss|stale|uncacheable` on every response of the route;
//! `Vary` keeps variants apart; bodies over `max-object-bytes` still stream to the client,
//! uncached (the body is copied while it streams, up to the bound); concurrent misses for
//! one key make one upstream request; a stale entry stands in for a failed upstream or a
//! 5xx; a 2xx to an unsafe method invalidates the path.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use buckler_kv::coalesce::Leader;
use buckler_kv::{Coalescer, KvStore, Store, Turn};
use buckler_policy::cache::{self as rules, CacheControl, Reuse, Vary};
use buckler_policy::{CacheEntry, CachedResponse};
use buckler_upstream::{empty_body, full_body, BoxError, ProxyBody};
use bytes::{Bytes, BytesMut};
use http::header::{AGE, CONTENT_LENGTH, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::stats::{MiddlewareStats, Outcome};
use crate::headers::X_FORWARDED_HOST;
use crate::outbound::Outbound;

pub(crate) static X_CACHE: HeaderName = HeaderName::from_static("x-cache");
/// How long past its freshness an entry is kept, to stand in for a failed upstream.
const STALE_GRACE: Duration = Duration::from_secs(300);
/// Response headers never stored: computed per answer, or added by other middleware.
const NOT_STORED: [&str; 5] = [
    "x-cache",
    "age",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
];

/// What a leader hands the misses that waited for it.
#[derive(Debug, Clone)]
pub(crate) struct Shared(Arc<SharedEntry>);

#[derive(Debug)]
struct SharedEntry {
    /// The `Vary` names of the response, and the leader's secondary key for them: a follower
    /// whose request differs in those headers fetches for itself.
    vary: Vec<HeaderName>,
    secondary: String,
    response: CachedResponse,
}

/// One `response-cache` middleware.
#[derive(Debug)]
pub(crate) struct ResponseCache {
    pub(crate) id: Arc<str>,
    sla: Duration,
    max_object_bytes: usize,
    /// `rc:{domain}:{id}:` — the primary cache key completes it.
    key_prefix: String,
    store: Store,
    coalescer: Coalescer<Shared>,
    pub(crate) stats: Arc<MiddlewareStats>,
}

/// The request side's decision.
pub(crate) enum CacheStep {
    /// Answered from the store.
    Answer(Response<ProxyBody>),
    /// Forward, then run [`CacheAfter::finish`] on the outcome.
    Forward(Box<CacheAfter>),
}

/// The response side of one request.
pub(crate) struct CacheAfter {
    cache: Arc<ResponseCache>,
    mode: Mode,
}

enum Mode {
    /// Neither looked up nor stored (`X-Cache: uncacheable`).
    Uncacheable,
    /// An unsafe method: a 2xx deletes the entry at this key.
    Invalidate { primary: String, method: Method },
    /// A HEAD that found nothing fresh: forwarded, not stored.
    HeadMiss { stale: Option<CachedResponse> },
    /// A GET that found nothing fresh: forwarded, stored if the response allows.
    Store {
        primary: String,
        request_headers: HeaderMap,
        leader: Option<Leader<Shared>>,
        stale: Option<CachedResponse>,
    },
}

impl std::fmt::Debug for CacheAfter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheAfter").finish_non_exhaustive()
    }
}

impl ResponseCache {
    pub(crate) fn build(
        domain: &str,
        id: Arc<str>,
        sla: Duration,
        max_object_bytes: u64,
        store: Store,
        stats: Arc<MiddlewareStats>,
    ) -> ResponseCache {
        ResponseCache {
            key_prefix: format!("rc:{domain}:{id}:"),
            id,
            sla,
            max_object_bytes: usize::try_from(max_object_bytes).unwrap_or(usize::MAX),
            store,
            coalescer: Coalescer::new(),
            stats,
        }
    }

    fn primary_key(&self, outbound: &Outbound) -> String {
        let host = outbound
            .headers
            .get(HOST)
            .or_else(|| outbound.headers.get(&X_FORWARDED_HOST))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut key = self.key_prefix.clone();
        key.push_str(&rules::cache_key(host, outbound.path_and_query.as_str()));
        key
    }

    /// The stored response for this request, if any (store errors and undecodable bytes are
    /// misses).
    async fn find(&self, primary: &str, request: &HeaderMap) -> Option<CachedResponse> {
        let bytes = self.store.get(primary).await.ok()??;
        match CacheEntry::decode(&bytes).ok()? {
            CacheEntry::Response(response) => Some(response),
            CacheEntry::Vary(names) => {
                let variant = rules::variant_key(primary, &rules::secondary_key(&names, request));
                let bytes = self.store.get(&variant).await.ok()??;
                match CacheEntry::decode(&bytes).ok()? {
                    CacheEntry::Response(response) => Some(response),
                    CacheEntry::Vary(_) => None,
                }
            }
        }
    }

    /// The request side: answer from the store, or forward (coalesced with concurrent misses
    /// of the same key; a follower waits at most `wait` for its leader).
    pub(crate) async fn lookup(self: &Arc<Self>, outbound: &Outbound, wait: Duration) -> CacheStep {
        let method = &outbound.method;
        let forward = |mode| {
            CacheStep::Forward(Box::new(CacheAfter {
                cache: self.clone(),
                mode,
            }))
        };
        if *method != Method::GET && *method != Method::HEAD {
            return if method.is_safe() {
                forward(Mode::Uncacheable)
            } else {
                forward(Mode::Invalidate {
                    primary: self.primary_key(outbound),
                    method: method.clone(),
                })
            };
        }
        let request_cc = CacheControl::of_request(&outbound.headers);
        if request_cc.no_store {
            return forward(Mode::Uncacheable);
        }
        let primary = self.primary_key(outbound);
        let found =
            match tokio::time::timeout(self.sla, self.find(&primary, &outbound.headers)).await {
                Ok(found) => found,
                Err(_) => {
                    self.stats.count_sla_exceeded();
                    None
                }
            };
        let head = *method == Method::HEAD;
        let mut stale = None;
        if let Some(entry) = found {
            let now = SystemTime::now();
            match entry.freshness.reuse(&request_cc, now) {
                Reuse::Fresh => {
                    self.stats.count(Outcome::CacheHit);
                    return CacheStep::Answer(serve(&entry, "hit", head, now));
                }
                Reuse::StaleAccepted => {
                    self.stats.count(Outcome::CacheStale);
                    return CacheStep::Answer(serve(&entry, "stale", head, now));
                }
                Reuse::Forward => {
                    stale = entry.freshness.may_serve_stale().then_some(entry);
                }
            }
        }
        if head {
            return forward(Mode::HeadMiss { stale });
        }
        let leader = if request_cc.no_cache {
            None
        } else {
            match self.coalescer.join(&primary) {
                Turn::Leader(leader) => Some(leader),
                Turn::Follower(follower) => {
                    let shared = tokio::time::timeout(wait, follower.wait())
                        .await
                        .ok()
                        .flatten();
                    if let Some(Shared(shared)) = shared {
                        if rules::secondary_key(&shared.vary, &outbound.headers) == shared.secondary
                        {
                            self.stats.count(Outcome::CacheHit);
                            return CacheStep::Answer(serve(
                                &shared.response,
                                "hit",
                                false,
                                SystemTime::now(),
                            ));
                        }
                    }
                    None
                }
            }
        };
        forward(Mode::Store {
            primary,
            request_headers: outbound.headers.clone(),
            leader,
            stale,
        })
    }
}

/// A response from a stored entry: its status and headers, `Age`, `X-Cache`.
fn serve(
    entry: &CachedResponse,
    x_cache: &'static str,
    head: bool,
    now: SystemTime,
) -> Response<ProxyBody> {
    let body = if head {
        empty_body()
    } else {
        full_body(entry.body.clone())
    };
    let mut response = Response::new(body);
    *response.status_mut() = entry.status;
    let headers = response.headers_mut();
    *headers = entry.headers.clone();
    headers.insert(AGE, HeaderValue::from(entry.freshness.age(now).as_secs()));
    headers.insert(X_CACHE.clone(), HeaderValue::from_static(x_cache));
    if !head {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(entry.body.len()));
    }
    response
}

fn mark(response: &mut Response<ProxyBody>, x_cache: &'static str) {
    response
        .headers_mut()
        .insert(X_CACHE.clone(), HeaderValue::from_static(x_cache));
}

impl CacheAfter {
    /// The response side: marks `X-Cache`, stores what may be stored, serves a stale entry
    /// for a failed upstream or a 5xx, invalidates after an unsafe method's 2xx.
    pub(crate) fn finish<E>(
        self,
        outcome: Result<Response<ProxyBody>, E>,
    ) -> Result<Response<ProxyBody>, E> {
        let cache = self.cache;
        match self.mode {
            Mode::Uncacheable => outcome.map(|mut response| {
                cache.stats.count(Outcome::CacheUncacheable);
                mark(&mut response, "uncacheable");
                response
            }),
            Mode::Invalidate { primary, method } => outcome.map(|mut response| {
                if rules::invalidates(&method, response.status()) {
                    let store = cache.store.clone();
                    tokio::spawn(async move {
                        let _ = store.delete(&primary).await;
                    });
                }
                cache.stats.count(Outcome::CacheUncacheable);
                mark(&mut response, "uncacheable");
                response
            }),
            Mode::HeadMiss { stale } => match rescue(&cache, &outcome, stale.as_ref(), true) {
                Some(response) => Ok(response),
                None => outcome.map(|mut response| {
                    cache.stats.count(Outcome::CacheMiss);
                    mark(&mut response, "miss");
                    response
                }),
            },
            Mode::Store {
                primary,
                request_headers,
                leader,
                stale,
            } => {
                if let Some(response) = rescue(&cache, &outcome, stale.as_ref(), false) {
                    return Ok(response);
                }
                outcome.map(|response| store(cache, response, primary, request_headers, leader))
            }
        }
    }
}

/// The stale entry, served for an upstream that failed or answered 5xx.
fn rescue<E>(
    cache: &ResponseCache,
    outcome: &Result<Response<ProxyBody>, E>,
    stale: Option<&CachedResponse>,
    head: bool,
) -> Option<Response<ProxyBody>> {
    let stale = stale?;
    let failed = match outcome {
        Ok(response) => response.status().is_server_error(),
        Err(_) => true,
    };
    if !failed {
        return None;
    }
    cache.stats.count(Outcome::CacheStale);
    Some(serve(stale, "stale", head, SystemTime::now()))
}

/// Marks a GET's upstream response and, when it may be stored, copies its body into the
/// store as it streams to the client.
fn store(
    cache: Arc<ResponseCache>,
    mut response: Response<ProxyBody>,
    primary: String,
    request_headers: HeaderMap,
    leader: Option<Leader<Shared>>,
) -> Response<ProxyBody> {
    let now = SystemTime::now();
    let freshness = rules::storable(
        &Method::GET,
        &request_headers,
        response.status(),
        response.headers(),
        now,
    );
    let Ok(freshness) = freshness else {
        cache.stats.count(Outcome::CacheUncacheable);
        mark(&mut response, "uncacheable");
        return response;
    };
    cache.stats.count(Outcome::CacheMiss);
    mark(&mut response, "miss");
    let too_large = response
        .body()
        .size_hint()
        .exact()
        .is_some_and(|len| len > cache.max_object_bytes as u64);
    if too_large {
        return response;
    }
    let vary = match rules::vary(response.headers()) {
        Vary::Headers(names) => names,
        Vary::None | Vary::Any => Vec::new(),
    };
    let mut headers = response.headers().clone();
    for name in NOT_STORED {
        headers.remove(name);
    }
    let status = response.status();
    let limit = cache.max_object_bytes;
    let (parts, body) = response.into_parts();
    let complete = Box::new(move |body: Bytes| {
        let secondary = rules::secondary_key(&vary, &request_headers);
        let cached = CachedResponse {
            status,
            headers,
            body,
            freshness,
        };
        let ttl = freshness.store_ttl(SystemTime::now(), STALE_GRACE);
        let encoded = CacheEntry::Response(cached.clone()).encode();
        let store = cache.store.clone();
        let vary_entry = (!vary.is_empty()).then(|| CacheEntry::Vary(vary.clone()).encode());
        let key = if vary.is_empty() {
            primary.clone()
        } else {
            rules::variant_key(&primary, &secondary)
        };
        tokio::spawn(async move {
            if let Some(vary_entry) = vary_entry {
                let _ = store.put(&primary, vary_entry, ttl).await;
            }
            let _ = store.put(&key, encoded, ttl).await;
        });
        if let Some(leader) = leader {
            leader.finish(Some(Shared(Arc::new(SharedEntry {
                vary,
                secondary,
                response: cached,
            }))));
        }
    });
    let mut tee = TeeBody {
        inner: body,
        copy: Some(BytesMut::new()),
        limit,
        complete: Some(complete),
    };
    tee.complete_if_ended();
    Response::from_parts(parts, tee.boxed())
}

type Complete = Box<dyn FnOnce(Bytes) + Send + Sync>;

/// A body passed through unchanged while a copy of it, up to `limit` bytes, is kept; when it
/// ends complete and within the bound, `complete` gets the copy. Over the bound, on an error
/// or when dropped early, the copy is discarded (and a coalescing leader released).
struct TeeBody {
    inner: ProxyBody,
    copy: Option<BytesMut>,
    limit: usize,
    complete: Option<Complete>,
}

impl TeeBody {
    fn complete_if_ended(&mut self) {
        if self.inner.is_end_stream() {
            if let (Some(copy), Some(complete)) = (self.copy.take(), self.complete.take()) {
                complete(copy.freeze());
            }
        }
    }
}

impl Body for TeeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let limit = self.limit;
                    let over = self
                        .copy
                        .as_ref()
                        .is_some_and(|copy| copy.len() + data.len() > limit);
                    if over {
                        self.copy = None;
                        self.complete = None;
                    } else if let Some(copy) = self.copy.as_mut() {
                        copy.extend_from_slice(data);
                    }
                }
                // A server may stop polling once the body says it has ended.
                self.complete_if_ended();
            }
            Poll::Ready(None) => {
                if let (Some(copy), Some(complete)) = (self.copy.take(), self.complete.take()) {
                    complete(copy.freeze());
                }
            }
            Poll::Ready(Some(Err(_))) => {
                self.copy = None;
                self.complete = None;
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use buckler_kv::MemoryStore;
    use http::uri::PathAndQuery;

    fn cache(max_object_bytes: u64) -> Arc<ResponseCache> {
        Arc::new(ResponseCache::build(
            "d",
            Arc::from("c"),
            Duration::from_secs(1),
            max_object_bytes,
            Store::Memory(MemoryStore::new(1 << 20)),
            Arc::default(),
        ))
    }

    fn get(path: &'static str) -> Outbound {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("api.test:8080"));
        Outbound {
            method: Method::GET,
            path_and_query: PathAndQuery::from_static(path),
            headers,
        }
    }

    fn upstream(body: &'static str, cache_control: &'static str) -> Response<ProxyBody> {
        let mut response = Response::new(full_body(body));
        response
            .headers_mut()
            .insert("cache-control", HeaderValue::from_static(cache_control));
        response
    }

    async fn forward_and_read(
        cache: &Arc<ResponseCache>,
        outbound: &Outbound,
        response: Response<ProxyBody>,
    ) -> (String, Bytes) {
        let CacheStep::Forward(after) = cache.lookup(outbound, Duration::from_secs(1)).await else {
            panic!("expected a miss")
        };
        let response: Response<ProxyBody> = after.finish::<()>(Ok(response)).unwrap();
        let x_cache = response.headers()[&X_CACHE].to_str().unwrap().to_owned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (x_cache, body)
    }

    async fn hit(cache: &Arc<ResponseCache>, outbound: &Outbound) -> Option<Response<ProxyBody>> {
        // The entry is written by a spawned task once the body has been read.
        for _ in 0..100 {
            match cache.lookup(outbound, Duration::from_secs(1)).await {
                CacheStep::Answer(response) => return Some(response),
                CacheStep::Forward(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        None
    }

    #[tokio::test]
    async fn a_storable_miss_is_copied_while_it_streams_then_hits() {
        let cache = cache(1024);
        let outbound = get("/x?a=1");
        let (x_cache, body) =
            forward_and_read(&cache, &outbound, upstream("hello", "max-age=60")).await;
        assert_eq!((x_cache.as_str(), &body[..]), ("miss", &b"hello"[..]));
        let response = hit(&cache, &outbound).await.expect("stored");
        assert_eq!(response.headers()[&X_CACHE], "hit");
        assert_eq!(response.headers()[AGE], "0");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello");
        // The port is not part of the key.
        let mut other_port = get("/x?a=1");
        other_port
            .headers
            .insert(HOST, HeaderValue::from_static("API.test"));
        assert!(matches!(
            cache.lookup(&other_port, Duration::from_secs(1)).await,
            CacheStep::Answer(_)
        ));
        assert_eq!(cache.stats.get(Outcome::CacheHit), 2);
    }

    #[tokio::test]
    async fn bodies_over_the_bound_stream_whole_and_are_not_stored() {
        let cache = cache(3);
        let outbound = get("/big");
        let (x_cache, body) =
            forward_and_read(&cache, &outbound, upstream("hello", "max-age=60")).await;
        assert_eq!((x_cache.as_str(), &body[..]), ("miss", &b"hello"[..]));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(matches!(
            cache.lookup(&outbound, Duration::from_secs(1)).await,
            CacheStep::Forward(_)
        ));
    }

    #[tokio::test]
    async fn unstorable_responses_are_marked_and_not_stored() {
        let cache = cache(1024);
        let outbound = get("/private");
        let (x_cache, _) =
            forward_and_read(&cache, &outbound, upstream("p", "private, max-age=60")).await;
        assert_eq!(x_cache, "uncacheable");
        assert_eq!(cache.stats.get(Outcome::CacheUncacheable), 1);
    }

    #[tokio::test]
    async fn a_dropped_miss_releases_the_requests_waiting_for_it() {
        let cache = cache(1024);
        let outbound = get("/x");
        let CacheStep::Forward(after) = cache.lookup(&outbound, Duration::from_secs(1)).await
        else {
            panic!()
        };
        assert_eq!(cache.coalescer.in_flight(), 1);
        drop(after);
        assert_eq!(cache.coalescer.in_flight(), 0);
    }
}
