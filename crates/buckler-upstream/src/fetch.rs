//! Fetching an upstream's API document: one GET with a deadline, a status check and a size cap.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::body::empty_body;
use crate::client::{HttpUpstreamClient, UpstreamError, UpstreamPool};

/// Why a document could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid document URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("GET {url}: {source}")]
    Upstream {
        url: String,
        #[source]
        source: UpstreamError,
    },
    #[error("GET {url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("GET {url}: status {status}, expected 200")]
    Status { url: String, status: StatusCode },
    #[error("GET {url}: document larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("GET {url}: reading the body failed: {reason}")]
    Body { url: String, reason: String },
}

/// The outcome of a conditional fetch.
#[derive(Debug)]
pub enum Fetched {
    /// A (new) document, with the upstream's `ETag` if it sent one.
    Document { body: Bytes, etag: Option<String> },
    /// `304 Not Modified`: the document behind the given `ETag` is still current.
    NotModified,
}

impl HttpUpstreamClient {
    /// [`UpstreamPool::fetch_document`] through the default pool.
    pub async fn fetch_document(
        &self,
        url: &str,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Bytes, FetchError> {
        self.default_pool()
            .fetch_document(url, timeout, max_bytes)
            .await
    }

    /// [`UpstreamPool::fetch_document_if_changed`] through the default pool.
    pub async fn fetch_document_if_changed(
        &self,
        url: &str,
        timeout: Duration,
        max_bytes: usize,
        etag: Option<&str>,
    ) -> Result<Fetched, FetchError> {
        self.default_pool()
            .fetch_document_if_changed(url, timeout, max_bytes, etag)
            .await
    }
}

impl UpstreamPool {
    /// `GET url` expecting `200`; the whole exchange must finish within `timeout` and the body
    /// must not exceed `max_bytes`. Through this pool, so an `https` document is verified with
    /// the pool's trust (a domain's `upstream-ca`).
    pub async fn fetch_document(
        &self,
        url: &str,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Bytes, FetchError> {
        match self
            .fetch_document_if_changed(url, timeout, max_bytes, None)
            .await?
        {
            Fetched::Document { body, .. } => Ok(body),
            Fetched::NotModified => Err(FetchError::Status {
                url: url.to_owned(),
                status: StatusCode::NOT_MODIFIED,
            }),
        }
    }

    /// Like [`Self::fetch_document`], sending `If-None-Match: etag` when one is known, so an
    /// upstream that supports it answers an unchanged document with a bodyless `304`.
    pub async fn fetch_document_if_changed(
        &self,
        url: &str,
        timeout: Duration,
        max_bytes: usize,
        etag: Option<&str>,
    ) -> Result<Fetched, FetchError> {
        let mut request = Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "buckler");
        if let Some(etag) = etag {
            request = request.header(http::header::IF_NONE_MATCH, etag);
        }
        let request = request.body(empty_body()).map_err(|e| FetchError::Url {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        let exchange = async {
            let response = self
                .send(request)
                .await
                .map_err(|source| FetchError::Upstream {
                    url: url.to_owned(),
                    source,
                })?;
            if etag.is_some() && response.status() == StatusCode::NOT_MODIFIED {
                return Ok(Fetched::NotModified);
            }
            if response.status() != StatusCode::OK {
                return Err(FetchError::Status {
                    url: url.to_owned(),
                    status: response.status(),
                });
            }
            let etag = response
                .headers()
                .get(http::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match Limited::new(response.into_body(), max_bytes)
                .collect()
                .await
            {
                Ok(collected) => Ok(Fetched::Document {
                    body: collected.to_bytes(),
                    etag,
                }),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(FetchError::TooLarge {
                    url: url.to_owned(),
                    limit: max_bytes,
                }),
                Err(e) => Err(FetchError::Body {
                    url: url.to_owned(),
                    reason: e.to_string(),
                }),
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(FetchError::Timeout {
                    url: url.to_owned(),
                    timeout,
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use buckler_testkit::FakeUpstream;

    #[tokio::test]
    async fn fetches_a_document() {
        let upstream = FakeUpstream::builder("a")
            .doc("{\"swagger\":\"2.0\"}")
            .start()
            .await;
        let client = HttpUpstreamClient::new();
        let body = client
            .fetch_document(
                &format!("{}/spec", upstream.url()),
                Duration::from_secs(5),
                1024,
            )
            .await
            .unwrap();
        assert_eq!(&body[..], b"{\"swagger\":\"2.0\"}");
    }

    #[tokio::test]
    async fn rejects_non_200_oversized_and_unreachable() {
        let upstream = FakeUpstream::builder("a").start().await;
        let client = HttpUpstreamClient::new();
        let url = format!("{}/spec", upstream.url());
        let err = client
            .fetch_document(&url, Duration::from_secs(5), 1024)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                FetchError::Status {
                    status: StatusCode::NOT_FOUND,
                    ..
                }
            ),
            "{err}"
        );

        upstream.set_doc("x".repeat(2048));
        let err = client
            .fetch_document(&url, Duration::from_secs(5), 1024)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::TooLarge { .. }), "{err}");

        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_url = format!("http://{}/spec", dead.local_addr().unwrap());
        drop(dead);
        let err = client
            .fetch_document(&dead_url, Duration::from_secs(5), 1024)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                FetchError::Upstream {
                    source: UpstreamError::Connect(_),
                    ..
                }
            ),
            "{err}"
        );
    }
}
