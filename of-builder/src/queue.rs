//! Fair shares of the build slots between owners: one owner's backlog never holds another owner's first build back
//! by more than one build's time.
//!
//! Each owner's builds wait in a queue of their own. When a slot frees, it goes to the waiting owner served least
//! recently among those running fewer than `max_concurrent_builds_per_owner` builds; an owner waiting for the first
//! time (or back after being idle) counts as never served, and between equals the longest-waiting build goes first.
//! So another owner's first build waits for one build to end, unless other owners' first builds came before it.
//! The per-owner cap binds only while another owner waits: when every waiting owner is
//! at its cap (or one owner is alone), a free slot still goes to the least recently served of them, so one busy
//! owner on an idle builder uses every slot. An owner may have at most `max_queued_builds_per_owner` builds waiting;
//! the next is refused. A build is known here by a ticket its caller chose, under which its place is reported.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// How many builds run, per owner and in all, and how many may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `max_concurrent_builds`: builds running at once, in all.
    pub slots: usize,
    /// `max_concurrent_builds_per_owner`: builds of one owner running at once while another owner waits.
    pub per_owner_running: usize,
    /// `max_queued_builds_per_owner`: builds of one owner waiting for a slot; the next is refused.
    pub per_owner_queued: usize,
}

pub use shared::build::QueuePlace as Place;

/// The owner already has `max_queued_builds_per_owner` builds waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} builds of this owner wait for the builder already (max_queued_builds_per_owner); push again later")]
pub struct QueueFull(pub usize);

/// The build slots and the owners' queues.
#[derive(Debug)]
pub struct BuildQueue {
    limits: Limits,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    running: usize,
    owners: HashMap<String, Owner>,
    /// Counts slot grants; an owner's `last_served` is this count at its last grant.
    grants: u64,
    next_id: u64,
    /// Tickets callers named, for `place`.
    tickets: HashMap<String, (String, u64)>,
}

#[derive(Debug, Default)]
struct Owner {
    running: usize,
    waiting: VecDeque<Waiter>,
    last_served: Option<u64>,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    ticket: Option<String>,
    grant: oneshot::Sender<Slot>,
}

/// A held build slot; dropping it hands the slot on.
#[derive(Debug)]
pub struct Slot {
    queue: Arc<BuildQueue>,
    owner: String,
    ticket: Option<String>,
}

/// A build waiting for its slot; dropping it (the caller went away) leaves the queue.
#[derive(Debug)]
pub struct Waiting {
    queue: Arc<BuildQueue>,
    owner: String,
    id: u64,
    /// Builds that were to take a slot before this one when it was queued; `None` when it got one at once.
    pub ahead_when_queued: Option<usize>,
    grant: Option<oneshot::Receiver<Slot>>,
}

impl BuildQueue {
    pub fn new(limits: Limits) -> Arc<Self> {
        let limits = Limits {
            slots: limits.slots.max(1),
            per_owner_running: limits.per_owner_running.max(1),
            per_owner_queued: limits.per_owner_queued,
        };
        Arc::new(Self { limits, inner: Mutex::new(Inner::default()) })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves counts that are still whole: every change is one statement.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a build of `owner`, named `ticket` for `place` when given (a ticket already in use is not named
    /// again). Refused when the owner has `per_owner_queued` builds waiting already.
    pub fn enqueue(self: &Arc<Self>, owner: &str, ticket: Option<&str>) -> Result<Waiting, QueueFull> {
        let (receiver, id, ahead_when_queued, granted) = {
            let mut inner = self.lock();
            let id = inner.next_id;
            inner.next_id += 1;
            let ticket = ticket.filter(|t| !inner.tickets.contains_key(*t)).map(str::to_owned);
            if let Some(ticket) = &ticket {
                inner.tickets.insert(ticket.clone(), (owner.to_owned(), id));
            }
            let (grant, receiver) = oneshot::channel();
            inner.owners.entry(owner.to_owned()).or_default().waiting.push_back(Waiter { id, ticket, grant });
            let granted = self.dispatch(&mut inner);
            let entry = inner.owners.get_mut(owner);
            let ahead = entry.as_ref().and_then(|o| o.waiting.iter().position(|w| w.id == id));
            // A build that gets a slot at once never waits, so the limit on waiting builds does not refuse it.
            if ahead.is_some() && entry.as_ref().is_some_and(|o| o.waiting.len() > self.limits.per_owner_queued) {
                let refused = entry.and_then(|o| o.waiting.pop_back());
                if let Some(ticket) = refused.and_then(|w| w.ticket) {
                    inner.tickets.remove(&ticket);
                }
                forget_idle(&mut inner, owner);
                drop(inner);
                hand_out(granted);
                return Err(QueueFull(self.limits.per_owner_queued));
            }
            (receiver, id, ahead.map(|index| ahead_of(&inner, owner, index)), granted)
        };
        hand_out(granted);
        Ok(Waiting { queue: Arc::clone(self), owner: owner.to_owned(), id, ahead_when_queued, grant: Some(receiver) })
    }

    /// Where the build named `ticket` is; `None` when no waiting or running build has that ticket.
    pub fn place(&self, ticket: &str) -> Option<Place> {
        let inner = self.lock();
        let (owner, id) = inner.tickets.get(ticket)?;
        let Some(index) = inner.owners.get(owner)?.waiting.iter().position(|w| w.id == *id) else {
            return Some(Place::Building);
        };
        Some(Place::Queued { ahead: ahead_of(&inner, owner, index) })
    }

    /// Builds running and waiting, in all.
    pub fn load(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.running, inner.owners.values().map(|o| o.waiting.len()).sum())
    }

    /// Grants free slots to waiting builds, least recently served owner first; the grants are sent once the lock is
    /// released (a grant whose receiver is gone drops its slot, which dispatches again).
    fn dispatch(self: &Arc<Self>, inner: &mut Inner) -> Vec<(oneshot::Sender<Slot>, Slot)> {
        let mut granted = Vec::new();
        while inner.running < self.limits.slots {
            let waiting = inner.owners.iter().filter(|(_, o)| !o.waiting.is_empty());
            let under_cap = waiting.clone().filter(|(_, o)| o.running < self.limits.per_owner_running);
            // Least recently served first; between owners never served (or equally), the one waiting longest.
            let pick = |owners: &mut dyn Iterator<Item = (&String, &Owner)>| {
                owners
                    .min_by_key(|(_, o)| (o.last_served, o.waiting.front().map(|w| w.id)))
                    .map(|(name, _)| name.clone())
            };
            let Some(name) = pick(&mut under_cap.clone()).or_else(|| pick(&mut waiting.clone())) else { break };
            inner.grants += 1;
            let served = inner.grants;
            let owner = inner.owners.get_mut(&name).expect("picked from the map");
            let waiter = owner.waiting.pop_front().expect("picked with a waiting build");
            owner.running += 1;
            owner.last_served = Some(served);
            inner.running += 1;
            let slot = Slot { queue: Arc::clone(self), owner: name, ticket: waiter.ticket };
            granted.push((waiter.grant, slot));
        }
        granted
    }

    fn release(self: &Arc<Self>, owner: &str, ticket: Option<&str>) {
        let granted = {
            let mut inner = self.lock();
            inner.running -= 1;
            if let Some(ticket) = ticket {
                inner.tickets.remove(ticket);
            }
            if let Some(entry) = inner.owners.get_mut(owner) {
                entry.running -= 1;
            }
            forget_idle(&mut inner, owner);
            self.dispatch(&mut inner)
        };
        hand_out(granted);
    }

    fn leave(self: &Arc<Self>, owner: &str, id: u64) {
        let mut inner = self.lock();
        let Some(entry) = inner.owners.get_mut(owner) else { return };
        let Some(index) = entry.waiting.iter().position(|w| w.id == id) else { return };
        if let Some(ticket) = entry.waiting.remove(index).and_then(|w| w.ticket) {
            inner.tickets.remove(&ticket);
        }
        forget_idle(&mut inner, owner);
    }
}

/// An owner with nothing running or waiting is forgotten, so the map holds only active owners. Forgetting its last
/// grant favours it next time, which is fair: it waited for nothing meanwhile.
fn forget_idle(inner: &mut Inner, owner: &str) {
    if inner.owners.get(owner).is_some_and(|o| o.running == 0 && o.waiting.is_empty()) {
        inner.owners.remove(owner);
    }
}

fn hand_out(granted: Vec<(oneshot::Sender<Slot>, Slot)>) {
    for (sender, slot) in granted {
        // A receiver gone (its request dropped) drops the slot here, which hands it on.
        let _ = sender.send(slot);
    }
}

/// Builds that take a slot before the `index`-th waiting build of `owner`, if slots go round the owners in the
/// order they were last served, then by their oldest waiting build (the per-owner cap aside): each other owner's builds up to the same depth, one more
/// where that owner comes first in the round.
fn ahead_of(inner: &Inner, owner: &str, index: usize) -> usize {
    // The order `dispatch` serves owners in.
    let rank = |o: &Owner| (o.last_served, o.waiting.front().map(|w| w.id));
    let own = inner.owners.get(owner).map(rank);
    let others = inner.owners.iter().filter(|(name, o)| name.as_str() != owner && !o.waiting.is_empty());
    let before = |o: &Owner| own.is_some_and(|own| rank(o) < own);
    index + others.map(|(_, o)| o.waiting.len().min(index + usize::from(before(o)))).sum::<usize>()
}

impl Waiting {
    /// Waits for the slot; `None` only if the queue lost the build, which it does not (a waiter leaves the queue
    /// by its grant or by its own drop).
    pub async fn slot(mut self) -> Option<Slot> {
        // Not taken out: dropped while waiting, this still leaves the queue.
        self.grant.as_mut()?.await.ok()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.grant.is_some() {
            self.queue.leave(&self.owner, self.id);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.queue.release(&self.owner, self.ticket.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(slots: usize, per_owner_running: usize, per_owner_queued: usize) -> Arc<BuildQueue> {
        BuildQueue::new(Limits { slots, per_owner_running, per_owner_queued })
    }

    /// The slot if `waiting` holds one now (its grant sent), else the waiter back.
    fn granted(mut waiting: Waiting) -> Result<Slot, Waiting> {
        match waiting.grant.as_mut().map(oneshot::Receiver::try_recv) {
            Some(Ok(slot)) => Ok(slot),
            _ => Err(waiting),
        }
    }

    #[test]
    fn another_owner_s_first_build_takes_the_next_free_slot_past_a_backlog() {
        let queue = queue(2, 1, 10);
        let mut a: Vec<Waiting> = (0..10).map(|_| queue.enqueue("a", None).unwrap()).collect();
        let running: Vec<Slot> = a.drain(..2).map(|w| granted(w).unwrap()).collect();
        let mut a: Vec<Waiting> = a.into_iter().map(|w| granted(w).unwrap_err()).collect();
        let b = queue.enqueue("b", Some("ticket-b-1")).unwrap();
        assert_eq!(b.ahead_when_queued, Some(0), "b has not been served: it comes first in the next round");
        assert_eq!(queue.place("ticket-b-1"), Some(Place::Queued { ahead: 0 }));
        let b = granted(b).unwrap_err();
        let mut running = running.into_iter();
        drop(running.next());
        let b_slot = granted(b).expect("b's build takes the first slot freed");
        assert_eq!(queue.place("ticket-b-1"), Some(Place::Building));
        let first = granted(a.remove(0)).expect_err("a is at its cap while b builds");
        a.insert(0, first);
        drop(b_slot);
        assert_eq!(queue.place("ticket-b-1"), None, "a finished build's ticket is forgotten");
        assert_eq!(queue.load(), (2, 7), "a alone again: both slots are a's");
    }

    #[test]
    fn an_owner_alone_uses_every_slot() {
        let queue = queue(3, 1, 10);
        let slots: Vec<Slot> = (0..3).map(|_| granted(queue.enqueue("a", None).unwrap()).unwrap()).collect();
        assert_eq!(queue.load(), (3, 0));
        drop(slots);
        assert_eq!(queue.load(), (0, 0));
    }

    #[test]
    fn an_owner_s_waiting_builds_are_capped_and_the_next_refused_with_the_reason() {
        let queue = queue(1, 1, 2);
        let _running = granted(queue.enqueue("a", None).unwrap()).unwrap();
        let _waiting = [queue.enqueue("a", None).unwrap(), queue.enqueue("a", None).unwrap()];
        let refused = queue.enqueue("a", None).unwrap_err();
        assert!(refused.to_string().contains("max_queued_builds_per_owner"), "{refused}");
        assert!(queue.enqueue("b", None).is_ok(), "another owner's queue is its own");
    }

    #[test]
    fn no_waiting_allowed_still_builds_what_finds_a_free_slot() {
        let queue = queue(1, 1, 0);
        let running = granted(queue.enqueue("a", None).unwrap()).expect("a free slot is taken at once");
        assert!(queue.enqueue("a", Some("ticket-refused")).is_err(), "no build may wait");
        assert_eq!(queue.place("ticket-refused"), None, "a refused build leaves no ticket");
        drop(running);
        assert_eq!(queue.load(), (0, 0));
    }

    #[test]
    fn the_place_counts_the_builds_ahead_round_by_round() {
        let queue = queue(1, 1, 10);
        let _running = granted(queue.enqueue("a", None).unwrap()).unwrap();
        let _a: Vec<Waiting> = (0..4).map(|i| queue.enqueue("a", Some(&format!("ticket-a-{i}"))).unwrap()).collect();
        let b: Vec<Waiting> = (0..3).map(|i| queue.enqueue("b", Some(&format!("ticket-b-{i}"))).unwrap()).collect();
        // b was never served, so the rounds go b, a, b, a, b, a, a.
        assert_eq!(queue.place("ticket-b-0"), Some(Place::Queued { ahead: 0 }));
        assert_eq!(queue.place("ticket-a-0"), Some(Place::Queued { ahead: 1 }));
        assert_eq!(queue.place("ticket-b-2"), Some(Place::Queued { ahead: 4 }));
        assert_eq!(queue.place("ticket-a-3"), Some(Place::Queued { ahead: 6 }));
        drop(b);
        assert_eq!(queue.place("ticket-b-0"), None, "a request gone leaves the queue");
        assert_eq!(queue.place("ticket-a-3"), Some(Place::Queued { ahead: 3 }));
        assert_eq!(queue.load(), (1, 4));
    }

    #[test]
    fn a_waiter_gone_after_its_grant_hands_the_slot_on() {
        let queue = queue(1, 1, 10);
        let running = granted(queue.enqueue("a", None).unwrap()).unwrap();
        let gone = queue.enqueue("b", None).unwrap();
        let next = queue.enqueue("c", None).unwrap();
        drop(running);
        drop(gone);
        assert!(granted(next).is_ok(), "b's slot, granted but never taken, went to c");
    }
}
