//! What both test files share: a pipeline-log served on loopback over a given store, and a typical build record.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{Duration, Utc};
use pipeline_log::Config;
use shared::config::{CommonConfig, Secret};
use shared::log_store::{LogMeta, LogRecord, LogStore, Outcome, StepTiming};
use shared::server::ServerConfig;
use testkit::ServedFunction;

pub const PAYLOAD_SECRET: &str = "payload-secret-for-tests";
pub const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

pub fn secret() -> Secret {
    Secret::new(PAYLOAD_SECRET)
}

/// pipeline-log over `store`, with no periodic sweep (the tests sweep when they mean to).
pub async fn serve(store: Arc<LogStore>) -> ServedFunction {
    let config = Config {
        common: CommonConfig {
            gateway_url: "http://127.0.0.1:9/".parse().unwrap(),
            audit_url: None,
            payload_secret: secret(),
        },
        store,
        sweep_interval: None,
        server: ServerConfig::for_tests(32 << 20),
    };
    ServedFunction::start(pipeline_log::app(config)).await
}

/// A build's log as buildshiprun would keep it: `lines` lines of builder output and the usual metadata.
pub fn build_record(lines: usize) -> LogRecord {
    let started = Utc::now() - Duration::seconds(42);
    let mut text = String::new();
    for n in 1..=lines {
        writeln!(text, "STEP {n}/{lines}: RUN cargo build --release  # line {n} of the builder's output").unwrap();
    }
    LogRecord {
        meta: LogMeta {
            outcome: Outcome::Success,
            started,
            finished: started + Duration::seconds(41),
            steps: vec![
                StepTiming { step: "build".into(), duration_ms: 38_000 },
                StepTiming { step: "push".into(), duration_ms: 2_100 },
                StepTiming { step: "deploy".into(), duration_ms: 900 },
            ],
            image: Some(format!("registry:5000/octo/fns/hello:{SHA}")),
            digest: Some(format!("sha256:{}", "ab".repeat(32))),
        },
        text,
    }
}
