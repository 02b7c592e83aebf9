//! `GET /system/logs?name=&tail=&since=&follow=&instance=`: a function's runtime log as OpenFaaS's logs API serves
//! it, so `faas-cli logs NAME` works against the local stack: newline-delimited JSON, one message a line
//! (`name`, `namespace`, `instance`, `timestamp`, `text`), kept open with `follow=true` and flushed line by line.
//!
//! The lines come from the function's log file: a deployed function's replicas write `function-NAME.log` (stamped
//! line by line, [`crate::line_stamps`]), a platform function's process `NAME.log` (`tracing` lines, which carry
//! their time). A line without a time of its own (a panic's continuation, an older unstamped log) takes the time of
//! the line before it; before any, of the next one; with none at all, the file's modification time. Followed lines
//! without a time take the time they were seen.
//!
//! Bounded: at most [`MAX_TAIL`] lines are answered from what is already written (also when `tail` is absent, which
//! OpenFaaS reads as unlimited), read from the file's last [`MAX_SCAN_BYTES`]; a follow ends when the client goes
//! away or the gateway shuts down.

use std::collections::VecDeque;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};
use functions_api::{function_name, DEFAULT_NAMESPACE};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio_util::sync::CancellationToken;

use super::{Gateway, GatewayError};
use crate::line_stamps::{parse_line, LogLine, MAX_LINE_BYTES};

/// The most lines one request gets from what is already written.
pub const MAX_TAIL: usize = 10_000;
/// How far back from the end of a log the lines are looked for (10,000 lines of up to 1.6 KB).
pub const MAX_SCAN_BYTES: u64 = 16 << 20;
/// The most a follow reads of a log at once; when more was appended, it reads on without waiting.
const FOLLOW_READ_BYTES: u64 = 1 << 20;
/// How often a followed log is looked at for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// The query, as faas-cli sends it.
#[derive(Debug, Deserialize)]
pub(super) struct LogQuery {
    name: Option<String>,
    namespace: Option<String>,
    instance: Option<String>,
    tail: Option<String>,
    since: Option<String>,
    follow: Option<String>,
}

/// One message of the answer, as OpenFaaS's logs API defines it.
#[derive(Debug, Serialize)]
struct Message<'a> {
    name: &'a str,
    namespace: &'a str,
    instance: &'a str,
    timestamp: String,
    text: &'a str,
}

/// What the request asks for, read and checked.
struct LogRequest {
    name: String,
    instance: Option<String>,
    tail: usize,
    since: Option<DateTime<Utc>>,
    follow: bool,
}

impl LogQuery {
    fn parse(self) -> Result<LogRequest, GatewayError> {
        let name = self.name.filter(|n| !n.is_empty()).ok_or(GatewayError::MissingName)?;
        if self.namespace.as_deref().is_some_and(|ns| !ns.is_empty() && ns != DEFAULT_NAMESPACE) {
            return Err(GatewayError::NoSuchFunction(format!("{name}.{}", self.namespace.unwrap_or_default())));
        }
        let tail = match self.tail.as_deref().filter(|t| !t.is_empty()) {
            None => MAX_TAIL,
            Some(t) => {
                let n: i64 = t.parse().map_err(|_| GatewayError::BadLogQuery(format!("tail {t:?} is not a number")))?;
                usize::try_from(n).ok().filter(|&n| n > 0).map_or(MAX_TAIL, |n| n.min(MAX_TAIL))
            }
        };
        let since = match self.since.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(
                DateTime::parse_from_rfc3339(s)
                    .map_err(|_| GatewayError::BadLogQuery(format!("since {s:?} is not an RFC 3339 time")))?
                    .with_timezone(&Utc),
            ),
        };
        let follow = match self.follow.as_deref().unwrap_or("false") {
            "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
            "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
            other => return Err(GatewayError::BadLogQuery(format!("follow {other:?} is not a boolean"))),
        };
        let instance = self.instance.filter(|i| !i.is_empty());
        Ok(LogRequest { name: function_name(&name).to_owned(), instance, tail, since, follow })
    }
}

/// Where a function's lines are, and which of them are asked for.
struct Source {
    function: String,
    path: PathBuf,
    instance: Option<String>,
    since: Option<DateTime<Utc>>,
}

impl Source {
    /// Encodes `line` (timed `time`) as one NDJSON message, unless it is filtered out.
    fn message(&self, line: &LogLine, time: DateTime<Utc>) -> Option<String> {
        let instance = line.instance.as_deref().unwrap_or(&self.function);
        if self.instance.as_deref().is_some_and(|wanted| wanted != instance) || self.since.is_some_and(|s| time <= s) {
            return None;
        }
        let message = Message {
            name: &self.function,
            namespace: DEFAULT_NAMESPACE,
            instance,
            timestamp: time.to_rfc3339_opts(SecondsFormat::Nanos, true),
            text: &line.text,
        };
        serde_json::to_string(&message).ok().map(|mut json| {
            json.push('\n');
            json
        })
    }
}

pub(super) async fn logs(
    State(gateway): State<Gateway>,
    Query(query): Query<LogQuery>,
) -> Result<Response, GatewayError> {
    let request = query.parse()?;
    let path = gateway.log_path(&request.name).ok_or_else(|| GatewayError::NoSuchFunction(request.name.clone()))?;
    let source = Arc::new(Source { function: request.name, path, instance: request.instance, since: request.since });
    let reading = source.clone();
    let tail = request.tail;
    let (written, end) = tokio::task::spawn_blocking(move || read_tail(&reading, tail))
        .await
        .map_err(|e| GatewayError::LogUnreadable(std::io::Error::other(e)))?
        .map_err(GatewayError::LogUnreadable)?;
    let initial = futures_util::stream::iter(written.into_iter().map(|m| Ok::<_, std::io::Error>(Bytes::from(m))));
    let body = if request.follow {
        let follower = Follower {
            source,
            offset: end,
            partial: Vec::new(),
            behind: false,
            shutdown: gateway.inner.shutdown.clone(),
            _count: FollowCount::new(&gateway.inner.followers),
        };
        Body::from_stream(initial.chain(follower.into_stream()))
    } else {
        Body::from_stream(initial)
    };
    Ok(Response::builder().header(CONTENT_TYPE, "application/x-ndjson").body(body).expect("a valid response"))
}

/// The last `tail` wanted messages of what is written now, and the offset the file ended at (where a follow goes
/// on). A missing file has no lines yet.
fn read_tail(source: &Source, tail: usize) -> std::io::Result<(VecDeque<String>, u64)> {
    let mut file = match std::fs::File::open(&source.path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok((VecDeque::new(), 0)),
        Err(error) => return Err(error),
    };
    let metadata = file.metadata()?;
    let end = metadata.len();
    let start = end.saturating_sub(MAX_SCAN_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(end - start).read_to_end(&mut bytes)?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if start > 0 {
        // The scan began within a line: that line is not whole.
        text = text.split_once('\n').map(|(_, rest)| rest.to_owned()).unwrap_or_default();
    }
    let lines: Vec<LogLine> = text.lines().map(|l| parse_line(truncated(l))).collect();
    let modified = metadata.modified().map_or_else(|_| Utc::now(), DateTime::<Utc>::from);
    let mut previous = lines.iter().find_map(|l| l.time).unwrap_or(modified);
    let mut wanted = VecDeque::new();
    for line in &lines {
        let time = line.time.unwrap_or(previous);
        previous = time;
        if let Some(message) = source.message(line, time) {
            if wanted.len() == tail {
                wanted.pop_front();
            }
            wanted.push_back(message);
        }
    }
    Ok((wanted, end))
}

/// `line`, cut to [`MAX_LINE_BYTES`] at a character boundary.
fn truncated(line: &str) -> &str {
    if line.len() <= MAX_LINE_BYTES {
        return line;
    }
    let mut cut = MAX_LINE_BYTES;
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    &line[..cut]
}

/// Counts the follows under way while it lives.
struct FollowCount(Arc<AtomicUsize>);

impl FollowCount {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for FollowCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A followed log: what was read of it, and the bytes of a line not yet ended.
struct Follower {
    source: Arc<Source>,
    offset: u64,
    partial: Vec<u8>,
    /// More was appended than the last read took.
    behind: bool,
    shutdown: CancellationToken,
    _count: FollowCount,
}

impl Follower {
    /// New messages as lines are appended; ends at shutdown (and is dropped when the client goes away).
    fn into_stream(self) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send {
        futures_util::stream::unfold(self, |mut follower| async move {
            loop {
                let wait = if follower.behind { Duration::ZERO } else { FOLLOW_POLL };
                tokio::select! {
                    () = follower.shutdown.cancelled() => return None,
                    () = tokio::time::sleep(wait) => {}
                }
                match follower.read_new().await {
                    Ok(messages) if messages.is_empty() => {}
                    Ok(messages) => return Some((Ok(Bytes::from(messages)), follower)),
                    Err(error) => {
                        tracing::warn!(function = %follower.source.function, %error, "a followed log could not be read");
                    }
                }
            }
        })
    }

    /// The whole lines appended since the last look, as NDJSON; starts over when the file was truncated.
    async fn read_new(&mut self) -> std::io::Result<String> {
        let mut file = match tokio::fs::File::open(&self.source.path).await {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
            Err(error) => return Err(error),
        };
        let len = file.metadata().await?.len();
        if len < self.offset {
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset {
            self.behind = false;
            return Ok(String::new());
        }
        file.seek(SeekFrom::Start(self.offset)).await?;
        let mut added = Vec::new();
        let wanted = (len - self.offset).min(FOLLOW_READ_BYTES);
        self.behind = len - self.offset > wanted;
        file.take(wanted).read_to_end(&mut added).await?;
        self.offset += added.len() as u64;
        self.partial.extend_from_slice(&added);
        let complete = match self.partial.iter().rposition(|&b| b == b'\n') {
            Some(last) => self.partial.drain(..=last).collect::<Vec<u8>>(),
            // A line longer than the bound is passed on in pieces.
            None if self.partial.len() >= MAX_LINE_BYTES => std::mem::take(&mut self.partial),
            None => return Ok(String::new()),
        };
        let now = Utc::now();
        let mut out = String::new();
        for raw in String::from_utf8_lossy(&complete).lines() {
            let line = parse_line(truncated(raw));
            if let Some(message) = self.source.message(&line, line.time.unwrap_or(now)) {
                out.push_str(&message);
            }
        }
        Ok(out)
    }
}
