//! The `X-Callback-Url` gh-push puts on git-tar's async call, so a build the queue gives up on still ends with an
//! `error` status on its commit instead of a `pending` one for ever.
//!
//! The queue POSTs the function's final answer there unsigned (the OpenFaaS queue-worker adds no signature), so the
//! URL itself carries the commit and an HMAC-SHA256 of it with the `payload-secret`: github-status writes a status
//! only for a commit that gh-push named. The URL is
//! `<gateway>function/github-status/failed?owner=O&repo=R&sha=S&installation=I&delivery=D&sig=<hex>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// github-status's route for a pipeline's final answer.
pub const FAILED_PATH: &str = "failed";

/// The commit a pipeline callback is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildRef<'a> {
    pub owner: &'a str,
    pub repo: &'a str,
    pub sha: &'a str,
    pub installation_id: u64,
    pub delivery: &'a str,
}

/// Characters that need no escaping in a query and that GitHub allows in owner and repository names, SHAs and
/// delivery ids: anything else is not a name gh-push would build.
fn is_plain(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl BuildRef<'_> {
    /// The MAC over the fields, each ended by a newline so no two different refs read the same.
    fn mac(&self, secret: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        let mut id = itoa_buffer(self.installation_id);
        for part in
            [self.owner.as_bytes(), self.repo.as_bytes(), self.sha.as_bytes(), id.text(), self.delivery.as_bytes()]
        {
            mac.update(part);
            mac.update(b"\n");
        }
        mac
    }

    /// Appends the callback URL under `gateway_url` (ending in `/`) to `out`, allocating nothing itself; `false`
    /// (and nothing appended) when a field is not a plain name.
    pub fn write_url(&self, out: &mut Vec<u8>, gateway_url: &str, secret: &[u8]) -> bool {
        if ![self.owner, self.repo, self.sha, self.delivery].into_iter().all(is_plain) {
            return false;
        }
        let mac = self.mac(secret).finalize().into_bytes();
        out.extend_from_slice(gateway_url.as_bytes());
        out.extend_from_slice(b"function/github-status/failed?owner=");
        out.extend_from_slice(self.owner.as_bytes());
        out.extend_from_slice(b"&repo=");
        out.extend_from_slice(self.repo.as_bytes());
        out.extend_from_slice(b"&sha=");
        out.extend_from_slice(self.sha.as_bytes());
        out.extend_from_slice(b"&installation=");
        out.extend_from_slice(itoa_buffer(self.installation_id).text());
        out.extend_from_slice(b"&delivery=");
        out.extend_from_slice(self.delivery.as_bytes());
        out.extend_from_slice(b"&sig=");
        for byte in mac {
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 15)]);
        }
        true
    }

    /// Whether `sig` (hex) is this ref's MAC, compared in constant time.
    pub fn verify(&self, sig: &str, secret: &[u8]) -> bool {
        hex::decode(sig).is_ok_and(|sig| self.mac(secret).verify_slice(&sig).is_ok())
    }
}

/// A number's decimal digits on the stack.
struct Digits {
    bytes: [u8; 20],
    start: usize,
}

impl Digits {
    fn text(&mut self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

fn itoa_buffer(mut n: u64) -> Digits {
    let mut digits = Digits { bytes: [0; 20], start: 20 };
    loop {
        digits.start -= 1;
        digits.bytes[digits.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return digits;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REF: BuildRef<'static> = BuildRef {
        owner: "octo",
        repo: "fns.v2",
        sha: "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        installation_id: 1_234_567,
        delivery: "41b09059-1c2d-11f0-8b8e-0c6c3f4f1a2b",
    };

    fn query_of(url: &str) -> Vec<(String, String)> {
        let query = url.split_once('?').unwrap().1;
        query.split('&').map(|p| p.split_once('=').unwrap()).map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn the_url_names_the_commit_and_its_signature_verifies() {
        let mut out = b"prefix ".to_vec();
        assert!(REF.write_url(&mut out, "http://gateway:8080/", b"secret"));
        let url = std::str::from_utf8(&out[7..]).unwrap();
        assert!(url.starts_with("http://gateway:8080/function/github-status/failed?owner=octo&repo=fns.v2&sha="));
        let query = query_of(url);
        assert_eq!(query[3], ("installation".into(), "1234567".into()));
        let sig = &query[5].1;
        assert!(REF.verify(sig, b"secret"));
        assert!(!REF.verify(sig, b"another secret"));
        assert!(!BuildRef { sha: "0000000000000000000000000000000000000000", ..REF }.verify(sig, b"secret"));
        assert!(!BuildRef { installation_id: 1, ..REF }.verify(sig, b"secret"));
        assert!(!REF.verify("not hex", b"secret"));
    }

    #[test]
    fn names_that_would_need_escaping_get_no_url() {
        let mut out = Vec::new();
        assert!(!BuildRef { owner: "a&b", ..REF }.write_url(&mut out, "http://g/", b"s"));
        assert!(!BuildRef { repo: "", ..REF }.write_url(&mut out, "http://g/", b"s"));
        assert!(out.is_empty());
        assert!(BuildRef { installation_id: 0, ..REF }.write_url(&mut out, "http://g/", b"s"));
    }
}
