//! Just enough HTTP/1.1 for a function behind the gateway: one request at a time per connection, keep-alive,
//! bodies by `Content-Length` or chunked (the gateway streams request bodies chunked).

use std::io::{BufRead, Write};

use crate::WatchdogError;

/// Request heads larger than this are refused: no function needs more.
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;

/// One parsed request.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path and query as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client asked to close the connection after this answer.
    pub close: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(path, _)| path)
    }

    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, query)| query)
    }
}

/// One answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self { status, headers: vec![("Content-Type", content_type.to_owned())], body: body.into() }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        let mut body = body.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Self::new(status, "text/plain; charset=utf-8", body)
    }
}

/// Reads the next request; `Ok(None)` when the client closed the connection between requests.
pub fn read_request(reader: &mut impl BufRead, max_body_bytes: usize) -> Result<Option<Request>, WatchdogError> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let read = reader.read_until(b'\n', &mut head)?;
        if read == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err(WatchdogError::BadRequest("the connection closed inside the request head".into()));
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err(WatchdogError::BadRequest("the request head is too large".into()));
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            if before == 0 {
                // Blank lines before a request line are allowed (RFC 9112 §2.2).
                head.clear();
                continue;
            }
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(WatchdogError::BadRequest("incomplete request head".into())),
        Err(error) => return Err(WatchdogError::BadRequest(format!("malformed request head: {error}"))),
    }
    let method = parsed.method.unwrap_or("GET").to_owned();
    let target = parsed.path.unwrap_or("/").to_owned();
    let http10 = parsed.version == Some(0);
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).trim().to_owned()))
        .collect();
    let find = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let connection = find("connection").unwrap_or("").to_ascii_lowercase();
    let close = connection.contains("close") || (http10 && !connection.contains("keep-alive"));
    let chunked = find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(reader, max_body_bytes)?
    } else if let Some(length) = find("content-length") {
        let length: usize =
            length.parse().map_err(|_| WatchdogError::BadRequest(format!("bad Content-Length `{length}`")))?;
        if length > max_body_bytes {
            return Err(WatchdogError::TooLarge(max_body_bytes));
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    } else {
        Vec::new()
    };
    Ok(Some(Request { method, target, headers, body, close }))
}

fn read_chunked(reader: &mut impl BufRead, max_body_bytes: usize) -> Result<Vec<u8>, WatchdogError> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let size = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| WatchdogError::BadRequest(format!("bad chunk size `{}`", line.trim())))?;
        if size == 0 {
            // Trailers, up to the blank line that ends the body.
            loop {
                let mut trailer = String::new();
                if reader.read_line(&mut trailer)? == 0 || trailer.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > max_body_bytes {
            return Err(WatchdogError::TooLarge(max_body_bytes));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut end = [0u8; 2];
        reader.read_exact(&mut end)?;
        if &end != b"\r\n" {
            return Err(WatchdogError::BadRequest("a chunk does not end with CRLF".into()));
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// Writes `response`; a HEAD answer carries the headers of the GET but no body.
pub fn write_response(
    writer: &mut impl Write,
    response: &Response,
    head_only: bool,
    close: bool,
) -> std::io::Result<()> {
    use std::fmt::Write as _;
    let mut out = format!("HTTP/1.1 {} {}\r\n", response.status, reason(response.status));
    for (name, value) in &response.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    let _ = write!(out, "Content-Length: {}\r\n", response.body.len());
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    writer.write_all(out.as_bytes())?;
    if !head_only {
        writer.write_all(&response.body)?;
    }
    writer.flush()
}
