//! audit-event: signed events in, a Slack summary out (to a recording double standing in for Slack).

use std::time::Duration;

use audit_event::Config;
use shared::event::AuditEvent;
use shared::server::ServerConfig;
use shared::signature::sign_sha256;
use testkit::{common_config, RecordingGateway, Reply, ServedFunction};

#[tokio::test]
async fn accepts_a_signed_event_and_forwards_a_summary_to_slack_without_waiting() {
    let slack = RecordingGateway::start().await;
    slack.reply("POST", "/hooks/T000", vec![Reply::status(200).delay(Duration::from_secs(2))]);
    let config = Config {
        common: common_config(&slack, "p"),
        slack_url: Some(format!("{}hooks/T000", slack.url()).parse().unwrap()),
        server: ServerConfig::for_tests(1 << 20),
    };
    let served = ServedFunction::start(audit_event::app(config)).await;
    let mut event = AuditEvent::new("git-tar", "deployed hello");
    event.owner = Some("octo".into());
    event.repo = Some("fns".into());
    event.sha = Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246".into());
    let body = serde_json::to_vec(&event).unwrap();
    let started = std::time::Instant::now();
    let response = reqwest::Client::new()
        .post(served.url())
        .header("X-Cloud-Signature", sign_sha256(b"p", &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert!(started.elapsed() < Duration::from_secs(1), "the caller does not wait for Slack's slow answer");
    let posted = slack.wait_for_requests("/hooks/T000", 1, Duration::from_secs(5)).await;
    let text: serde_json::Value = posted[0].json();
    assert_eq!(text["text"], "[git-tar] deployed hello (octo/fns@6113728)");
}

#[tokio::test]
async fn refuses_unsigned_and_malformed_events() {
    let gateway = RecordingGateway::start().await;
    let config =
        Config { common: common_config(&gateway, "p"), slack_url: None, server: ServerConfig::for_tests(1 << 20) };
    let served = ServedFunction::start(audit_event::app(config)).await;
    let http = reqwest::Client::new();
    assert_eq!(http.post(served.url()).body("{}").send().await.unwrap().status(), 401);
    assert_eq!(
        http.post(served.url())
            .header("X-Cloud-Signature", sign_sha256(b"p", b"{}"))
            .body("{}")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
}
