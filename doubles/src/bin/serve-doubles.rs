//! `serve-doubles`: the outside world for a real OpenFaaS (faasd) on one machine. The GitHub API double and the
//! git server listen on one address the functions' containers reach (faasd's bridge, inside the test's network
//! namespace), and a DNS stand-in answers every query NXDOMAIN at once, as the public resolver faasd names in the
//! containers' resolv.conf would for single-label service names, so lookups never wait for a resolver timeout.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use doubles::git_server::GitServer;
use doubles::github_double::GitHubDouble;

/// Where each double listens and what it knows.
#[derive(Debug, Parser)]
#[command(name = "serve-doubles")]
struct Settings {
    /// The address every double listens on.
    #[arg(long)]
    address: IpAddr,
    /// The GitHub API double's port.
    #[arg(long)]
    github_port: u16,
    /// The git server's port.
    #[arg(long)]
    git_port: u16,
    /// The folder of served repositories (`<owner>/<name>.git`).
    #[arg(long)]
    repos: PathBuf,
    /// The GitHub App's id.
    #[arg(long, default_value = "1")]
    app_id: String,
    /// The App's public key (PEM), to check the App's JWTs.
    #[arg(long)]
    app_public_key: PathBuf,
    /// The installation of the App that covers every account.
    #[arg(long, default_value_t = 1)]
    installation_id: u64,
    /// An OAuth App the double signs users in for, as `CLIENT_ID:SECRET_FILE`.
    #[arg(long)]
    oauth_app: Option<String>,
    /// Where the DNS stand-in listens (UDP), e.g. `8.8.8.8:53` on the namespace's loopback.
    #[arg(long)]
    dns: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::server::init_tracing();
    let settings = Settings::parse();
    let public_key = std::fs::read_to_string(&settings.app_public_key)
        .with_context(|| format!("--app-public-key {} cannot be read", settings.app_public_key.display()))?;
    let github = GitHubDouble::new(&settings.app_id, &public_key);
    github.add_installation(settings.installation_id, "*");
    if let Some(app) = &settings.oauth_app {
        let (client_id, secret_file) = app.split_once(':').context("--oauth-app is not CLIENT_ID:SECRET_FILE")?;
        let secret = std::fs::read_to_string(secret_file).context("--oauth-app's secret file cannot be read")?;
        github.add_oauth_app(client_id, secret.trim());
    }
    let bind = |port: u16| {
        let address = SocketAddr::new(settings.address, port);
        async move { tokio::net::TcpListener::bind(address).await.with_context(|| format!("{address} cannot be bound")) }
    };
    let _github = github.serve(bind(settings.github_port).await?)?;
    let _git = GitServer::serve(bind(settings.git_port).await?, &settings.repos)?;
    tracing::info!(address = %settings.address, github = settings.github_port, git = settings.git_port, "serving");
    if let Some(dns) = settings.dns {
        let socket = tokio::net::UdpSocket::bind(dns).await.with_context(|| format!("--dns {dns} cannot be bound"))?;
        tokio::spawn(answer_nxdomain(socket));
    }
    shared::server::shutdown_signal().await;
    Ok(())
}

/// The largest DNS message over UDP without EDNS, and the most a query needs here.
const DNS_MESSAGE_BYTES: usize = 512;

/// Answers each query NXDOMAIN: its header (id, opcode, RD kept) and its question, no records.
async fn answer_nxdomain(socket: tokio::net::UdpSocket) {
    let mut buffer = [0u8; DNS_MESSAGE_BYTES];
    loop {
        let Ok((length, from)) = socket.recv_from(&mut buffer).await else { continue };
        if let Some(answer) = nxdomain(&buffer[..length]) {
            let _ = socket.send_to(&answer, from).await;
        }
    }
}

/// The NXDOMAIN answer to `query`, or `None` when it is not a query with one well-formed question.
fn nxdomain(query: &[u8]) -> Option<Vec<u8>> {
    const HEADER: usize = 12;
    if query.len() < HEADER || query[2] & 0x80 != 0 || query[4..6] != [0, 1] {
        return None;
    }
    // The question: labels up to the root's zero length (no compression in a question), then type and class.
    let mut at = HEADER;
    loop {
        let label = usize::from(*query.get(at)?);
        if label & 0xC0 != 0 {
            return None;
        }
        at += 1 + label;
        if label == 0 {
            break;
        }
    }
    let end = at + 4;
    let mut answer = query.get(..end)?.to_vec();
    // QR set, opcode and RD kept; RA set; RCODE 3 (NXDOMAIN); one question, no records.
    answer[2] = 0x80 | (query[2] & 0x79);
    answer[3] = 0x80 | 3;
    answer[6..12].fill(0);
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::nxdomain;

    #[test]
    fn a_query_is_answered_nxdomain_with_its_id_and_question() {
        // id 0xabcd, RD, one question `gateway` AAAA IN, and an EDNS record the answer drops.
        let mut query = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        query.extend_from_slice(b"\x07gateway\x00\x00\x1c\x00\x01");
        query.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        let answer = nxdomain(&query).unwrap();
        assert_eq!(&answer[..4], &[0xab, 0xcd, 0x81, 0x83]);
        assert_eq!(&answer[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&answer[12..], b"\x07gateway\x00\x00\x1c\x00\x01");
    }

    #[test]
    fn answers_and_malformed_queries_get_no_answer() {
        assert!(nxdomain(&[0; 5]).is_none());
        let mut answer = vec![0, 1, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0];
        answer.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
        assert!(nxdomain(&answer).is_none());
        let truncated = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, b'a'];
        assert!(nxdomain(&truncated).is_none());
    }
}
