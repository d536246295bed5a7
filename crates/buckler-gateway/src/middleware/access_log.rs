//! The `access-log` listener (SPEC §10): one JSON object per line per request of the domain,
//! gateway-made errors included, to stdout or a file reopened on SIGUSR1. The request path
//! never waits for the writer: lines go through a bounded queue to one writer thread, and a
//! line that does not fit is dropped and counted (`buckler_access_log_dropped_total`).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use buckler_config::LogConfig;
use buckler_upstream::{BoxError, ProxyBody};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use serde_json::{json, Map, Value};

use super::TraceId;
use crate::upstream::UpstreamHandle;

/// Lines waiting for the writer before new ones are dropped.
const QUEUE_LINES: usize = 8192;
/// How often an idle writer looks for a reopen request.
const IDLE_CHECK: Duration = Duration::from_millis(200);

/// Request headers never written, even when `log.request-headers` names them: credentials.
const REDACTED: &str = "<redacted>";

/// Put on an upstream's response by the dispatch stage: which upstream answered and how long
/// its response head took.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamUsed {
    pub(crate) upstream: Arc<UpstreamHandle>,
    pub(crate) elapsed: Duration,
}

/// The writer side shared by every table of one configuration and kept across reloads that
/// leave the listener's destination alone.
#[derive(Debug)]
struct Writer {
    sender: SyncSender<String>,
    reopen: Arc<AtomicBool>,
    dropped: AtomicU64,
}

/// One `access-log` listener.
#[derive(Debug)]
pub(crate) struct AccessLog {
    pub(crate) id: String,
    path: Option<PathBuf>,
    writer: Arc<Writer>,
    request_headers: Vec<HeaderName>,
    response_headers: Vec<HeaderName>,
    /// Request headers written as `<redacted>` (the API-key headers of the domain's chain).
    redacted: Vec<HeaderName>,
}

impl AccessLog {
    /// Opens the destination (a file is created or appended to) and starts the writer.
    pub(crate) fn start(
        id: &str,
        path: Option<PathBuf>,
        log: &LogConfig,
        redacted: Vec<HeaderName>,
    ) -> Result<AccessLog, String> {
        let out = open(path.as_deref()).map_err(|e| e.to_string())?;
        let (sender, receiver) = mpsc::sync_channel(QUEUE_LINES);
        let reopen = Arc::new(AtomicBool::new(false));
        let thread_reopen = reopen.clone();
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name(format!("access-log-{id}"))
            .spawn(move || write_lines(receiver, out, thread_path, thread_reopen))
            .map_err(|e| e.to_string())?;
        Ok(AccessLog {
            id: id.to_owned(),
            path,
            writer: Arc::new(Writer {
                sender,
                reopen,
                dropped: AtomicU64::new(0),
            }),
            request_headers: header_names(&log.request_headers),
            response_headers: header_names(&log.response_headers),
            redacted,
        })
    }

    /// The same writer with the header lists of a new configuration.
    pub(crate) fn reconfigured(&self, log: &LogConfig, redacted: Vec<HeaderName>) -> AccessLog {
        AccessLog {
            id: self.id.clone(),
            path: self.path.clone(),
            writer: self.writer.clone(),
            request_headers: header_names(&log.request_headers),
            response_headers: header_names(&log.response_headers),
            redacted,
        }
    }

    /// Where it writes (`None`: stdout).
    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Asks the writer to reopen its file before the next line (log rotation).
    pub(crate) fn reopen(&self) {
        self.writer.reopen.store(true, Ordering::Release);
    }

    /// Lines dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.writer.dropped.load(Ordering::Relaxed)
    }

    fn send(&self, line: String) {
        match self.writer.sender.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.writer.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn header_names(names: &[String]) -> Vec<HeaderName> {
    names
        .iter()
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect()
}

fn open(path: Option<&Path>) -> std::io::Result<Box<dyn Write + Send>> {
    match path {
        None => Ok(Box::new(std::io::stdout())),
        Some(path) => {
            let file: File = OpenOptions::new().create(true).append(true).open(path)?;
            Ok(Box::new(BufWriter::new(file)))
        }
    }
}

/// The writer thread: writes lines as they come, flushing when the queue is empty; reopens
/// the file when asked; ends when every sender is gone.
fn write_lines(
    receiver: mpsc::Receiver<String>,
    mut out: Box<dyn Write + Send>,
    path: Option<PathBuf>,
    reopen: Arc<AtomicBool>,
) {
    loop {
        let first = match receiver.recv_timeout(IDLE_CHECK) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if reopen.swap(false, Ordering::AcqRel) {
            let _ = out.flush();
            match open(path.as_deref()) {
                Ok(new) => out = new,
                Err(error) => tracing::error!(
                    path = ?path,
                    "access log: cannot reopen, writing to the old file: {error}"
                ),
            }
        }
        let Some(first) = first else { continue };
        let mut line = Some(first);
        while let Some(text) = line {
            let _ = out.write_all(text.as_bytes());
            let _ = out.write_all(b"\n");
            line = receiver.try_recv().ok();
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

/// The listeners a request reports to. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Listeners(Option<Arc<[Arc<AccessLog>]>>);

impl Listeners {
    pub(crate) fn new(logs: Vec<Arc<AccessLog>>) -> Listeners {
        if logs.is_empty() {
            Listeners(None)
        } else {
            Listeners(Some(logs.into()))
        }
    }

    /// Whether no listener is left.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Starts the record of a request (`None` when there is no listener). `path` is the path
    /// and query as received.
    pub(crate) fn start(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        client_address: &str,
        trace_id: TraceId,
    ) -> Option<Box<AccessStart>> {
        let logs = self.0.clone()?;
        let first = &logs[0];
        let mut request_headers = Map::new();
        for name in &first.request_headers {
            if let Some(value) = headers.get(name) {
                let text = if first.redacted.contains(name) || name == http::header::AUTHORIZATION {
                    REDACTED.to_owned()
                } else {
                    String::from_utf8_lossy(value.as_bytes()).into_owned()
                };
                request_headers.insert(name.as_str().to_owned(), Value::String(text));
            }
        }
        Some(Box::new(AccessStart {
            logs,
            time: SystemTime::now(),
            method: method.to_string(),
            path: path.to_owned(),
            client_address: client_address.to_owned(),
            trace_id: trace_id.as_str().to_owned(),
            request_headers,
            template: None,
            middleware_ms: Vec::new(),
            // Counted as the body passes (pipeline::observe::ClientBody): chunked uploads and
            // HTTP/2 bodies without `Content-Length` log what really arrived.
            bytes_in: Arc::new(AtomicU64::new(0)),
        }))
    }
}

/// What is known of a request when its domain is: completed at the response.
#[derive(Debug)]
pub(crate) struct AccessStart {
    logs: Arc<[Arc<AccessLog>]>,
    time: SystemTime,
    method: String,
    path: String,
    client_address: String,
    trace_id: String,
    request_headers: Map<String, Value>,
    template: Option<Arc<str>>,
    middleware_ms: Vec<(Arc<str>, Duration)>,
    bytes_in: Arc<AtomicU64>,
}

impl AccessStart {
    /// The matched endpoint's template, and the group's listeners (fewer when its endpoints
    /// disable some; `None` when none is left).
    pub(crate) fn routed(
        mut self: Box<Self>,
        template: &Arc<str>,
        listeners: &Listeners,
    ) -> Option<Box<Self>> {
        let logs = listeners.0.clone()?;
        self.logs = logs;
        self.template = Some(template.clone());
        Some(self)
    }

    /// The counter of request body bytes read so far, logged as `bytes_in`: what the
    /// gateway read of the body, so 0 for a request answered before its body was read (a
    /// refusal, a cache hit), and what arrived before a client's upload failed.
    pub(crate) fn bytes_in(&self) -> Arc<AtomicU64> {
        self.bytes_in.clone()
    }

    /// Time spent in each middleware.
    pub(crate) fn middleware(&mut self, timings: &[(Arc<str>, Duration)]) {
        self.middleware_ms.extend_from_slice(timings);
    }

    /// Wraps the response body so that the line is written when it ends (or is dropped),
    /// with the bytes sent and the whole duration.
    pub(crate) fn finish(
        self: Box<Self>,
        response: Response<ProxyBody>,
        request_id: &str,
        started: Instant,
    ) -> Response<ProxyBody> {
        let (parts, body) = response.into_parts();
        let upstream = parts.extensions.get::<UpstreamUsed>();
        let first = &self.logs[0];
        let mut response_headers = Map::new();
        for name in &first.response_headers {
            if let Some(value) = parts.headers.get(name) {
                response_headers.insert(
                    name.as_str().to_owned(),
                    Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
                );
            }
        }
        let middleware_ms: Map<String, Value> = self
            .middleware_ms
            .iter()
            .map(|(id, d)| (id.to_string(), json!(millis(*d))))
            .collect();
        let record = json!({
            "time": rfc3339(self.time),
            "request_id": request_id,
            "trace_id": self.trace_id,
            "client_address": self.client_address,
            "method": self.method,
            "path": self.path,
            "template": self.template.as_deref(),
            "status": parts.status.as_u16(),
            "upstream": upstream.map(|u| u.upstream.identity()),
            "duration_ms": Value::Null,
            "upstream_duration_ms": upstream.map(|u| millis(u.elapsed)),
            "bytes_in": 0,
            "bytes_out": 0,
            "cache": parts.headers.get("x-cache").and_then(|v| v.to_str().ok()),
            "middleware_ms": middleware_ms,
            "request_headers": self.request_headers,
            "response_headers": response_headers,
        });
        let body = LoggedBody {
            inner: body,
            bytes_out: 0,
            pending: Some(Pending {
                record,
                logs: self.logs,
                bytes_in: self.bytes_in,
                started,
            }),
        };
        Response::from_parts(parts, body.boxed())
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

#[derive(Debug)]
struct Pending {
    record: Value,
    logs: Arc<[Arc<AccessLog>]>,
    bytes_in: Arc<AtomicU64>,
    started: Instant,
}

impl Pending {
    fn write(mut self, bytes_out: u64) {
        self.record["duration_ms"] = json!(millis(self.started.elapsed()));
        self.record["bytes_out"] = json!(bytes_out);
        self.record["bytes_in"] = json!(self.bytes_in.load(Ordering::Relaxed));
        let line = self.record.to_string();
        for log in self.logs.iter() {
            log.send(line.clone());
        }
    }
}

/// A response body that writes the access-log line when it ends or is dropped.
struct LoggedBody {
    inner: ProxyBody,
    bytes_out: u64,
    pending: Option<Pending>,
}

impl Body for LoggedBody {
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
                    self.bytes_out += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                if let Some(pending) = self.pending.take() {
                    pending.write(self.bytes_out);
                }
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

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.write(self.bytes_out);
        }
    }
}

/// `2026-12-07T21:53:44.123Z`.
fn rfc3339(time: SystemTime) -> String {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_680_424_123);
        assert_eq!(rfc3339(t), "2026-12-07T21:53:44.123Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn a_writer_that_falls_behind_drops_and_counts_without_blocking() {
        // A queue of two lines whose writer never reads: the third line is dropped at once.
        let (sender, _receiver) = mpsc::sync_channel(2);
        let log = AccessLog {
            id: "a".into(),
            path: None,
            writer: Arc::new(Writer {
                sender,
                reopen: Arc::default(),
                dropped: AtomicU64::new(0),
            }),
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            redacted: Vec::new(),
        };
        for _ in 0..5 {
            log.send("line".into());
        }
        assert_eq!(log.dropped(), 3);
    }

    #[test]
    fn lines_reach_the_file_and_a_reopen_follows_a_rename() {
        let dir = std::env::temp_dir().join(format!("buckler-al-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.log");
        let log =
            AccessLog::start("a", Some(path.clone()), &LogConfig::default(), Vec::new()).unwrap();
        log.send("one".into());
        let wait_for = |file: &Path, text: &str| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::read_to_string(file).unwrap_or_default() != text {
                assert!(Instant::now() < deadline, "{file:?} never held {text:?}");
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        wait_for(&path, "one\n");
        std::fs::rename(&path, dir.join("a.log.1")).unwrap();
        log.reopen();
        log.send("two".into());
        wait_for(&path, "two\n");
        wait_for(&dir.join("a.log.1"), "one\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
