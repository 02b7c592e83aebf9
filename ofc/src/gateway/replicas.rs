//! Supervision of user functions' replicas: a deployment starts a new replica in the background, which replaces the
//! old one only once it answers (an update has no gap), and the reason a function has none is kept for callers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use shared::openfaas::FunctionStatus;
use tokio::task::JoinHandle;

use crate::runtime::{FunctionRuntime, Replica};

/// A user function's replica, and why it has none.
#[derive(Default)]
struct ReplicaSlot {
    running: Option<Replica>,
    /// Bumped by every deployment, so a slow start that has been superseded does not replace a newer replica.
    generation: u64,
    /// Why the latest start failed.
    problem: Option<String>,
    /// Scaled to zero (`/system/scale-function/NAME`): no replica is wanted until a scale up or a deployment.
    scaled_to_zero: bool,
}

/// Every user function's replica.
pub(super) struct Replicas {
    /// Runs the replicas; `None` lists functions with 0 available replicas and never starts one.
    runtime: Option<Arc<FunctionRuntime>>,
    slots: Mutex<HashMap<String, ReplicaSlot>>,
    /// Replica starts under way, awaited when the gateway stops.
    starting: Mutex<Vec<JoinHandle<()>>>,
    /// Set once the gateway stops: a replica that comes up afterwards is stopped at once.
    stopping: AtomicBool,
}

impl Replicas {
    pub(super) fn new(runtime: Option<Arc<FunctionRuntime>>) -> Self {
        Self { runtime, slots: Mutex::default(), starting: Mutex::default(), stopping: AtomicBool::new(false) }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, ReplicaSlot>> {
        self.slots.lock().expect("replicas lock")
    }

    /// Replicas of `name` answering now (0 or 1).
    pub(super) fn available(&self, name: &str) -> u64 {
        u64::from(self.slots().get(name).is_some_and(|slot| slot.running.is_some()))
    }

    /// Replicas of `name` wanted: 0 once scaled to zero, else 1.
    pub(super) fn wanted(&self, name: &str) -> u64 {
        u64::from(!self.slots().get(name).is_some_and(|slot| slot.scaled_to_zero))
    }

    /// Scales `name` to zero: its replica is stopped and a start under way is dropped when it comes up, until
    /// [`Replicas::schedule_start`] (a scale up or a deployment) wants one again.
    pub(super) fn scale_to_zero(&self, name: &str) {
        let retired = {
            let mut slots = self.slots();
            let slot = slots.entry(name.to_owned()).or_default();
            slot.generation += 1;
            slot.problem = None;
            slot.scaled_to_zero = true;
            slot.running.take()
        };
        if let (Some(runtime), Some(mut replica)) = (self.runtime.clone(), retired) {
            tokio::spawn(async move { runtime.stop(&mut replica).await });
        }
    }

    /// The port of `name`'s replica, or why it has none.
    pub(super) fn port(&self, name: &str) -> Result<u16, String> {
        let slots = self.slots();
        let slot = slots.get(name);
        if let Some(replica) = slot.and_then(|s| s.running.as_ref()) {
            return Ok(replica.port);
        }
        Err(match (&self.runtime, slot.and_then(|s| s.problem.as_ref())) {
            (None, _) => "no container runtime is in use (`ofc up --runtime none`)".to_owned(),
            _ if slot.is_some_and(|s| s.scaled_to_zero) => {
                "it is scaled to zero (`/system/scale-function/NAME` with replicas 1 starts it)".to_owned()
            }
            (Some(_), Some(problem)) => format!("its replica could not start: {problem}"),
            (Some(_), None) => "its replica is starting".to_owned(),
        })
    }

    /// Whether `name`'s first replica is on its way: started, not yet answering, and not failed or scaled to zero.
    pub(super) fn starting(&self, name: &str) -> bool {
        self.runtime.is_some()
            && self.slots().get(name).is_some_and(|s| s.running.is_none() && s.problem.is_none() && !s.scaled_to_zero)
    }

    /// Starts a replica of `status` in the background; once it answers it replaces the function's current one.
    pub(super) fn schedule_start(self: &Arc<Self>, status: FunctionStatus) {
        let Some(runtime) = self.runtime.clone() else { return };
        let generation = {
            let mut slots = self.slots();
            let slot = slots.entry(status.name.clone()).or_default();
            slot.generation += 1;
            slot.problem = None;
            slot.scaled_to_zero = false;
            slot.generation
        };
        let replicas = self.clone();
        let task = tokio::spawn(async move {
            let started = runtime.start(&status).await;
            if let Some(mut retired) = replicas.settle_start(&status, generation, started) {
                runtime.stop(&mut retired).await;
            }
        });
        let mut starting = self.starting.lock().expect("starting lock");
        starting.retain(|t| !t.is_finished());
        starting.push(task);
    }

    /// Puts a started replica in its slot; the replica to stop (the one replaced, or this one when unwanted).
    fn settle_start(
        &self,
        status: &FunctionStatus,
        generation: u64,
        started: Result<Replica, crate::runtime::RuntimeError>,
    ) -> Option<Replica> {
        let mut slots = self.slots();
        let current = slots.get_mut(&status.name).filter(|slot| slot.generation == generation);
        match (started, current) {
            (Ok(replica), Some(slot)) if !self.stopping.load(Ordering::SeqCst) => {
                slot.problem = None;
                slot.running.replace(replica)
            }
            // Superseded, deleted or stopping: this replica is not wanted any more.
            (Ok(replica), _) => Some(replica),
            (Err(error), slot) => {
                tracing::error!(function = %status.name, image = %status.image, %error, "replica could not start");
                if let Some(slot) = slot {
                    slot.problem = Some(error.to_string());
                }
                None
            }
        }
    }

    /// Stops a deleted function's replica.
    pub(super) fn remove(&self, name: &str) {
        let Some(runtime) = self.runtime.clone() else { return };
        let removed = self.slots().remove(name);
        if let Some(mut replica) = removed.and_then(|slot| slot.running) {
            tokio::spawn(async move { runtime.stop(&mut replica).await });
        }
    }

    /// Stops every replica (and waits for starts under way), leaving no process behind.
    pub(super) async fn stop_all(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let starting = std::mem::take(&mut *self.starting.lock().expect("starting lock"));
        for task in starting {
            let _ = task.await;
        }
        let Some(runtime) = self.runtime.clone() else { return };
        let running: Vec<Replica> = self.slots().drain().filter_map(|(_, slot)| slot.running).collect();
        let stops = running.into_iter().map(|mut replica| {
            let runtime = runtime.clone();
            async move { runtime.stop(&mut replica).await }
        });
        futures_util::future::join_all(stops).await;
    }
}
