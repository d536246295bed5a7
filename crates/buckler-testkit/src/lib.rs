//! Test support for Buckler: fake upstreams that serve Swagger documents and answer requests
//! in ways tests can inspect, a fault-injecting upstream on raw sockets, a fake Lambda Invoke API, a one-time tracing setup and an eventually-assertion.

mod fake_lambda;
mod fake_upstream;
mod fault_upstream;
mod swagger;

pub use fake_lambda::{FakeLambda, LambdaCall, LambdaReply};
pub use fake_upstream::{FakeUpstream, FakeUpstreamBuilder, RecordedRequest};
pub use fault_upstream::{Fault, FaultUpstream, RawRequest};
pub use swagger::Swagger2Doc;

use std::sync::Once;

/// Installs a test tracing subscriber once per process (respects `RUST_LOG`, default `warn`).
pub fn trace_init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// Polls `$cond` (an expression that may `.await`) every 20 ms until it is true, failing the
/// test after `$timeout` (default 10 s) with the given message. Use instead of fixed sleeps.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $($msg:tt)+) => {
        $crate::assert_eventually!(@timeout ::std::time::Duration::from_secs(10), $cond, $($msg)+)
    };
    (@timeout $timeout:expr, $cond:expr, $($msg:tt)+) => {{
        let deadline = ::std::time::Instant::now() + $timeout;
        loop {
            if $cond {
                break;
            }
            if ::std::time::Instant::now() > deadline {
                panic!("condition not met within {:?}: {}", $timeout, format!($($msg)+));
            }
            ::tokio::time::sleep(::std::time::Duration::from_millis(20)).await;
        }
    }};
}
