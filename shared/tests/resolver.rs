//! The functions' name resolver against nameservers on loopback: one that never answers (faasd's containers without
//! internet) and one that answers A and never AAAA.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::resolver::{FunctionResolver, ResolveError};

/// A UDP socket that takes queries and never answers.
fn silent_nameserver() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = socket.local_addr().unwrap();
    (socket, address)
}

fn hosts_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[tokio::test]
async fn a_hosts_file_name_resolves_at_once_and_an_unknown_one_fails_within_the_bound() {
    let (_silent, nameserver) = silent_nameserver();
    let hosts = hosts_file("127.0.0.1 localhost\n127.0.0.3 gateway gateway.openfaas\n");
    let bound = Duration::from_millis(600);
    let resolver = FunctionResolver::with_nameservers(hosts.path(), &[nameserver], bound);

    let started = Instant::now();
    let found = resolver.lookup("gateway").await.unwrap();
    assert_eq!(found, [IpAddr::from([127, 0, 0, 3])]);
    assert_eq!(resolver.lookup("Gateway.OpenFaaS.").await.unwrap(), found);
    assert!(started.elapsed() < Duration::from_millis(50), "took {:?}", started.elapsed());

    let started = Instant::now();
    let error = resolver.lookup("unknown.example").await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(error, ResolveError::TimedOut { .. }), "{error:?}");
    assert!(took >= bound && took < bound + Duration::from_millis(500), "took {took:?}");
    let message = error.to_string();
    assert!(message.contains("unknown.example") && message.contains("no answer"), "{message}");
}

#[tokio::test]
async fn every_reqwest_client_with_it_reaches_a_hosts_name_without_waiting_on_dns() {
    let (_silent, nameserver) = silent_nameserver();
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = server.local_addr().unwrap().port();
    let app = axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" }));
    let serving = tokio::spawn(async move { axum::serve(server, app).await });
    let hosts = hosts_file("127.0.0.1 gateway\n");
    let resolver = FunctionResolver::with_nameservers(hosts.path(), &[nameserver], Duration::from_millis(500));
    let client = reqwest::Client::builder().dns_resolver(Arc::new(resolver)).build().unwrap();

    let started = Instant::now();
    let answer = client.get(format!("http://gateway:{port}/ping")).send().await.unwrap();
    assert_eq!(answer.text().await.unwrap(), "pong");
    assert!(started.elapsed() < Duration::from_millis(300), "took {:?}", started.elapsed());

    let error = client.get(format!("http://nowhere.example:{port}/ping")).send().await.unwrap_err();
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        chain = format!("{chain}: {cause}");
        source = cause.source();
    }
    assert!(chain.contains("nowhere.example") && chain.contains("no answer"), "{chain}");
    serving.abort();
}

/// A nameserver that answers A queries with 127.0.0.4 and never answers any other type (AAAA hangs).
fn a_only_nameserver(stop: Arc<AtomicBool>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let address = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 512];
        let started = Instant::now();
        while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(30) {
            let Ok((length, from)) = socket.recv_from(&mut buffer) else { continue };
            if let Some(answer) = answer_a(&buffer[..length], Ipv4Addr::new(127, 0, 0, 4)) {
                let _ = socket.send_to(&answer, from);
            }
        }
    });
    address
}

/// The answer to a one-question A query, or None for anything else.
fn answer_a(query: &[u8], ip: Ipv4Addr) -> Option<Vec<u8>> {
    if query.len() < 12 || query[4..6] != [0, 1] {
        return None;
    }
    // The question: labels up to the zero byte, then type and class.
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += usize::from(query[end]) + 1;
    }
    let question_end = end + 5;
    let qtype = query.get(end + 1..end + 3)?;
    if qtype != [0, 1] {
        return None;
    }
    let mut answer = Vec::with_capacity(question_end + 16);
    answer.extend_from_slice(&query[0..2]);
    answer.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    answer.extend_from_slice(&query[12..question_end]);
    answer.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    answer.extend_from_slice(&ip.octets());
    Some(answer)
}

#[tokio::test]
async fn a_dns_answer_with_an_a_record_does_not_wait_on_aaaa() {
    let stop = Arc::new(AtomicBool::new(false));
    let nameserver = a_only_nameserver(Arc::clone(&stop));
    let hosts = hosts_file("");
    let resolver = FunctionResolver::with_nameservers(hosts.path(), &[nameserver], Duration::from_secs(2));
    let started = Instant::now();
    let found = resolver.lookup("builder.example").await.unwrap();
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    assert_eq!(found, [IpAddr::from([127, 0, 0, 4])]);
    assert!(took < Duration::from_millis(500), "took {took:?}: waited on AAAA");
}

#[tokio::test]
async fn localhost_resolves_without_a_hosts_file_or_nameserver() {
    let resolver =
        FunctionResolver::with_nameservers(std::path::Path::new("/nonexistent/hosts"), &[], Duration::from_secs(1));
    assert!(resolver.lookup("localhost").await.unwrap().contains(&IpAddr::from([127, 0, 0, 1])));
    let error = resolver.lookup("gateway").await.unwrap_err();
    assert!(error.to_string().contains("no nameserver"), "{error}");
}
