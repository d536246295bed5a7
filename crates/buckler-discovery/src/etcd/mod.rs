//! `upstream-watcher: "etcd"`: the list in one etcd key, followed with a watch that survives
//! etcd restarts and compactions, written with a compare-and-put transaction that records the
//! change beside the list (`KEY/meta`).

mod client;
mod wire;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use buckler_config::LambdaDefaults;
use bytes::{Buf, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::watch;

use client::TxnOutcome;
pub use client::{EtcdClient, EtcdError};
use wire::{KeyValue, WatchEnvelope, WatchResponse};

use crate::backoff::Delays;
use crate::json::{meta_from_json, meta_to_json};
use crate::status::StatusCell;
use crate::{
    parse_value, Backoff, ChangeMeta, EventSender, OpenError, ReadError, RejectReason, Rejection,
    Revision, Snapshot, SourceEvent, SourceStatus, SourceWatch, UpstreamSource, WriteError,
};

/// Longest watch stream object buffered (a value is at most 1.5 MiB by etcd's default, twice
/// over in base64, plus the meta).
const MAX_STREAM_OBJECT: usize = 32 << 20;

/// Timeouts and retry pacing of an etcd source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Bounds each unary call per endpoint, and a watch's wait for its answer.
    pub request_timeout: Duration,
    /// Pacing of reconnects while etcd is out of reach.
    pub backoff: Backoff,
    /// A watch stream silent this long is reopened from the last seen revision. The watch asks
    /// for progress notifications, which etcd sends every 10 minutes by default
    /// (`--experimental-watch-progress-notify-interval`); TCP keep-alive finds dead peers sooner.
    pub watch_idle_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            request_timeout: Duration::from_secs(2),
            backoff: Backoff::default(),
            watch_idle_timeout: Duration::from_secs(11 * 60),
        }
    }
}

/// An upstream list in an etcd key, with Buckler's change record in `KEY/meta`.
#[derive(Debug, Clone)]
pub struct EtcdSource {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: EtcdClient,
    key: String,
    meta_key: String,
    /// Names the value in parse errors: `etcd:KEY`.
    name: String,
    lambda: LambdaDefaults,
    options: EtcdOptions,
    status: StatusCell,
    /// Full re-reads forced by a compacted watch revision.
    compaction_rereads: AtomicU64,
}

/// The key's value at one read.
enum Current {
    Missing,
    Present {
        value: KeyValue,
        meta: Option<KeyValue>,
    },
}

/// Why a watch stream ended.
enum StreamEnd {
    /// The watcher dropped its [`SourceWatch`].
    WatcherGone,
    /// etcd canceled the watch: its start revision was compacted. Re-read, then watch again.
    Compacted(i64),
    /// The stream broke or etcd reported an error; retry after a pause.
    Broken(String),
    /// Nothing arrived for `watch_idle_timeout`; reopen at once.
    Idle,
}

/// What the watch loop carries from stream to stream.
struct Progress {
    /// The key's `mod_revision` last reported (0: reported as absent); `None`: nothing yet.
    reported: Option<i64>,
    /// The next revision to watch from; `None`: read the key first.
    resume: Option<i64>,
    /// A valid value was reported (status `Stale`, not `Waiting`, when etcd goes away).
    had_value: bool,
}

impl EtcdSource {
    /// A source over `key` at `endpoints`; opens no connection yet.
    pub fn new(
        endpoints: &[String],
        key: &str,
        lambda: LambdaDefaults,
        options: EtcdOptions,
    ) -> Result<Self, OpenError> {
        let client = EtcdClient::new(endpoints, options.request_timeout)?;
        let name = format!("etcd:{key}");
        Ok(EtcdSource {
            inner: Arc::new(Inner {
                status: StatusCell::new(SourceStatus::Waiting {
                    reason: format!("etcd key {key} not read yet"),
                }),
                client,
                meta_key: format!("{key}/meta"),
                key: key.to_owned(),
                name,
                lambda,
                options,
                compaction_rereads: AtomicU64::new(0),
            }),
        })
    }

    /// The client this source uses.
    pub fn client(&self) -> &EtcdClient {
        &self.inner.client
    }

    /// How many times a watch found its start revision compacted and re-read the key (each
    /// is logged as a warning too); a number that keeps growing means etcd compacts faster
    /// than this instance reconnects.
    pub fn compaction_rereads(&self) -> u64 {
        self.inner.compaction_rereads.load(Ordering::Relaxed)
    }
}

impl Inner {
    /// Reads the key and its meta at one revision; returns them and that revision.
    async fn read_current(&self) -> Result<(Current, i64), EtcdError> {
        let answer = self.client.range_pair(&self.key).await?;
        let mut value = None;
        let mut meta = None;
        for kv in answer.kvs {
            if kv.key == self.key.as_bytes() {
                value = Some(kv);
            } else if kv.key == self.meta_key.as_bytes() {
                meta = Some(kv);
            }
        }
        let current = match value {
            Some(value) => Current::Present { value, meta },
            None => Current::Missing,
        };
        Ok((current, answer.header.revision))
    }

    /// The meta recorded with the value of `revision`, if `meta` is it.
    fn meta_for(&self, meta: Option<&KeyValue>, revision: i64) -> Option<ChangeMeta> {
        let meta = meta.filter(|m| m.mod_revision == revision)?;
        let parsed = meta_from_json(&meta.value);
        if parsed.is_none() {
            tracing::warn!(key = %self.meta_key, revision, "etcd change record unreadable; the change is anchored to when it was seen");
        }
        parsed
    }

    /// A value (and its meta, if written with it) as an event.
    fn event_of(&self, value: &KeyValue, meta: Option<ChangeMeta>) -> SourceEvent {
        let revision = Revision::Etcd(value.mod_revision);
        match parse_value(&value.value, &self.name, &self.lambda) {
            Ok(upstreams) => SourceEvent::Changed(Snapshot {
                upstreams,
                revision,
                meta,
                seen_at: SystemTime::now(),
            }),
            Err(errors) => SourceEvent::Rejected(Rejection {
                revision,
                reason: RejectReason::Invalid(errors),
            }),
        }
    }

    /// Reports `event` and updates the status; false when the watcher is gone.
    async fn report(
        &self,
        event: SourceEvent,
        progress: &mut Progress,
        sender: &EventSender,
    ) -> bool {
        match &event {
            SourceEvent::Changed(_) => {
                progress.had_value = true;
                self.status.live();
            }
            SourceEvent::Rejected(rejection) => {
                if progress.had_value {
                    self.status.live();
                } else {
                    let reason = match &rejection.reason {
                        RejectReason::Invalid(_) => {
                            format!("etcd key {} holds no valid list", self.key)
                        }
                        RejectReason::Deleted(_) => format!("etcd key {} has no value", self.key),
                    };
                    self.status.waiting(reason);
                }
            }
        }
        sender.send(event).await
    }

    /// The first step, and the step after a compaction: the current value (reported if it is
    /// new), and the revision to watch from.
    async fn catch_up(
        &self,
        progress: &mut Progress,
        sender: &EventSender,
    ) -> Result<bool, EtcdError> {
        let (current, header_revision) = self.read_current().await?;
        match current {
            Current::Missing => {
                if progress.had_value && progress.reported != Some(0) {
                    progress.reported = Some(0);
                    let rejection = Rejection {
                        revision: Revision::Absent,
                        reason: RejectReason::Deleted(format!("etcd key {}", self.key)),
                    };
                    if !self
                        .report(SourceEvent::Rejected(rejection), progress, sender)
                        .await
                    {
                        return Ok(false);
                    }
                } else if !progress.had_value {
                    progress.reported = Some(0);
                    self.status
                        .waiting(format!("etcd key {} has no value yet", self.key));
                } else {
                    self.status.live();
                }
            }
            Current::Present { value, meta } => {
                if progress.reported == Some(value.mod_revision) {
                    if progress.had_value {
                        self.status.live();
                    }
                } else {
                    progress.reported = Some(value.mod_revision);
                    let meta = self.meta_for(meta.as_ref(), value.mod_revision);
                    let event = self.event_of(&value, meta);
                    if !self.report(event, progress, sender).await {
                        return Ok(false);
                    }
                }
            }
        }
        progress.resume = Some(header_revision + 1);
        Ok(true)
    }

    async fn watch(self: Arc<Self>, after: Option<Revision>, sender: EventSender) {
        let (reported, resume) = match after {
            Some(Revision::Etcd(n)) => (Some(n), Some(n + 1)),
            // Absent (or a revision of another source): read first, report what is there.
            _ => (None, None),
        };
        let mut progress = Progress {
            reported,
            resume,
            had_value: matches!(after, Some(Revision::Etcd(_))),
        };
        let mut delays = Delays::new(self.options.backoff);
        loop {
            let from = match progress.resume {
                Some(from) => from,
                None => match self.catch_up(&mut progress, &sender).await {
                    Ok(true) => {
                        delays.reset();
                        continue;
                    }
                    Ok(false) => return,
                    Err(error) => {
                        self.status.failing(error.to_string(), progress.had_value);
                        tracing::warn!(key = %self.key, "etcd read failed, retrying: {error}");
                        tokio::time::sleep(delays.next()).await;
                        continue;
                    }
                },
            };
            let (endpoint, body) = match self.client.watch_pair(&self.key, from).await {
                Ok(stream) => stream,
                Err(error) => {
                    self.status.failing(error.to_string(), progress.had_value);
                    tracing::warn!(key = %self.key, "etcd watch failed, retrying: {error}");
                    tokio::time::sleep(delays.next()).await;
                    continue;
                }
            };
            match self.follow(body, &mut progress, &sender, &mut delays).await {
                StreamEnd::WatcherGone => return,
                StreamEnd::Compacted(compacted) => {
                    tracing::warn!(key = %self.key, from, compacted, "etcd history compacted past the watch; re-reading the key");
                    self.compaction_rereads.fetch_add(1, Ordering::Relaxed);
                    progress.resume = None;
                }
                StreamEnd::Idle => {
                    tracing::debug!(key = %self.key, "etcd watch quiet; reopening it");
                }
                StreamEnd::Broken(reason) => {
                    let reason = format!("etcd watch at {endpoint} ended: {reason}");
                    self.status.failing(reason.clone(), progress.had_value);
                    tracing::warn!(key = %self.key, "{reason}; resuming");
                    self.client.stream_failed();
                    tokio::time::sleep(delays.next()).await;
                }
            }
        }
    }

    /// Reads one watch stream to its end, reporting values as they come.
    async fn follow(
        &self,
        mut body: Incoming,
        progress: &mut Progress,
        sender: &EventSender,
        delays: &mut Delays,
    ) -> StreamEnd {
        let mut buffer = BytesMut::new();
        loop {
            let frame = tokio::time::timeout(self.options.watch_idle_timeout, body.frame()).await;
            let data = match frame {
                Err(_) => return StreamEnd::Idle,
                Ok(None) => return StreamEnd::Broken("etcd closed the stream".to_owned()),
                Ok(Some(Err(error))) => return StreamEnd::Broken(error.to_string()),
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
            };
            buffer.extend_from_slice(&data);
            // Whole objects are handled; a partial one waits for more bytes.
            loop {
                let mut objects =
                    serde_json::Deserializer::from_slice(&buffer).into_iter::<WatchEnvelope>();
                let next = objects.next();
                let consumed = objects.byte_offset();
                let envelope = match next {
                    None => {
                        buffer.advance(consumed);
                        break;
                    }
                    Some(Err(error)) if error.is_eof() => {
                        if buffer.len() > MAX_STREAM_OBJECT {
                            return StreamEnd::Broken("a watch answer too large".to_owned());
                        }
                        break;
                    }
                    Some(Err(error)) => {
                        return StreamEnd::Broken(format!("unreadable watch answer: {error}"))
                    }
                    Some(Ok(envelope)) => envelope,
                };
                buffer.advance(consumed);
                if let Some(error) = envelope.error {
                    let message = error
                        .get("message")
                        .and_then(|m| m.as_str())
                        .map_or_else(|| error.to_string(), str::to_owned);
                    return StreamEnd::Broken(message);
                }
                let Some(result) = envelope.result else {
                    continue;
                };
                if let Some(end) = self.handle(result, progress, sender, delays).await {
                    return end;
                }
            }
        }
    }

    /// One watch answer; `Some` when the stream is done.
    async fn handle(
        &self,
        result: WatchResponse,
        progress: &mut Progress,
        sender: &EventSender,
        delays: &mut Delays,
    ) -> Option<StreamEnd> {
        if result.canceled {
            if result.compact_revision > 0 {
                return Some(StreamEnd::Compacted(result.compact_revision));
            }
            return Some(StreamEnd::Broken(format!(
                "etcd canceled the watch: {}",
                result.cancel_reason
            )));
        }
        if result.created {
            // Connected. Its header revision is not "seen": the catch-up events follow it.
            delays.reset();
            if progress.had_value {
                self.status.live();
            }
            return None;
        }
        if result.events.is_empty() {
            // A progress notification: everything up to its revision has been sent.
            if let Some(header) = &result.header {
                progress.resume = progress.resume.max(Some(header.revision + 1));
            }
            return None;
        }
        let mut latest: Option<&wire::Event> = None;
        for event in &result.events {
            progress.resume = progress.resume.max(Some(event.kv.mod_revision + 1));
            if event.kv.key == self.key.as_bytes()
                && latest.is_none_or(|l| event.kv.mod_revision >= l.kv.mod_revision)
            {
                latest = Some(event);
            }
        }
        // A burst (a catch-up after a reconnect) is folded into its newest value.
        let latest = latest?;
        if latest.is_delete() {
            if progress.reported == Some(0) {
                return None;
            }
            progress.reported = Some(0);
            let rejection = Rejection {
                revision: Revision::Absent,
                reason: RejectReason::Deleted(format!("etcd key {}", self.key)),
            };
            return (!self
                .report(SourceEvent::Rejected(rejection), progress, sender)
                .await)
                .then_some(StreamEnd::WatcherGone);
        }
        let revision = latest.kv.mod_revision;
        if progress.reported == Some(revision) {
            return None;
        }
        progress.reported = Some(revision);
        let meta_event = result.events.iter().find(|e| {
            e.kv.key == self.meta_key.as_bytes() && !e.is_delete() && e.kv.mod_revision == revision
        });
        let meta = match meta_event {
            Some(event) => self.meta_for(Some(&event.kv), revision),
            // etcd sends one revision's events together, so this is a value written without
            // meta (another tool); make sure by asking, as it costs one read per such value.
            None => self.meta_from_store(revision).await,
        };
        let event = self.event_of(&latest.kv, meta);
        (!self.report(event, progress, sender).await).then_some(StreamEnd::WatcherGone)
    }

    async fn meta_from_store(&self, revision: i64) -> Option<ChangeMeta> {
        match self.client.get(&self.meta_key).await {
            Ok(Some((value, mod_revision))) => {
                let kv = KeyValue {
                    key: self.meta_key.as_bytes().to_vec(),
                    value,
                    mod_revision,
                };
                self.meta_for(Some(&kv), revision)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::debug!(key = %self.meta_key, "change record not read: {error}");
                None
            }
        }
    }

    async fn write(
        &self,
        text: &str,
        expected: Revision,
        meta: ChangeMeta,
    ) -> Result<Snapshot, WriteError> {
        let upstreams = buckler_config::parse_upstreams(text, "request body", &self.lambda)
            .map_err(WriteError::Invalid)?;
        let expected_mod = match expected {
            Revision::Absent => 0,
            Revision::Etcd(n) if n > 0 => n,
            // A revision of another source can never match; the compare fails and says what is.
            _ => -1,
        };
        let record = meta_to_json(&meta);
        let outcome = self
            .client
            .compare_and_put(&self.key, expected_mod, text.as_bytes(), record.as_bytes())
            .await
            .map_err(|error| WriteError::Unavailable(error.to_string()))?;
        match outcome {
            TxnOutcome::Written(revision) => Ok(Snapshot {
                upstreams,
                revision: Revision::Etcd(revision),
                meta: Some(meta),
                seen_at: SystemTime::now(),
            }),
            TxnOutcome::Lost(current) => Err(WriteError::Conflict {
                expected,
                current: if current > 0 {
                    Revision::Etcd(current)
                } else {
                    Revision::Absent
                },
            }),
        }
    }
}

impl UpstreamSource for EtcdSource {
    fn describe(&self) -> String {
        format!(
            "etcd key {} at {}",
            self.inner.key,
            self.inner.client.endpoints().join(", ")
        )
    }

    fn read(&self) -> BoxFuture<'_, Result<Snapshot, ReadError>> {
        async move {
            let inner = &self.inner;
            let (current, _) = inner
                .read_current()
                .await
                .map_err(|error| ReadError::Unavailable(error.to_string()))?;
            match current {
                Current::Missing => Err(ReadError::Missing(format!("etcd key {}", inner.key))),
                Current::Present { value, meta } => {
                    let meta = inner.meta_for(meta.as_ref(), value.mod_revision);
                    match inner.event_of(&value, meta) {
                        SourceEvent::Changed(snapshot) => {
                            inner.status.live();
                            Ok(snapshot)
                        }
                        SourceEvent::Rejected(Rejection {
                            revision,
                            reason: RejectReason::Invalid(errors),
                        }) => Err(ReadError::Invalid { revision, errors }),
                        SourceEvent::Rejected(Rejection { .. }) => {
                            Err(ReadError::Missing(format!("etcd key {}", inner.key)))
                        }
                    }
                }
            }
        }
        .boxed()
    }

    fn watch(&self, after: Option<Revision>) -> SourceWatch {
        let inner = self.inner.clone();
        SourceWatch::spawn(move |sender| inner.watch(after, sender))
    }

    fn write<'a>(
        &'a self,
        text: &'a str,
        expected: Revision,
        meta: ChangeMeta,
    ) -> BoxFuture<'a, Result<Snapshot, WriteError>> {
        self.inner.write(text, expected, meta).boxed()
    }

    fn status(&self) -> watch::Receiver<SourceStatus> {
        self.inner.status.subscribe()
    }
}
