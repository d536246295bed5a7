//! Fetching an upstream's API document: one GET with a deadline, a status check and a size cap.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::body::empty_body;
use crate::client::{HttpUpstreamClient, UpstreamError};

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

impl HttpUpstreamClient {
    /// `GET url` expecting `200`; the whole exchange must finish within `timeout` and the body
    /// must not exceed `max_bytes`.
    pub async fn fetch_document(
        &self,
        url: &str,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Bytes, FetchError> {
        let request = Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "buckler")
            .body(empty_body())
            .map_err(|e| FetchError::Url {
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
            if response.status() != StatusCode::OK {
                return Err(FetchError::Status {
                    url: url.to_owned(),
                    status: response.status(),
                });
            }
            match Limited::new(response.into_body(), max_bytes)
                .collect()
                .await
            {
                Ok(collected) => Ok(collected.to_bytes()),
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
