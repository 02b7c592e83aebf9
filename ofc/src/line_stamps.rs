//! Per-line times in the local stack's logs, so `/system/logs` can answer `since` and stamp each message as
//! OpenFaaS does (its providers read them from the container runtime).
//!
//! A replica's output has no times of its own (a watchdog's and a handler's prints), so [`stamped_log`] hands the
//! replica a pipe and writes each line to its log as `<RFC 3339 time> [<instance>] <text>`, the time being when the
//! line arrived. The platform's functions log through `tracing`, whose lines already start with their time (or are
//! JSON with a `timestamp`, with `log_format=json`). [`parse_line`] reads any of these back.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};

/// The longest line kept whole; a longer one is cut there (the rest becomes the next line).
pub const MAX_LINE_BYTES: usize = 64 << 10;

/// A write end to give a replica as stdout and stderr: each line written to it is appended to `path`, stamped with
/// the time it arrived and `instance` (the replica's container). A thread copies the lines until every holder of
/// the write end has closed it (the replica has exited).
pub fn stamped_log(path: &Path, instance: &str) -> std::io::Result<File> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let (reader, writer) = std::io::pipe()?;
    let instance = instance.to_owned();
    std::thread::Builder::new().name(format!("log-{instance}")).spawn(move || copy_stamped(reader, log, &instance))?;
    Ok(File::from(OwnedFd::from(writer)))
}

fn copy_stamped(reader: std::io::PipeReader, mut log: File, instance: &str) {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader).take(MAX_LINE_BYTES as u64).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let stamp = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
        let written = writeln!(log, "{stamp} [{instance}] {}", text.trim_end_matches(['\n', '\r']));
        if written.is_err() {
            return;
        }
    }
}

/// One log line, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When it was written, if the line says.
    pub time: Option<DateTime<Utc>>,
    /// The replica that wrote it, for lines [`stamped_log`] wrote.
    pub instance: Option<String>,
    /// The line without its time and instance (a JSON line is kept whole).
    pub text: String,
}

/// Strips terminal colour codes (`ESC [ … letter`), which `tracing` writes around its time and level.
fn strip_colours(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains('\u{1b}') {
        return line.into();
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// Reads a line's time (a leading RFC 3339 time, or a JSON line's `timestamp`) and instance (`[…]` after a time).
pub fn parse_line(raw: &str) -> LogLine {
    let line = strip_colours(raw.trim_end_matches(['\n', '\r']));
    if line.starts_with('{') {
        let time = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v.get("timestamp").and_then(|t| t.as_str()).and_then(parse_time));
        return LogLine { time, instance: None, text: line.into_owned() };
    }
    let (first, rest) = line.split_once(' ').unwrap_or((&line, ""));
    let Some(time) = parse_time(first) else {
        return LogLine { time: None, instance: None, text: line.into_owned() };
    };
    let rest = rest.trim_start();
    if let Some((instance, text)) =
        rest.strip_prefix('[').and_then(|r| r.split_once("] ").or_else(|| r.strip_suffix(']').map(|i| (i, ""))))
    {
        if !instance.contains(' ') {
            return LogLine { time: Some(time), instance: Some(instance.to_owned()), text: text.to_owned() };
        }
    }
    LogLine { time: Some(time), instance: None, text: rest.to_owned() }
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stamped_tracing_json_and_bare_lines() {
        let stamped = parse_line("2026-11-27T03:34:00.5Z [ofc-hello-1-0] listening on 8080\n");
        assert_eq!(stamped.instance.as_deref(), Some("ofc-hello-1-0"));
        assert_eq!(stamped.text, "listening on 8080");
        assert_eq!(stamped.time.unwrap().to_rfc3339(), "2026-11-27T03:34:00.500+00:00");
        let traced = parse_line("\u{1b}[2m2026-11-27T03:34:00.123456Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m started");
        assert!(traced.time.is_some());
        assert_eq!(traced.instance, None);
        assert_eq!(traced.text, "INFO started");
        let json = parse_line(r#"{"timestamp":"2026-11-27T03:34:00Z","level":"INFO"}"#);
        assert!(json.time.is_some());
        assert!(json.text.starts_with('{'));
        let bare = parse_line("thread 'main' panicked");
        assert_eq!(bare, LogLine { time: None, instance: None, text: "thread 'main' panicked".into() });
    }
}
