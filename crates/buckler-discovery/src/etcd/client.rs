//! A small etcd v3 client over the JSON gateway and hyper-util's client: range, put, delete,
//! txn, compaction and watch. Tries the endpoints in turn; sticks with the one that answered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::wire::{b64, RangeResponse, TxnResponse};
use crate::OpenError;

/// Largest unary answer read (etcd's default value limit is 1.5 MiB).
const MAX_ANSWER: usize = 16 << 20;

#[cfg(feature = "https")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "https"))]
type Connector = HttpConnector;

/// Why a call to etcd failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint could be connected to, or the connection broke.
    #[error("etcd at {endpoint} unreachable: {reason}")]
    Unreachable { endpoint: String, reason: String },
    /// An endpoint took longer than the request timeout.
    #[error("etcd at {endpoint} did not answer within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    /// etcd answered with an error.
    #[error("etcd at {endpoint} answered {status}: {message}")]
    Status {
        endpoint: String,
        status: u16,
        message: String,
    },
    /// etcd's answer could not be understood.
    #[error("etcd at {endpoint}: unexpected answer: {reason}")]
    BadAnswer { endpoint: String, reason: String },
}

/// An etcd v3 client over the JSON gateway. Cheap to clone (shares one connection pool).
#[derive(Debug, Clone)]
pub struct EtcdClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `scheme://authority`, no trailing slash.
    endpoints: Vec<String>,
    current: AtomicUsize,
    http: Client<Connector, Full<Bytes>>,
    timeout: Duration,
}

/// The response to an outcome of a compare-and-put.
#[derive(Debug)]
pub(crate) enum TxnOutcome {
    /// Written at this revision.
    Written(i64),
    /// The compare failed; the key's current `mod_revision` (0: absent).
    Lost(i64),
}

fn normalise_endpoint(endpoint: &str) -> Result<String, OpenError> {
    let bad = |reason: &str| OpenError::BadEndpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = endpoint
        .parse()
        .map_err(|_| bad("not a URL like http://127.0.0.1:2379"))?;
    let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
    match scheme.as_str() {
        "http" => {}
        "https" if cfg!(feature = "https") => {}
        "https" => return Err(bad("this build has no https support")),
        _ => return Err(bad("the scheme must be http or https")),
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("user-info is not supported"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad("no path or query expected"));
    }
    Ok(format!("{scheme}://{authority}"))
}

fn connector(timeout: Duration) -> Connector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(timeout));
    // A peer that vanished without a FIN (power loss, partition) is found within ~25 s, so a
    // quiet watch stream does not hang on it for good.
    http.set_keepalive(Some(Duration::from_secs(10)));
    http.set_keepalive_interval(Some(Duration::from_secs(5)));
    http.set_keepalive_retries(Some(3));
    #[cfg(feature = "https")]
    {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(builder) => builder,
            // No system roots: plain http endpoints still work; https ones fail to verify.
            Err(_) => {
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map(|b| {
                        b.with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth()
                    });
                match config {
                    Ok(config) => {
                        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
                    }
                    Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                        rustls::ClientConfig::builder()
                            .with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth(),
                    ),
                }
            }
        };
        builder.https_or_http().enable_http1().wrap_connector(http)
    }
    #[cfg(not(feature = "https"))]
    http
}

fn range_end_of_pair(key: &str) -> Vec<u8> {
    // [KEY, KEY/meta\0): the key and its companion; keys between them are filtered out.
    let mut end = format!("{key}/meta").into_bytes();
    end.push(0);
    end
}

impl EtcdClient {
    /// A client for `endpoints` (`http://host:port`, or `https://` with the `https` feature);
    /// `timeout` bounds each unary call per endpoint and each watch's wait for its answer.
    pub fn new(endpoints: &[String], timeout: Duration) -> Result<Self, OpenError> {
        if endpoints.is_empty() {
            return Err(OpenError::NoEndpoints);
        }
        let endpoints = endpoints
            .iter()
            .map(|e| normalise_endpoint(e))
            .collect::<Result<Vec<_>, _>>()?;
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector(timeout));
        Ok(EtcdClient {
            inner: Arc::new(Inner {
                endpoints,
                current: AtomicUsize::new(0),
                http,
                timeout,
            }),
        })
    }

    /// The endpoints, normalised, in the order given.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// Sends `body` to `path` on each endpoint in turn, from the last one that answered,
    /// until one answers; returns that endpoint and its response head and body.
    async fn send(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<(String, http::Response<Incoming>), EtcdError> {
        let count = self.inner.endpoints.len();
        let start = self.inner.current.load(Ordering::Relaxed);
        let body = Bytes::from(body.to_string());
        let mut last_error = None;
        for attempt in 0..count {
            let index = (start + attempt) % count;
            let endpoint = &self.inner.endpoints[index];
            let request = Request::builder()
                .method(Method::POST)
                .uri(format!("{endpoint}{path}"))
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()));
            let request = match request {
                Ok(request) => request,
                Err(error) => {
                    return Err(EtcdError::BadAnswer {
                        endpoint: endpoint.clone(),
                        reason: format!("cannot build the request: {error}"),
                    })
                }
            };
            let answer = tokio::time::timeout(self.inner.timeout, self.inner.http.request(request));
            let error = match answer.await {
                Ok(Ok(response)) => {
                    self.inner.current.store(index, Ordering::Relaxed);
                    return Ok((endpoint.clone(), response));
                }
                Ok(Err(error)) => EtcdError::Unreachable {
                    endpoint: endpoint.clone(),
                    reason: error_chain(&error),
                },
                Err(_) => EtcdError::Timeout {
                    endpoint: endpoint.clone(),
                    timeout: self.inner.timeout,
                },
            };
            last_error = Some(error);
        }
        Err(last_error.unwrap_or(EtcdError::Unreachable {
            endpoint: String::new(),
            reason: "no endpoint".to_owned(),
        }))
    }

    /// A unary call: the whole answer, parsed; a non-200 answer becomes [`EtcdError::Status`].
    async fn call<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, EtcdError> {
        let count = self.inner.endpoints.len();
        let mut last_error = None;
        // `send` moves on from endpoints that do not connect; a body that breaks or stalls
        // mid-answer moves on here.
        for _ in 0..count {
            let (endpoint, response) = self.send(path, body).await?;
            let status = response.status();
            let collected = tokio::time::timeout(
                self.inner.timeout,
                Limited::new(response.into_body(), MAX_ANSWER).collect(),
            )
            .await;
            let bytes = match collected {
                Ok(Ok(collected)) => collected.to_bytes(),
                Ok(Err(error)) => {
                    last_error = Some(EtcdError::Unreachable {
                        endpoint,
                        reason: format!("the answer broke off: {error}"),
                    });
                    self.skip_current();
                    continue;
                }
                Err(_) => {
                    last_error = Some(EtcdError::Timeout {
                        endpoint,
                        timeout: self.inner.timeout,
                    });
                    self.skip_current();
                    continue;
                }
            };
            if status != StatusCode::OK {
                return Err(EtcdError::Status {
                    endpoint,
                    status: status.as_u16(),
                    message: error_message(&bytes),
                });
            }
            return serde_json::from_slice(&bytes).map_err(|error| EtcdError::BadAnswer {
                endpoint,
                reason: error.to_string(),
            });
        }
        Err(last_error.unwrap_or(EtcdError::Unreachable {
            endpoint: String::new(),
            reason: "no endpoint".to_owned(),
        }))
    }

    fn skip_current(&self) {
        let count = self.inner.endpoints.len();
        let current = self.inner.current.load(Ordering::Relaxed);
        self.inner
            .current
            .store((current + 1) % count, Ordering::Relaxed);
    }

    /// The value and `mod_revision` of `key`, or `None` when it has none.
    pub async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>, EtcdError> {
        let answer: RangeResponse = self
            .call("/v3/kv/range", &json!({ "key": b64(key.as_bytes()) }))
            .await?;
        Ok(answer
            .kvs
            .into_iter()
            .find(|kv| kv.key == key.as_bytes())
            .map(|kv| (kv.value, kv.mod_revision)))
    }

    /// Puts `value` in `key` unconditionally (as another tool would); returns the new revision.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<i64, EtcdError> {
        let answer: RangeResponse = self
            .call(
                "/v3/kv/put",
                &json!({ "key": b64(key.as_bytes()), "value": b64(value) }),
            )
            .await?;
        Ok(answer.header.revision)
    }

    /// Deletes `key`; returns the store's revision after it.
    pub async fn delete(&self, key: &str) -> Result<i64, EtcdError> {
        let answer: RangeResponse = self
            .call("/v3/kv/deleterange", &json!({ "key": b64(key.as_bytes()) }))
            .await?;
        Ok(answer.header.revision)
    }

    /// Compacts the history up to `revision` (watches from older revisions are then canceled).
    pub async fn compact(&self, revision: i64) -> Result<(), EtcdError> {
        let _: Value = self
            .call(
                "/v3/kv/compaction",
                &json!({ "revision": revision.to_string(), "physical": true }),
            )
            .await?;
        Ok(())
    }

    /// `key` and `key/meta` read at one revision.
    pub(crate) async fn range_pair(&self, key: &str) -> Result<RangeResponse, EtcdError> {
        self.call(
            "/v3/kv/range",
            &json!({ "key": b64(key.as_bytes()), "range_end": b64(&range_end_of_pair(key)) }),
        )
        .await
    }

    /// Puts `value` in `key` and `meta` in `key/meta` in one transaction, if `key`'s
    /// `mod_revision` is still `expected` (0: the key must not exist).
    pub(crate) async fn compare_and_put(
        &self,
        key: &str,
        expected: i64,
        value: &[u8],
        meta: &[u8],
    ) -> Result<TxnOutcome, EtcdError> {
        let key64 = b64(key.as_bytes());
        let body = json!({
            "compare": [{
                "target": "MOD", "result": "EQUAL", "key": key64,
                "mod_revision": expected.to_string(),
            }],
            "success": [
                { "request_put": { "key": key64, "value": b64(value) } },
                { "request_put": { "key": b64(format!("{key}/meta").as_bytes()), "value": b64(meta) } },
            ],
            "failure": [ { "request_range": { "key": key64 } } ],
        });
        let answer: TxnResponse = self.call("/v3/kv/txn", &body).await?;
        if answer.succeeded {
            return Ok(TxnOutcome::Written(answer.header.revision));
        }
        let current = answer
            .responses
            .into_iter()
            .filter_map(|r| r.response_range)
            .flat_map(|r| r.kvs)
            .find(|kv| kv.key == key.as_bytes())
            .map_or(0, |kv| kv.mod_revision);
        Ok(TxnOutcome::Lost(current))
    }

    /// Opens a watch of `key` and `key/meta` from `start_revision`: the streamed body of
    /// newline-separated JSON objects, once etcd answered 200.
    pub(crate) async fn watch_pair(
        &self,
        key: &str,
        start_revision: i64,
    ) -> Result<(String, Incoming), EtcdError> {
        let body = json!({ "create_request": {
            "key": b64(key.as_bytes()),
            "range_end": b64(&range_end_of_pair(key)),
            "start_revision": start_revision.to_string(),
            "progress_notify": true,
        }});
        let (endpoint, response) = self.send("/v3/watch", &body).await?;
        if response.status() != StatusCode::OK {
            let status = response.status().as_u16();
            let bytes = tokio::time::timeout(
                self.inner.timeout,
                Limited::new(response.into_body(), MAX_ANSWER).collect(),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .map(|c| c.to_bytes())
            .unwrap_or_default();
            return Err(EtcdError::Status {
                endpoint,
                status,
                message: error_message(&bytes),
            });
        }
        Ok((endpoint, response.into_body()))
    }

    /// After a stream failed on this endpoint, the next watch starts at another one.
    pub(crate) fn stream_failed(&self) {
        if self.inner.endpoints.len() > 1 {
            self.skip_current();
        }
    }
}

/// The `message` (or `error`) of an etcd error answer, else the text itself, cut short.
fn error_message(bytes: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(bytes).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.get("message")
            .or_else(|| v.get("error"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let text = message.unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned());
    text.chars().take(300).collect()
}

/// An error and its sources on one line ("client error (Connect): tcp connect error: ...").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised_and_bad_ones_refused() {
        assert_eq!(
            normalise_endpoint("HTTP://127.0.0.1:2379/").unwrap(),
            "http://127.0.0.1:2379"
        );
        for bad in [
            "127.0.0.1:2379",
            "ftp://h:1",
            "http://h:1/v3",
            "http://u@h:1",
            "http://h:1/?a",
            "",
        ] {
            assert!(normalise_endpoint(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            EtcdClient::new(&[], Duration::from_secs(1)),
            Err(OpenError::NoEndpoints)
        ));
    }
}
