//! Sliding-window rate-limit arithmetic (SPEC §10 `rate-limit`): the weighted two-window
//! counter. The state of one client is three integers: the index of the current fixed window
//! (`now_ms / window_ms`), the allowed requests counted in the previous window and in the
//! current one. A request is allowed when the estimate of allowed requests in the last
//! `window` — `previous × (window − elapsed) / window + current` — is fewer than `limit`
//! (SPEC's wording); only allowed requests are counted.
//!
//! Everything is integer arithmetic on milliseconds (scaled by `window_ms`, never divided
//! before comparing), so the Redis store's Lua script computes exactly the same answers: the
//! [`LUA_SCRIPT`] below is the same algorithm line by line, and both stores turn the resulting
//! state into a [`RateDecision`] with the same [`SlidingWindow::describe`].
//!
//! Compared with fixed buckets (Shield), a client cannot get `2 × limit` through by sending
//! `limit` at the end of one window and `limit` at the start of the next: the previous window
//! still weighs in full at the boundary and fades out linearly. Like every two-window
//! estimate it assumes the previous window's requests were spread evenly; a client that
//! bunched them at its very end can, over the following window, get up to about `limit`
//! more through than an exact log would allow (an exact log costs `limit` timestamps per
//! client instead of three integers).

use std::time::Duration;

/// The largest `limit` a window accepts (keeps every intermediate product exact in Lua's
/// doubles, below 2^53).
pub const MAX_LIMIT: u64 = 1_000_000;
/// The longest window accepted, in milliseconds (about 11.5 days).
pub const MAX_WINDOW_MS: u64 = 1_000_000_000;

/// A limit that cannot be computed exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    /// `calls-per` was 0 or above [`MAX_LIMIT`].
    #[error("calls-per must be between 1 and {MAX_LIMIT}, not {0}")]
    Limit(u64),
    /// `per-seconds` was under a millisecond or above [`MAX_WINDOW_MS`].
    #[error("the window must be between 1 ms and {MAX_WINDOW_MS} ms, not {0} ms")]
    Window(u128),
}

/// One client's stored state. `Default` is the state of a client never seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowState {
    /// Index of the fixed window the counts refer to (`now_ms / window_ms`).
    pub window: u64,
    /// Allowed requests counted in window `window − 1`.
    pub previous: u64,
    /// Allowed requests counted in window `window`.
    pub current: u64,
}

/// The answer for one request, with what the `RateLimit-*` and `Retry-After` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request may go on (else 429).
    pub allowed: bool,
    /// `RateLimit-Limit`: the configured `calls-per`.
    pub limit: u64,
    /// `RateLimit-Remaining`: requests that would still be allowed right now, after this one.
    pub remaining: u64,
    /// `RateLimit-Reset`: whole seconds (rounded up) until the full `limit` is available again
    /// (0 when it already is).
    pub reset_secs: u64,
    /// `Retry-After` for a refused request: whole seconds (rounded up, at least 1) until a
    /// request would be allowed. 0 when allowed.
    pub retry_after_secs: u64,
}

/// A limit of `limit` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindow {
    limit: u64,
    window_ms: u64,
}

impl SlidingWindow {
    /// `limit` requests per `window` (whole milliseconds; sub-millisecond parts are dropped).
    pub fn new(limit: u64, window: Duration) -> Result<Self, RateLimitError> {
        if limit == 0 || limit > MAX_LIMIT {
            return Err(RateLimitError::Limit(limit));
        }
        let window_ms = window.as_millis();
        if window_ms == 0 || window_ms > u128::from(MAX_WINDOW_MS) {
            return Err(RateLimitError::Window(window_ms));
        }
        Ok(SlidingWindow {
            limit,
            window_ms: window_ms as u64,
        })
    }

    /// The configured limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The window in milliseconds.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// How long a client's state matters after its last update (two windows): the TTL to
    /// store it with.
    pub fn state_ttl(&self) -> Duration {
        Duration::from_millis(2 * self.window_ms)
    }

    /// The window index and the milliseconds elapsed in it for `state` at `now_ms`. A clock
    /// behind the stored window (another instance's clock, or a step back) is taken as the
    /// start of the stored window: the previous window then weighs in full, never less.
    fn position(&self, state: &WindowState, now_ms: u64) -> (u64, u64) {
        let index = now_ms / self.window_ms;
        if state.window > index {
            (state.window, 0)
        } else {
            (index, now_ms % self.window_ms)
        }
    }

    /// Decides one request at `now_ms` (milliseconds since the Unix epoch, or any clock that
    /// every sharer of the state uses) and updates `state`: rolls it to the current window,
    /// then counts the request if allowed.
    pub fn decide(&self, state: &mut WindowState, now_ms: u64) -> RateDecision {
        let allowed = self.admit(state, now_ms);
        self.describe(state, now_ms, allowed)
    }

    /// The step the Redis script mirrors: roll, check, count. Returns whether allowed.
    pub fn admit(&self, state: &mut WindowState, now_ms: u64) -> bool {
        let (index, elapsed) = self.position(state, now_ms);
        if state.window + 1 == index {
            state.previous = state.current;
            state.current = 0;
        } else if state.window != index {
            state.previous = 0;
            state.current = 0;
        }
        state.window = index;
        let w = self.window_ms;
        let weighted = state.previous * (w - elapsed) + state.current * w;
        let allowed = weighted < self.limit * w;
        if allowed {
            state.current += 1;
        }
        allowed
    }

    /// The decision's headers from the state after [`admit`](Self::admit) at the same
    /// `now_ms`. Used by the Redis store on what the script returns.
    pub fn describe(&self, state: &WindowState, now_ms: u64, allowed: bool) -> RateDecision {
        let (_, elapsed) = self.position(state, now_ms);
        let w = self.window_ms;
        let (previous, current) = (state.previous, state.current);
        let weighted = previous * (w - elapsed) + current * w;
        let capacity = self.limit * w;
        let remaining = capacity.saturating_sub(weighted).div_ceil(w);
        let reset_ms = if current > 0 {
            (w - elapsed) + w
        } else if previous > 0 {
            w - elapsed
        } else {
            0
        };
        let retry_after_secs = if allowed {
            0
        } else {
            // The first whole millisecond at which the estimate drops below the limit.
            let wait_ms = if current < self.limit && previous > 0 {
                // Within this window, as the previous window fades out.
                let excess = weighted - capacity;
                excess / previous + 1
            } else {
                // Only in the next window, once this window's count (then the previous one)
                // has faded enough.
                let current = current.max(1);
                let excess = current.saturating_sub(self.limit) * w;
                (w - elapsed) + excess / current + 1
            };
            ceil_secs(wait_ms).max(1)
        };
        RateDecision {
            allowed,
            limit: self.limit,
            remaining,
            reset_secs: ceil_secs(reset_ms),
            retry_after_secs,
        }
    }
}

fn ceil_secs(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// The Redis script: the same steps as [`SlidingWindow::admit`] on a hash `{w, p, c}`.
///
/// `KEYS[1]` the client's key; `ARGV[1]` limit; `ARGV[2]` window in ms; `ARGV[3]` now in ms,
/// or empty to use the Redis server's `TIME` (so every instance sharing the Redis shares one
/// clock). Returns `{allowed (0/1), now_ms, w, p, c}`; the caller builds the decision with
/// [`SlidingWindow::describe`]. The key expires two windows after its last update.
pub const LUA_SCRIPT: &str = r#"
local limit = tonumber(ARGV[1])
local w = tonumber(ARGV[2])
local now
if ARGV[3] ~= nil and ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local index = math.floor(now / w)
local elapsed = now - index * w
local s = redis.call('HMGET', KEYS[1], 'w', 'p', 'c')
local sw = tonumber(s[1]) or 0
local p = tonumber(s[2]) or 0
local c = tonumber(s[3]) or 0
if sw > index then
  index = sw
  elapsed = 0
end
if sw + 1 == index then
  p = c
  c = 0
elseif sw ~= index then
  p = 0
  c = 0
end
local allowed = 0
if p * (w - elapsed) + c * w < limit * w then
  allowed = 1
  c = c + 1
end
redis.call('HSET', KEYS[1], 'w', index, 'p', p, 'c', c)
redis.call('PEXPIRE', KEYS[1], 2 * w)
return {allowed, now, index, p, c}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(limit: u64, secs: u64) -> SlidingWindow {
        SlidingWindow::new(limit, Duration::from_secs(secs)).unwrap()
    }

    /// A time well inside window 1000 of a 10 s window.
    const T0: u64 = 10_000_000;

    #[test]
    fn rejects_limits_it_cannot_compute_exactly() {
        assert_eq!(
            SlidingWindow::new(0, Duration::from_secs(1)),
            Err(RateLimitError::Limit(0))
        );
        assert!(SlidingWindow::new(MAX_LIMIT + 1, Duration::from_secs(1)).is_err());
        assert!(SlidingWindow::new(1, Duration::from_micros(999)).is_err());
        assert!(SlidingWindow::new(1, Duration::from_millis(MAX_WINDOW_MS + 1)).is_err());
        assert!(SlidingWindow::new(MAX_LIMIT, Duration::from_millis(MAX_WINDOW_MS)).is_ok());
    }

    #[test]
    fn allows_limit_requests_then_refuses_with_headers() {
        let l = limiter(3, 10);
        let mut s = WindowState::default();
        let d = l.decide(&mut s, T0);
        assert_eq!(
            d,
            RateDecision {
                allowed: true,
                limit: 3,
                remaining: 2,
                reset_secs: 20,
                retry_after_secs: 0
            }
        );
        assert_eq!(l.decide(&mut s, T0 + 1).remaining, 1);
        assert_eq!(l.decide(&mut s, T0 + 2).remaining, 0);
        let refused = l.decide(&mut s, T0 + 3_000);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        // Three counted in this window: allowed again 1 ms into the next one (the previous
        // window then weighs just under 3): 7.001 s, rounded up.
        assert_eq!(refused.retry_after_secs, 8);
        assert_eq!(s.current, 3, "refused requests are not counted");
    }

    #[test]
    fn the_previous_window_fades_out_linearly() {
        let l = limiter(10, 10);
        let mut s = WindowState::default();
        for i in 0..10 {
            assert!(l.decide(&mut s, T0 + i).allowed);
        }
        // At the start of the next window the previous ten weigh in full.
        let next = T0 + 10_000;
        let d = l.decide(&mut s, next);
        assert!(!d.allowed);
        // 10 × (10 − t)/10 < 10 from t = 1 ms.
        assert_eq!(d.retry_after_secs, 1);
        let d = l.decide(&mut s, next + 1);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert!(!l.decide(&mut s, next + 999).allowed);
        // Half-way, half the previous window remains: 5 + 2 counted → 3 left.
        let d = l.decide(&mut s, next + 5_000);
        assert!(d.allowed);
        assert_eq!(d.remaining, 3);
        assert_eq!(
            s,
            WindowState {
                window: next / 10_000,
                previous: 10,
                current: 2
            }
        );
    }

    #[test]
    fn no_double_rate_across_a_boundary() {
        // Fixed buckets let 2 × limit through around a boundary; here, the burst at the end of
        // one window and the burst right after the boundary together stay at the limit.
        let l = limiter(100, 10);
        let mut s = WindowState::default();
        let end = T0 + 9_999;
        let mut allowed = 0;
        for i in 0..150 {
            allowed += u64::from(l.decide(&mut s, end - 10 + i / 20).allowed);
        }
        assert_eq!(allowed, 100);
        for i in 0..150 {
            allowed += u64::from(l.decide(&mut s, end + 1 + i / 20).allowed);
        }
        // One more 1 ms after the boundary, when the estimate first dips under 100.
        assert_eq!(allowed, 101);
    }

    #[test]
    fn a_gap_of_two_windows_forgets_everything() {
        let l = limiter(2, 10);
        let mut s = WindowState::default();
        l.decide(&mut s, T0);
        l.decide(&mut s, T0);
        assert!(!l.decide(&mut s, T0).allowed);
        let d = l.decide(&mut s, T0 + 20_000);
        assert!(d.allowed);
        assert_eq!(s.previous, 0);
        assert_eq!(d.remaining, 1);
    }

    #[test]
    fn reset_counts_until_the_whole_limit_is_back() {
        let l = limiter(5, 10);
        let mut s = WindowState::default();
        // 2.5 s into a window.
        let d = l.decide(&mut s, T0 + 2_500);
        assert_eq!(d.reset_secs, 18); // 7.5 s + 10 s, rounded up
                                      // In the next window with no new request, only the previous one weighs.
        let st = WindowState {
            window: s.window + 1,
            previous: s.current,
            current: 0,
        };
        assert_eq!(l.describe(&st, T0 + 12_500, true).reset_secs, 8);
        assert_eq!(l.describe(&WindowState::default(), T0, true).reset_secs, 0);
    }

    #[test]
    fn a_clock_behind_the_stored_window_weighs_the_previous_in_full() {
        let l = limiter(4, 10);
        let mut s = WindowState {
            window: T0 / 10_000 + 1,
            previous: 3,
            current: 0,
        };
        let d = l.decide(&mut s, T0 + 9_000);
        assert!(d.allowed);
        assert_eq!(s.window, T0 / 10_000 + 1, "the stored window is kept");
        assert_eq!(d.remaining, 0);
        assert!(!l.decide(&mut s, T0 + 9_500).allowed);
    }

    #[test]
    fn limit_one_per_second() {
        let l = limiter(1, 1);
        let mut s = WindowState::default();
        assert!(l.decide(&mut s, 5_000).allowed);
        let d = l.decide(&mut s, 5_100);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_secs, 1);
        assert!(!l.decide(&mut s, 6_000).allowed, "previous weighs in full");
        assert!(l.decide(&mut s, 6_001).allowed);
    }

    #[test]
    fn retry_after_is_when_a_request_is_next_allowed() {
        // Brute force: for many states, the retry-after of a refusal is the first whole
        // second at which the same state would allow a request, and not earlier.
        let l = limiter(7, 3);
        let w = l.window_ms();
        for previous in 0..=7 {
            for current in 0..=7 {
                for elapsed in [0, 1, 700, 1_500, 2_999] {
                    let base = 1_000 * w;
                    let now = base + elapsed;
                    let state = WindowState {
                        window: 1_000,
                        previous,
                        current,
                    };
                    let mut probe = state;
                    let d = l.decide(&mut probe, now);
                    if d.allowed {
                        continue;
                    }
                    let first_ok = (1..=4 * w)
                        .find(|dt| {
                            let mut s = state;
                            l.admit(&mut s, now + dt)
                        })
                        .unwrap();
                    assert_eq!(
                        d.retry_after_secs,
                        first_ok.div_ceil(1000).max(1),
                        "p={previous} c={current} e={elapsed}"
                    );
                }
            }
        }
    }

    #[test]
    fn remaining_is_what_would_still_be_allowed_now() {
        let l = limiter(6, 2);
        for previous in 0..=6 {
            for current in 0..=5 {
                for elapsed in [0, 500, 1_999] {
                    let now = 500 * 2_000 + elapsed;
                    let mut s = WindowState {
                        window: 500,
                        previous,
                        current,
                    };
                    let d = l.decide(&mut s, now);
                    if !d.allowed {
                        continue;
                    }
                    let mut more = 0;
                    while l.admit(&mut s, now) {
                        more += 1;
                    }
                    assert_eq!(d.remaining, more, "p={previous} c={current} e={elapsed}");
                }
            }
        }
    }
}
