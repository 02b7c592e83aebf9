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
