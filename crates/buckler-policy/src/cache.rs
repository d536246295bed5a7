//! The RFC 9111 subset of SPEC §10 `response-cache`, for a shared cache: which responses may
//! be stored, for how long they are fresh, how old a stored one is, what the request's
//! `Cache-Control` allows, and the keys (host without port, path and query; plus the request
//! headers the response's `Vary` names).
//!
//! Hand-written rather than `http-cache-semantics`: SPEC's subset differs from that crate on
//! purpose (no heuristic freshness — a response without `s-maxage`, `max-age` or `Expires` is
//! not stored; `Set-Cookie` responses are never stored; no revalidation), and the stored entry
//! has to cross Redis, where a few plain numbers ([`Freshness`]) serialise trivially while the
//! crate's `CachePolicy` needs serde and keeps whole header maps. The rules here fit in one
//! page and each has a test.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use http::header::{AGE, AUTHORIZATION, CACHE_CONTROL, DATE, EXPIRES, PRAGMA, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderName, Method, StatusCode};

/// The `Cache-Control` directives this cache acts on (request or response).
///
/// Names compare case-insensitively; values may be quoted; unknown directives are ignored.
/// A `max-age` / `s-maxage` whose value is not a number is taken as 0 (RFC 9111 §4.2.1: treat
/// as stale), and a `max-stale` whose value is not a number as any staleness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (on a request, also `Pragma: no-cache` when there is no `Cache-Control`).
    pub no_cache: bool,
    /// `private` (with or without field names).
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate` or `proxy-revalidate`.
    pub must_revalidate: bool,
    /// `max-age`, seconds.
    pub max_age: Option<u64>,
    /// `s-maxage`, seconds.
    pub s_maxage: Option<u64>,
    /// `max-stale` (request): `Some(None)` any staleness, `Some(Some(n))` up to `n` seconds.
    pub max_stale: Option<Option<u64>>,
    /// `min-fresh` (request), seconds.
    pub min_fresh: Option<u64>,
}

impl CacheControl {
    /// Parses every `Cache-Control` field line of `headers`.
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut cc = CacheControl::default();
        for value in headers.get_all(CACHE_CONTROL) {
            let Ok(text) = value.to_str() else { continue };
            for directive in text.split(',') {
                let (name, arg) = match directive.split_once('=') {
                    Some((name, arg)) => (name.trim(), Some(arg.trim().trim_matches('"'))),
                    None => (directive.trim(), None),
                };
                let seconds = arg.map(|a| a.parse::<u64>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => cc.no_store = true,
                    "no-cache" => cc.no_cache = true,
                    "private" => cc.private = true,
                    "public" => cc.public = true,
                    "must-revalidate" | "proxy-revalidate" => cc.must_revalidate = true,
                    "max-age" => cc.max_age = Some(seconds.flatten().unwrap_or(0)),
                    "s-maxage" => cc.s_maxage = Some(seconds.flatten().unwrap_or(0)),
                    "max-stale" => cc.max_stale = Some(seconds.flatten()),
                    "min-fresh" => cc.min_fresh = seconds.flatten(),
                    _ => {}
                }
            }
        }
        cc
    }

    /// The request's directives: `Cache-Control`, or `Pragma: no-cache` when the request has
    /// no `Cache-Control` (RFC 9111 §5.4 leaves this to caches; HTTP/1.0 clients send it).
    pub fn of_request(headers: &HeaderMap) -> Self {
        let mut cc = CacheControl::parse(headers);
        if !headers.contains_key(CACHE_CONTROL) {
            cc.no_cache = headers.get_all(PRAGMA).iter().any(|v| {
                v.to_str().is_ok_and(|t| {
                    t.split(',')
                        .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
                })
            });
        }
        cc
    }
}

/// Why a response is not stored (for `X-Cache: uncacheable` and debugging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    /// Only GET responses are stored.
    Method,
    /// A status this cache does not store (see [`storable`]).
    Status,
    /// `no-store` on the request or the response.
    NoStore,
    /// `no-cache` on the response (stored responses are never revalidated here).
    NoCache,
    /// `private` on the response.
    Private,
    /// The request had `Authorization` and the response is neither `public` nor `s-maxage`.
    Authorization,
    /// The response sets a cookie.
    SetCookie,
    /// `Vary: *`.
    VaryAny,
    /// No explicit freshness (`s-maxage`, `max-age`, `Expires`), or it is zero.
    NoFreshness,
}

/// The timing kept with a stored response: enough to answer freshness questions later,
/// without its headers. Plain numbers, so the Redis store can carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// The freshness lifetime (RFC 9111 §4.2.1).
    pub lifetime: Duration,
    /// The response's age when it was received (§4.2.3 `corrected_initial_age`).
    pub initial_age: Duration,
    /// When the response was received (`response_time`).
    pub response_time: SystemTime,
    /// `must-revalidate`, `proxy-revalidate` or `s-maxage`: once stale, it must not be served
    /// without revalidation, so neither `max-stale` nor an upstream failure may serve it.
    pub must_revalidate: bool,
}

/// What a request may do with a stored response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Serve it (`X-Cache: hit`).
    Fresh,
    /// Stale, but the request's `max-stale` accepts it: serve it (`X-Cache: stale`).
    StaleAccepted,
    /// Forward the request; if the upstream fails or answers 5xx, the stored response may be
    /// served when [`Freshness::may_serve_stale`] says so.
    Forward,
}

impl Freshness {
    /// The age at `now` (§4.2.3: `corrected_initial_age + resident_time`). A `now` before
    /// `response_time` counts no resident time.
    pub fn age(&self, now: SystemTime) -> Duration {
        let resident = now
            .duration_since(self.response_time)
            .unwrap_or(Duration::ZERO);
        self.initial_age.saturating_add(resident)
    }

    /// Whether it is fresh at `now` (`lifetime > age`).
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        self.lifetime > self.age(now)
    }

    /// Whether a stale copy may stand in for a failed upstream (not `must-revalidate`).
    pub fn may_serve_stale(&self) -> bool {
        !self.must_revalidate
    }

    /// How long the store should keep the entry: until it goes stale, plus `stale_grace` for
    /// serving it stale (no grace when `must_revalidate`). At least one second.
    pub fn store_ttl(&self, now: SystemTime, stale_grace: Duration) -> Duration {
        let fresh_left = self.lifetime.saturating_sub(self.age(now));
        let grace = if self.must_revalidate {
            Duration::ZERO
        } else {
            stale_grace
        };
        fresh_left.saturating_add(grace).max(Duration::from_secs(1))
    }

    /// What a request with directives `request` may do with this entry at `now`.
    /// `no-cache` always forwards; `max-age` caps the acceptable age; `min-fresh` asks for
    /// that much freshness left; `max-stale` accepts a stale entry up to its value (not when
    /// the entry must revalidate).
    pub fn reuse(&self, request: &CacheControl, now: SystemTime) -> Reuse {
        if request.no_cache {
            return Reuse::Forward;
        }
        let age = self.age(now);
        if let Some(max_age) = request.max_age {
            if age > Duration::from_secs(max_age) {
                return Reuse::Forward;
            }
        }
        let min_fresh = Duration::from_secs(request.min_fresh.unwrap_or(0));
        if self.lifetime > age.saturating_add(min_fresh) {
            return Reuse::Fresh;
        }
        if self.lifetime > age {
            // Fresh, but not for as long as min-fresh asks.
            return Reuse::Forward;
        }
        let staleness = age - self.lifetime;
        match request.max_stale {
            Some(limit) if !self.must_revalidate => {
                if limit.is_none_or(|secs| staleness <= Duration::from_secs(secs)) {
                    Reuse::StaleAccepted
                } else {
                    Reuse::Forward
                }
            }
            _ => Reuse::Forward,
        }
    }
}

/// Statuses stored when they carry explicit freshness: those RFC 9110 §15.1 calls
/// heuristically cacheable, less 206 (ranges are not cached here).
fn status_storable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

fn header_date(headers: &HeaderMap, name: &HeaderName) -> Option<Option<SystemTime>> {
    headers.get(name).map(|v| {
        v.to_str()
            .ok()
            .and_then(|t| httpdate::parse_http_date(t.trim()).ok())
    })
}

/// The freshness lifetime from explicit information only (§4.2.1): `s-maxage`, else
/// `max-age`, else `Expires − Date` (`Date` missing or invalid: `response_time`). An invalid
/// `Expires` means already expired (zero). No explicit information: `None` (never heuristic).
pub fn freshness_lifetime(
    response: &HeaderMap,
    cc: &CacheControl,
    response_time: SystemTime,
) -> Option<Duration> {
    if let Some(secs) = cc.s_maxage.or(cc.max_age) {
        return Some(Duration::from_secs(secs));
    }
    let expires = header_date(response, &EXPIRES)?;
    let Some(expires) = expires else {
        return Some(Duration::ZERO);
    };
    let date = header_date(response, &DATE)
        .flatten()
        .unwrap_or(response_time);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

/// The age of a response when received (§4.2.3 without `response_delay`): the larger of its
/// `Age` header and `response_time − Date`.
pub fn initial_age(response: &HeaderMap, response_time: SystemTime) -> Duration {
    let age_value = response
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::ZERO);
    let apparent = header_date(response, &DATE)
        .flatten()
        .and_then(|date| response_time.duration_since(date).ok())
        .unwrap_or(Duration::ZERO);
    age_value.max(apparent)
}

/// Decides whether a response may be stored by this shared cache (SPEC §10), and if so
/// returns its [`Freshness`]. Not stored: a method other than GET; a status outside
/// 200 203 204 300 301 308 404 405 410 414 501; `no-store` (request or response);
/// response `no-cache` or `private`; a request with `Authorization` unless the response is
/// `public` or has `s-maxage`; `Set-Cookie`; `Vary: *`; no explicit freshness, or zero.
pub fn storable(
    method: &Method,
    request: &HeaderMap,
    status: StatusCode,
    response: &HeaderMap,
    response_time: SystemTime,
) -> Result<Freshness, NotStorable> {
    if method != Method::GET {
        return Err(NotStorable::Method);
    }
    if !status_storable(status) {
        return Err(NotStorable::Status);
    }
    let req_cc = CacheControl::parse(request);
    let cc = CacheControl::parse(response);
    if req_cc.no_store || cc.no_store {
        return Err(NotStorable::NoStore);
    }
    if cc.no_cache {
        return Err(NotStorable::NoCache);
    }
    if cc.private {
        return Err(NotStorable::Private);
    }
    if request.contains_key(AUTHORIZATION) && !cc.public && cc.s_maxage.is_none() {
        return Err(NotStorable::Authorization);
    }
    if response.contains_key(SET_COOKIE) {
        return Err(NotStorable::SetCookie);
    }
    if matches!(vary(response), Vary::Any) {
        return Err(NotStorable::VaryAny);
    }
    let lifetime = freshness_lifetime(response, &cc, response_time)
        .filter(|lifetime| !lifetime.is_zero())
        .ok_or(NotStorable::NoFreshness)?;
    Ok(Freshness {
        lifetime,
        initial_age: initial_age(response, response_time),
        response_time,
        must_revalidate: cc.must_revalidate || cc.s_maxage.is_some(),
    })
}

/// Whether a response to `method` invalidates the stored response for its URL (SPEC §10:
/// a 2xx to an unsafe method).
pub fn invalidates(method: &Method, status: StatusCode) -> bool {
    !method.is_safe() && status.is_success()
}

/// The primary cache key: the host in lower case without its port, then the path and query
/// exactly as received (`api.example.org/orders?id=1`). IPv6 literals keep their brackets.
pub fn cache_key(host: &str, path_and_query: &str) -> String {
    let host = strip_port(host);
    let mut key = String::with_capacity(host.len() + path_and_query.len());
    key.extend(host.chars().map(|c| c.to_ascii_lowercase()));
    key.push_str(path_and_query);
    key
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// What a response's `Vary` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vary {
    /// No `Vary` (or only empty ones): one stored response serves every request.
    None,
    /// These request header names (lower case, sorted, without duplicates).
    Headers(Vec<HeaderName>),
    /// `Vary: *`: not storable.
    Any,
}

/// Reads every `Vary` field line of a response. Unparsable names make it [`Vary::Any`]
/// (nothing safe can be stored for them).
pub fn vary(response: &HeaderMap) -> Vary {
    let mut names = Vec::new();
    for value in response.get_all(VARY) {
        let Ok(text) = value.to_str() else {
            return Vary::Any;
        };
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return Vary::Any;
            }
            match HeaderName::from_bytes(name.as_bytes()) {
                Ok(name) => names.push(name),
                Err(_) => return Vary::Any,
            }
        }
    }
    if names.is_empty() {
        return Vary::None;
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    Vary::Headers(names)
}

/// The secondary key: the request's values of the headers `Vary` named, one line per name
/// (`name:value`, field lines joined with `, `, each trimmed; `name` alone when absent, so an
/// absent header differs from an empty one). Bytes outside visible ASCII are written `%XX`,
/// so different values never give the same key. Empty for no names.
pub fn secondary_key(names: &[HeaderName], request: &HeaderMap) -> String {
    let mut key = String::new();
    for name in names {
        if !key.is_empty() {
            key.push('\n');
        }
        key.push_str(name.as_str());
        let mut values = request.get_all(name).iter().peekable();
        if values.peek().is_none() {
            continue;
        }
        key.push(':');
        for (i, value) in values.enumerate() {
            if i > 0 {
                key.push_str(", ");
            }
            for &b in value.as_bytes().trim_ascii() {
                if (b.is_ascii_graphic() || b == b' ') && b != b'%' {
                    key.push(char::from(b));
                } else {
                    let _ = write!(key, "%{b:02X}");
                }
            }
        }
    }
    key
}

/// The key of one variant: the primary key, a newline, the secondary key (just the primary
/// key when the response has no `Vary`).
pub fn variant_key(primary: &str, secondary: &str) -> String {
    if secondary.is_empty() {
        return primary.to_owned();
    }
    let mut key = String::with_capacity(primary.len() + 1 + secondary.len());
    key.push_str(primary);
    key.push('\n');
    key.push_str(secondary);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn store(req: &[(&str, &str)], resp: &[(&str, &str)]) -> Result<Freshness, NotStorable> {
        storable(
            &Method::GET,
            &headers(req),
            StatusCode::OK,
            &headers(resp),
            t(0),
        )
    }

    #[test]
    fn parses_directives_case_insensitively_with_quotes_and_several_lines() {
        let cc = CacheControl::parse(&headers(&[
            ("cache-control", "Public, MAX-AGE=\"60\""),
            ("cache-control", "s-maxage=30, must-revalidate, x-unknown=1"),
        ]));
        assert!(cc.public && cc.must_revalidate);
        assert_eq!((cc.max_age, cc.s_maxage), (Some(60), Some(30)));
        let bad = CacheControl::parse(&headers(&[("cache-control", "max-age=soon, max-stale")]));
        assert_eq!(bad.max_age, Some(0));
        assert_eq!(bad.max_stale, Some(None));
        let stale = CacheControl::parse(&headers(&[("cache-control", "max-stale=5,min-fresh=2")]));
        assert_eq!((stale.max_stale, stale.min_fresh), (Some(Some(5)), Some(2)));
    }

    #[test]
    fn pragma_no_cache_counts_only_without_cache_control() {
        assert!(CacheControl::of_request(&headers(&[("pragma", "no-cache")])).no_cache);
        assert!(
            !CacheControl::of_request(&headers(&[
                ("pragma", "no-cache"),
                ("cache-control", "max-age=5")
            ]))
            .no_cache
        );
    }

    #[test]
    fn freshness_prefers_s_maxage_then_max_age_then_expires() {
        let f = store(&[], &[("cache-control", "max-age=60, s-maxage=30")]).unwrap();
        assert_eq!(f.lifetime, Duration::from_secs(30));
        assert!(f.must_revalidate, "s-maxage implies proxy-revalidate");
        let f = store(
            &[],
            &[
                ("cache-control", "max-age=60"),
                ("expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
            ],
        )
        .unwrap();
        assert_eq!(f.lifetime, Duration::from_secs(60));
        assert!(!f.must_revalidate);
        let date = httpdate::fmt_http_date(t(0));
        let expires = httpdate::fmt_http_date(t(90));
        let f = store(&[], &[("date", &date), ("expires", &expires)]).unwrap();
        assert_eq!(f.lifetime, Duration::from_secs(90));
        // Expires without Date: measured from the response time.
        let f = store(&[], &[("expires", &expires)]).unwrap();
        assert_eq!(f.lifetime, Duration::from_secs(90));
    }

    #[test]
    fn no_explicit_freshness_is_not_stored() {
        assert_eq!(store(&[], &[]), Err(NotStorable::NoFreshness));
        assert_eq!(
            store(&[], &[("last-modified", "Thu, 01 Jan 2015 00:00:00 GMT")]),
            Err(NotStorable::NoFreshness),
            "no heuristic freshness"
        );
        assert_eq!(
            store(&[], &[("cache-control", "max-age=0")]),
            Err(NotStorable::NoFreshness)
        );
        assert_eq!(
            store(&[], &[("expires", "0")]),
            Err(NotStorable::NoFreshness),
            "an invalid Expires is already expired"
        );
        let past = httpdate::fmt_http_date(t(0) - Duration::from_secs(5));
        assert_eq!(
            store(&[], &[("expires", &past)]),
            Err(NotStorable::NoFreshness)
        );
    }

    #[test]
    fn exclusions() {
        let cc = ("cache-control", "max-age=60");
        assert_eq!(
            store(&[], &[("cache-control", "max-age=60, no-store")]),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            store(&[("cache-control", "no-store")], &[cc]),
            Err(NotStorable::NoStore)
        );
        assert_eq!(
            store(&[], &[("cache-control", "max-age=60, private")]),
            Err(NotStorable::Private)
        );
        assert_eq!(
            store(&[], &[("cache-control", "max-age=60, no-cache")]),
            Err(NotStorable::NoCache)
        );
        assert_eq!(
            store(&[("authorization", "Bearer x")], &[cc]),
            Err(NotStorable::Authorization)
        );
        assert!(store(
            &[("authorization", "Bearer x")],
            &[("cache-control", "public, max-age=60")]
        )
        .is_ok());
        assert!(store(
            &[("authorization", "Bearer x")],
            &[("cache-control", "s-maxage=60")]
        )
        .is_ok());
        assert_eq!(
            store(&[], &[cc, ("set-cookie", "a=b")]),
            Err(NotStorable::SetCookie)
        );
        assert_eq!(
            store(&[], &[cc, ("vary", "Accept, *")]),
            Err(NotStorable::VaryAny)
        );
        let resp = headers(&[cc]);
        assert_eq!(
            storable(
                &Method::POST,
                &HeaderMap::new(),
                StatusCode::OK,
                &resp,
                t(0)
            ),
            Err(NotStorable::Method)
        );
        assert_eq!(
            storable(
                &Method::HEAD,
                &HeaderMap::new(),
                StatusCode::OK,
                &resp,
                t(0)
            ),
            Err(NotStorable::Method)
        );
        for code in [206, 302, 304, 500, 502, 503, 429] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(
                storable(&Method::GET, &HeaderMap::new(), status, &resp, t(0)),
                Err(NotStorable::Status),
                "{code}"
            );
        }
        for code in [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(
                storable(&Method::GET, &HeaderMap::new(), status, &resp, t(0)).is_ok(),
                "{code}"
            );
        }
    }

    #[test]
    fn age_is_the_larger_of_age_and_apparent_age_plus_resident_time() {
        let date = httpdate::fmt_http_date(t(0) - Duration::from_secs(7));
        let f = store(
            &[],
            &[
                ("cache-control", "max-age=60"),
                ("date", &date),
                ("age", "3"),
            ],
        )
        .unwrap();
        assert_eq!(f.initial_age, Duration::from_secs(7));
        let f = store(
            &[],
            &[
                ("cache-control", "max-age=60"),
                ("date", &date),
                ("age", "20"),
            ],
        )
        .unwrap();
        assert_eq!(f.initial_age, Duration::from_secs(20));
        assert_eq!(f.age(t(10)), Duration::from_secs(30));
        assert_eq!(
            f.age(t(0) - Duration::from_secs(5)),
            Duration::from_secs(20)
        );
        assert!(f.is_fresh(t(39)));
        assert!(!f.is_fresh(t(40)));
        // A Date in the future gives no apparent age.
        let future = httpdate::fmt_http_date(t(100));
        let f = store(&[], &[("cache-control", "max-age=60"), ("date", &future)]).unwrap();
        assert_eq!(f.initial_age, Duration::ZERO);
    }

    fn entry(lifetime: u64, must_revalidate: bool) -> Freshness {
        Freshness {
            lifetime: Duration::from_secs(lifetime),
            initial_age: Duration::ZERO,
            response_time: t(0),
            must_revalidate,
        }
    }

    fn req(cc: &str) -> CacheControl {
        CacheControl::of_request(&headers(&[("cache-control", cc)]))
    }

    #[test]
    fn request_directives_decide_reuse() {
        let e = entry(60, false);
        let none = CacheControl::default();
        assert_eq!(e.reuse(&none, t(59)), Reuse::Fresh);
        assert_eq!(e.reuse(&none, t(60)), Reuse::Forward);
        assert_eq!(e.reuse(&req("no-cache"), t(1)), Reuse::Forward);
        assert_eq!(e.reuse(&req("max-age=10"), t(10)), Reuse::Fresh);
        assert_eq!(e.reuse(&req("max-age=10"), t(11)), Reuse::Forward);
        assert_eq!(e.reuse(&req("min-fresh=20"), t(39)), Reuse::Fresh);
        assert_eq!(e.reuse(&req("min-fresh=20"), t(40)), Reuse::Forward);
        assert_eq!(e.reuse(&req("max-stale"), t(500)), Reuse::StaleAccepted);
        assert_eq!(e.reuse(&req("max-stale=5"), t(65)), Reuse::StaleAccepted);
        assert_eq!(e.reuse(&req("max-stale=5"), t(66)), Reuse::Forward);
        assert_eq!(
            e.reuse(&req("max-stale=5, max-age=30"), t(62)),
            Reuse::Forward
        );
        let strict = entry(60, true);
        assert_eq!(strict.reuse(&req("max-stale"), t(61)), Reuse::Forward);
        assert!(!strict.may_serve_stale());
        assert!(e.may_serve_stale());
    }

    #[test]
    fn store_ttl_keeps_a_grace_for_stale_serving() {
        let e = entry(60, false);
        assert_eq!(
            e.store_ttl(t(10), Duration::from_secs(300)),
            Duration::from_secs(350)
        );
        assert_eq!(
            entry(60, true).store_ttl(t(10), Duration::from_secs(300)),
            Duration::from_secs(50)
        );
        assert_eq!(
            entry(60, true).store_ttl(t(100), Duration::ZERO),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn unsafe_2xx_invalidates() {
        assert!(invalidates(&Method::POST, StatusCode::CREATED));
        assert!(invalidates(&Method::DELETE, StatusCode::NO_CONTENT));
        assert!(!invalidates(&Method::POST, StatusCode::BAD_REQUEST));
        assert!(!invalidates(&Method::GET, StatusCode::OK));
        assert!(!invalidates(&Method::HEAD, StatusCode::OK));
    }

    #[test]
    fn cache_key_is_host_without_port_path_and_query() {
        assert_eq!(
            cache_key("API.example.org:8080", "/a?b=1"),
            "api.example.org/a?b=1"
        );
        assert_eq!(cache_key("api.example.org", "/a"), "api.example.org/a");
        assert_eq!(cache_key("[::1]:8080", "/"), "[::1]/");
        assert_eq!(cache_key("[::1]", "/"), "[::1]/");
        assert_eq!(cache_key("host:", "/"), "host/");
    }

    #[test]
    fn vary_names_are_normalised() {
        assert_eq!(vary(&HeaderMap::new()), Vary::None);
        assert_eq!(vary(&headers(&[("vary", " ")])), Vary::None);
        assert_eq!(
            vary(&headers(&[
                ("vary", "Accept-Encoding, accept"),
                ("vary", "ACCEPT")
            ])),
            Vary::Headers(vec![
                HeaderName::from_static("accept"),
                HeaderName::from_static("accept-encoding")
            ])
        );
        assert_eq!(vary(&headers(&[("vary", "*")])), Vary::Any);
        assert_eq!(vary(&headers(&[("vary", "bad header")])), Vary::Any);
    }

    #[test]
    fn secondary_key_separates_values_absence_and_emptiness() {
        let names = [
            HeaderName::from_static("accept"),
            HeaderName::from_static("x-tenant"),
        ];
        let a = secondary_key(&names, &headers(&[("accept", "application/json")]));
        assert_eq!(a, "accept:application/json\nx-tenant");
        let b = secondary_key(
            &names,
            &headers(&[("accept", " application/json "), ("x-tenant", "")]),
        );
        assert_eq!(b, "accept:application/json\nx-tenant:");
        let c = secondary_key(
            &names,
            &headers(&[
                ("accept", "text/html"),
                ("accept", "*/*"),
                ("x-tenant", "a%b"),
            ]),
        );
        assert_eq!(c, "accept:text/html, */*\nx-tenant:a%25b");
        let mut raw = HeaderMap::new();
        raw.insert("x-tenant", HeaderValue::from_bytes(b"\xffz").unwrap());
        assert_eq!(secondary_key(&names[1..], &raw), "x-tenant:%FFz");
        assert_eq!(secondary_key(&[], &raw), "");
        assert_eq!(variant_key("h/p", ""), "h/p");
        assert_eq!(variant_key("h/p", "accept:x"), "h/p\naccept:x");
    }
}
