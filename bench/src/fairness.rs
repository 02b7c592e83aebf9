//! `fairness`: how long builds wait for an of-builder slot when one owner has a backlog, with of-builder's queue
//! (per-owner queues, least recently served first) against one first-in-first-out line, as of-builder had before.
//! The queue is of-builder's own (`of_builder::queue`); each build holds its slot for a fixed time instead of
//! building, so the figure is the scheduling alone, in units of one build's time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use of_builder::queue::{BuildQueue, Limits};
use tokio::sync::Semaphore;

use crate::stats::Summary;

/// How long each build holds its slot.
const BUILD: Duration = Duration::from_millis(200);
const OWNERS: usize = 10;
/// The busy owner's backlog, queued at once before anyone else's.
const BACKLOG: usize = 10;
/// Builds of each other owner, one every `STAGGER` from the start.
const LIGHT_BUILDS: usize = 3;
const STAGGER: Duration = Duration::from_millis(150);

/// Whose build, and its wait for a slot.
struct Waited {
    busy_owner: bool,
    first_of_owner: bool,
    wait: Duration,
}

pub async fn run() -> anyhow::Result<()> {
    println!(
        "fairness: {OWNERS} owners, 2 slots, each build {} ms; owner 0 queues {BACKLOG} at once, the others {LIGHT_BUILDS} \
         each, one every {} ms",
        BUILD.as_millis(),
        STAGGER.as_millis()
    );
    for fair in [true, false] {
        let waits = simulate(fair).await;
        let pick =
            |keep: &dyn Fn(&Waited) -> bool| Summary::new(waits.iter().filter(|w| keep(w)).map(|w| w.wait).collect());
        let name = if fair { "per-owner queues" } else { "one FIFO line" };
        println!("  {name}: other owners' first build wait  {}", pick(&|w| !w.busy_owner && w.first_of_owner).line());
        println!("  {name}: other owners' every build wait  {}", pick(&|w| !w.busy_owner).line());
        println!("  {name}: busy owner's builds wait        {}", pick(&|w| w.busy_owner).line());
    }
    Ok(())
}

/// Runs the builds through of-builder's queue (`fair`) or one semaphore, and answers each build's wait.
async fn simulate(fair: bool) -> Vec<Waited> {
    let queue = BuildQueue::new(Limits { slots: 2, per_owner_running: 1, per_owner_queued: BACKLOG });
    let line = Arc::new(Semaphore::new(2));
    let start = Instant::now();
    let mut builds = tokio::task::JoinSet::new();
    for owner in 0..OWNERS {
        let count = if owner == 0 { BACKLOG } else { LIGHT_BUILDS };
        for n in 0..count {
            let at = if owner == 0 { Duration::ZERO } else { STAGGER * u32::try_from(owner + n * OWNERS).unwrap_or(0) };
            let (queue, line) = (Arc::clone(&queue), Arc::clone(&line));
            builds.spawn(async move {
                tokio::time::sleep_until((start + at).into()).await;
                let queued = Instant::now();
                let name = format!("owner-{owner}");
                let wait = if fair {
                    let waiting = queue.enqueue(&name, None).expect("within the per-owner limit");
                    let _slot = waiting.slot().await;
                    let wait = queued.elapsed();
                    tokio::time::sleep(BUILD).await;
                    wait
                } else {
                    let _permit = line.acquire().await.expect("never closed");
                    let wait = queued.elapsed();
                    tokio::time::sleep(BUILD).await;
                    wait
                };
                Waited { busy_owner: owner == 0, first_of_owner: n == 0, wait }
            });
        }
    }
    let mut waits = Vec::new();
    while let Some(done) = builds.join_next().await {
        if let Ok(waited) = done {
            waits.push(waited);
        }
    }
    waits
}
