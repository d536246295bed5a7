//! A fake AWS Lambda Invoke API on `127.0.0.1:0`, for the real `aws-sdk-lambda` to talk to.
//!
//! Implements `POST /2015-03-31/functions/{name}/invocations` (the name percent-decoded, so
//! ARNs work; `?Qualifier=` honoured), refuses requests without a SigV4 `Authorization` header
//! (403), and runs Rust closures as functions. A closure answers with a [`LambdaReply`]:
//! a payload, a function error (`X-Amz-Function-Error`), a throttle (429), or a delay.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// One invocation as the fake received it.
#[derive(Debug, Clone)]
pub struct LambdaCall {
    pub function: String,
    pub qualifier: Option<String>,
    pub payload: Bytes,
}

impl LambdaCall {
    /// The payload as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

/// What a fake function answers.
#[derive(Debug, Clone)]
pub enum LambdaReply {
    /// 200 with this payload.
    Payload(Bytes),
    /// 200 with `X-Amz-Function-Error: Unhandled` and this payload.
    FunctionError(Bytes),
    /// 429 `TooManyRequestsException` with an optional `Retry-After`.
    Throttle(Option<u64>),
    /// Waits, then answers.
    Delay(Duration, Box<LambdaReply>),
}

impl LambdaReply {
    /// A payload from a JSON value.
    pub fn json(value: serde_json::Value) -> Self {
        LambdaReply::Payload(Bytes::from(value.to_string()))
    }
}

type Function = Arc<dyn Fn(&LambdaCall) -> LambdaReply + Send + Sync>;
type Body = BoxBody<Bytes, Infallible>;

#[derive(Default)]
struct Registry {
    functions: Mutex<HashMap<String, Function>>,
    calls: Mutex<Vec<LambdaCall>>,
    unsigned: AtomicU64,
}

/// A running fake Invoke API; stops when dropped.
pub struct FakeLambda {
    addr: SocketAddr,
    registry: Arc<Registry>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for FakeLambda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeLambda")
            .field("addr", &self.addr)
            .finish()
    }
}

impl FakeLambda {
    /// Starts on `127.0.0.1:0`.
    pub async fn start() -> FakeLambda {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind fake lambda")
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeLambda> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let registry = Arc::new(Registry::default());
        let (stop, mut stopped) = watch::channel(false);
        let serving = registry.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                    _ = stopped.changed() => return,
                };
                let registry = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let registry = registry.clone();
                        async move { Ok::<_, Infallible>(answer(registry, req).await) }
                    });
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FakeLambda {
            addr,
            registry,
            stop,
        })
    }

    /// `http://127.0.0.1:PORT`, for `lambda.endpoint-url` or `AWS_ENDPOINT_URL_LAMBDA`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Registers `function` under `name` (the bare function name; ARNs invoking it resolve
    /// to their name part).
    pub fn function(
        &self,
        name: &str,
        function: impl Fn(&LambdaCall) -> LambdaReply + Send + Sync + 'static,
    ) {
        if let Ok(mut functions) = self.registry.functions.lock() {
            functions.insert(name.to_owned(), Arc::new(function));
        }
    }

    /// Every invocation so far.
    pub fn calls(&self) -> Vec<LambdaCall> {
        self.registry
            .calls
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Requests refused for lacking a SigV4 signature.
    pub fn unsigned_requests(&self) -> u64 {
        self.registry.unsigned.load(Ordering::SeqCst)
    }
}

impl Drop for FakeLambda {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The function name inside a name or ARN (`arn:aws:lambda:r:a:function:NAME[:QUALIFIER]`),
/// with an ARN qualifier if present.
fn split_function(name: &str) -> (String, Option<String>) {
    let parts: Vec<&str> = name.split(':').collect();
    if parts.len() >= 7 && parts[0] == "arn" {
        (parts[6].to_owned(), parts.get(7).map(|q| q.to_string()))
    } else {
        (name.to_owned(), None)
    }
}

fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&input[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amzn-errortype", kind)
        .body(
            Full::new(Bytes::from(
                serde_json::json!({"__type": kind, "message": message}).to_string(),
            ))
            .boxed(),
        )
        .expect("error response")
}

async fn answer(registry: Arc<Registry>, req: Request<Incoming>) -> Response<Body> {
    let signed = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 "));
    if !signed {
        registry.unsigned.fetch_add(1, Ordering::SeqCst);
        return json_error(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationTokenException",
            "request is not signed",
        );
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let Some(encoded) = path
        .strip_prefix("/2015-03-31/functions/")
        .and_then(|rest| rest.strip_suffix("/invocations"))
    else {
        return json_error(StatusCode::NOT_FOUND, "UnknownOperationException", &path);
    };
    let (function, arn_qualifier) = split_function(&percent_decode(encoded));
    let qualifier = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("Qualifier="))
        .map(percent_decode)
        .or(arn_qualifier);
    let payload = match req.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let call = LambdaCall {
        function: function.clone(),
        qualifier,
        payload,
    };
    if let Ok(mut calls) = registry.calls.lock() {
        calls.push(call.clone());
    }
    let handler = registry
        .functions
        .lock()
        .ok()
        .and_then(|f| f.get(&function).cloned());
    let Some(handler) = handler else {
        return json_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {function}"),
        );
    };
    let mut reply = handler(&call);
    loop {
        match reply {
            LambdaReply::Delay(delay, next) => {
                tokio::time::sleep(delay).await;
                reply = *next;
            }
            LambdaReply::Payload(payload) => {
                return Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .header("x-amz-executed-version", "$LATEST")
                    .body(Full::new(payload).boxed())
                    .expect("payload response")
            }
            LambdaReply::FunctionError(payload) => {
                return Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .header("x-amz-function-error", "Unhandled")
                    .body(Full::new(payload).boxed())
                    .expect("function error response")
            }
            LambdaReply::Throttle(retry_after) => {
                let mut response = json_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequestsException",
                    "Rate exceeded",
                );
                if let Some(seconds) = retry_after {
                    if let Ok(value) = http::HeaderValue::from_str(&seconds.to_string()) {
                        response.headers_mut().insert("retry-after", value);
                    }
                }
                return response;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_arns() {
        assert_eq!(split_function("orders"), ("orders".to_owned(), None));
        assert_eq!(
            split_function("arn:aws:lambda:us-east-1:123456789012:function:orders:live"),
            ("orders".to_owned(), Some("live".to_owned()))
        );
        assert_eq!(percent_decode("arn%3Aaws%3Alambda"), "arn:aws:lambda");
    }
}
