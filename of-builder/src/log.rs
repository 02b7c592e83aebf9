//! The build log sent back: all of it (a failure is often explained far from the end), with every secret
//! of-builder knows replaced, because the log travels to buildshiprun, the audit log and the user.

use base64::Engine;
use shared::config::Secret;

/// A log larger than this keeps its beginning and its end; only a runaway build prints this much.
const MAX_LOG_BYTES: usize = 8 << 20;
/// Shorter values are not scrubbed: they would blank out ordinary words.
const MIN_SECRET_LEN: usize = 4;

/// Replaces known secret values in log lines.
#[derive(Clone, Default)]
pub struct Scrubber {
    secrets: Vec<String>,
}

/// The values themselves never appear in a debug print.
impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scrubber({} values)", self.secrets.len())
    }
}

impl Scrubber {
    /// Scrubs the payload secret and every credential in a registry auth file (`{"auths": {host: {auth, …}}}`):
    /// the `auth` value, its decoded `user:password` and the password alone, and any token.
    pub fn new(payload_secret: &Secret, registry_auth: Option<&Secret>) -> Self {
        let mut secrets = vec![payload_secret.expose().to_owned()];
        if let Some(auth) = registry_auth {
            secrets.push(auth.expose().trim().to_owned());
            let json: serde_json::Value = serde_json::from_str(auth.expose()).unwrap_or_default();
            for entry in json["auths"].as_object().into_iter().flat_map(|m| m.values()) {
                for key in ["auth", "password", "identitytoken", "registrytoken"] {
                    if let Some(value) = entry[key].as_str() {
                        secrets.push(value.to_owned());
                    }
                }
                let decoded = entry["auth"]
                    .as_str()
                    .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
                    .and_then(|b| String::from_utf8(b).ok());
                if let Some(pair) = decoded {
                    if let Some((_, password)) = pair.split_once(':') {
                        secrets.push(password.to_owned());
                    }
                    secrets.push(pair);
                }
            }
        }
        secrets.retain(|s| s.len() >= MIN_SECRET_LEN);
        // Longest first, so a value containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    pub fn scrub(&self, line: &str) -> String {
        let mut line = line.to_owned();
        for secret in &self.secrets {
            if line.contains(secret.as_str()) {
                line = line.replace(secret.as_str(), shared::log_store::SCRUBBED);
            }
        }
        line
    }
}

/// What stands in the log for an image reference of another owner.
pub const ANOTHER_IMAGE: &str = "[another owner's image]";

/// Replaces every image reference in a build's log that names a registry and is neither this owner's nor an
/// allowed base image: layer storage is shared, so Buildah may print names another owner's build gave an image.
#[derive(Debug, Clone)]
pub struct ImageScrubber {
    /// `<registry>/<owner>`: this owner's namespace.
    own_prefix: Option<String>,
    allowed: crate::base_images::Allowlist,
}

impl ImageScrubber {
    pub fn new(own_image: &str, allowed: &crate::base_images::Allowlist) -> Self {
        let own_prefix = shared::naming::image_owner_prefix(own_image).map(|p| format!("{p}/"));
        Self { own_prefix, allowed: allowed.clone() }
    }

    pub fn scrub_all(&self, lines: Vec<String>) -> Vec<String> {
        lines.into_iter().map(|line| self.scrub(&line)).collect()
    }

    /// `line` with each foreign image reference replaced by [`ANOTHER_IMAGE`].
    pub fn scrub(&self, line: &str) -> String {
        let mut out = String::with_capacity(line.len());
        let mut rest = line;
        while !rest.is_empty() {
            let start = rest.find(|c: char| !is_separator(c)).unwrap_or(rest.len());
            out.push_str(&rest[..start]);
            rest = &rest[start..];
            let end = rest.find(is_separator).unwrap_or(rest.len());
            let token = &rest[..end];
            if self.is_foreign(token.trim_end_matches(['.', ','])) {
                out.push_str(ANOTHER_IMAGE);
                out.push_str(&token[token.trim_end_matches(['.', ',']).len()..]);
            } else {
                out.push_str(token);
            }
            rest = &rest[end..];
        }
        out
    }

    fn is_foreign(&self, token: &str) -> bool {
        let Some((host, _)) = token.split_once('/') else { return false };
        let names_registry = host.contains('.') || host.contains(':') || host == "localhost";
        if !names_registry || crate::reference::check(token).is_err() {
            return false;
        }
        let own = self.own_prefix.as_deref().is_some_and(|prefix| token.starts_with(prefix));
        !own && !self.allowed.allows_reference(token)
    }
}

/// What separates words in a log line, quotes and brackets included.
fn is_separator(c: char) -> bool {
    c.is_whitespace() || "\"'`()[]{}<>=;|".contains(c)
}

/// Collects a build's output lines, scrubbed, keeping the first and last `MAX_LOG_BYTES / 2` when it is huge.
#[derive(Debug, Default)]
pub struct Log {
    head: Vec<String>,
    head_bytes: usize,
    tail: std::collections::VecDeque<String>,
    tail_bytes: usize,
    left_out: usize,
}

impl Log {
    pub fn push(&mut self, line: String) {
        if self.tail.is_empty() && self.head_bytes + line.len() <= MAX_LOG_BYTES / 2 {
            self.head_bytes += line.len();
            self.head.push(line);
            return;
        }
        self.tail_bytes += line.len();
        self.tail.push_back(line);
        while self.tail_bytes > MAX_LOG_BYTES / 2 {
            let Some(dropped) = self.tail.pop_front() else { break };
            self.tail_bytes -= dropped.len();
            self.left_out += 1;
        }
    }

    pub fn into_lines(self) -> Vec<String> {
        let mut lines = self.head;
        if self.left_out > 0 {
            lines.push(format!("[of-builder: {} log lines left out]", self.left_out));
        }
        lines.extend(self.tail);
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_the_payload_secret_and_registry_credentials() {
        let auth = base64::engine::general_purpose::STANDARD.encode("robot:hunter2-password");
        let file = format!(r#"{{"auths": {{"reg.local": {{"auth": "{auth}", "identitytoken": "tok-123456"}}}}}}"#);
        let scrubber = Scrubber::new(&Secret::new("payload-key"), Some(&Secret::new(file)));
        let line = format!("a payload-key b {auth} c hunter2-password d tok-123456 e robot:hunter2-password");
        assert_eq!(scrubber.scrub(&line), "a *** b *** c *** d *** e ***");
        assert_eq!(scrubber.scrub("STEP 1/2: FROM scratch"), "STEP 1/2: FROM scratch");
    }

    #[test]
    fn names_no_image_of_another_owner() {
        let allowed = crate::base_images::Allowlist::parse(None).unwrap();
        let scrubber = ImageScrubber::new("127.0.0.1:5000/11/fns/fn:abc", &allowed);
        assert_eq!(
            scrubber.scrub("Successfully tagged 127.0.0.1:5000/111/fns/fn:def, \"127.0.0.1:5000/11/fns/fn:abc\""),
            format!("Successfully tagged {ANOTHER_IMAGE}, \"127.0.0.1:5000/11/fns/fn:abc\"")
        );
        assert_eq!(scrubber.scrub("name=localhost/other/x:1."), format!("name={ANOTHER_IMAGE}."));
        for kept in [
            "STEP 1/3: FROM localhost/ofc/watchdog:latest",
            "COPY src/main.rs /home/app/main.rs",
            "fetching https://example.com/x.tar",
            "Storing signatures",
        ] {
            assert_eq!(scrubber.scrub(kept), kept);
        }
    }

    #[test]
    fn keeps_every_line_of_an_ordinary_log_and_both_ends_of_a_huge_one() {
        let mut log = Log::default();
        for i in 0..5000 {
            log.push(format!("line {i}"));
        }
        let lines = log.into_lines();
        assert_eq!(lines.len(), 5000);
        assert_eq!(lines[4999], "line 4999");

        let mut log = Log::default();
        let big = "x".repeat(1 << 20);
        for _ in 0..20 {
            log.push(big.clone());
        }
        log.push("the end".into());
        let lines = log.into_lines();
        assert!(lines.iter().any(|l| l.contains("log lines left out")));
        assert_eq!(lines.last().unwrap(), "the end");
        assert!(lines.iter().map(String::len).sum::<usize>() <= MAX_LOG_BYTES + 100);
    }
}
