//! The leader's evaluation broker, as Nomad's `EvalBroker`: ready evaluations ordered by job
//! priority then creation index, at most one evaluation per job out for scheduling at a time,
//! at-least-once delivery (ack/nack, nack timeout, redelivery up to a limit) and delayed
//! evaluations held until their `wait_until`.
//!
//! It is pure bookkeeping: the caller passes the time (unix nanoseconds) and writes whatever the
//! broker decides (cancelled and failed evaluations) through Raft. It does not persist anything;
//! a new leader rebuilds it from the replicated pending evaluations.

use model::Evaluation;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};

type JobKey = (String, String);

fn job_key(e: &Evaluation) -> JobKey {
    (e.namespace.clone(), e.job_id.clone())
}

/// Broker limits; Nomad's defaults are a 60 s nack timeout and 3 deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerConfig {
    /// How long a worker may hold an evaluation without acking it before it is redelivered.
    pub nack_timeout_ns: i64,
    /// Deliveries after which a nacked evaluation is failed instead of redelivered.
    pub delivery_limit: u32,
    /// How long a nacked evaluation waits before it is ready again (Nomad: 1 s), so a worker
    /// that fails fast does not spin on it.
    pub nack_delay_ns: i64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            nack_timeout_ns: 60_000_000_000,
            delivery_limit: 3,
            nack_delay_ns: 1_000_000_000,
        }
    }
}

/// A delivery's receipt: acks and nacks must present it, so a worker whose delivery timed out
/// and was redelivered cannot ack someone else's.
pub type Token = u64;

/// Why an ack or nack was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    #[error("evaluation {0} is not outstanding")]
    NotOutstanding(String),
    #[error("evaluation {0} was redelivered; this token is stale")]
    StaleToken(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ReadyKey {
    priority: i32,
    create_index: Reverse<u64>,
    id: Reverse<String>,
}

impl Ord for ReadyKey {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.priority, &self.create_index, &self.id).cmp(&(
            other.priority,
            &other.create_index,
            &other.id,
        ))
    }
}

impl PartialOrd for ReadyKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug)]
struct Unacked {
    token: Token,
    deadline: i64,
}

/// What became of an evaluation when its delivery ended without success.
#[derive(Debug, Clone, PartialEq)]
pub enum NackOutcome {
    /// It will be delivered again.
    Requeued,
    /// It reached the delivery limit: the caller marks it failed.
    Failed(Box<Evaluation>),
}

/// The broker's state. See the module documentation.
#[derive(Debug, Default)]
pub struct Broker {
    config: BrokerConfig,
    /// Every evaluation the broker holds, in any stage.
    evals: BTreeMap<String, Evaluation>,
    ready: BinaryHeap<ReadyKey>,
    /// The one evaluation of each job that is ready or out for scheduling.
    active: BTreeMap<JobKey, String>,
    /// Evaluations of a job waiting behind its active one, by creation index.
    waiting: BTreeMap<JobKey, BTreeMap<(u64, String), ()>>,
    unacked: BTreeMap<String, Unacked>,
    /// Evaluations not yet due, by due time.
    delayed: BTreeMap<(i64, String), ()>,
    deliveries: BTreeMap<String, u32>,
    next_token: Token,
}

impl Broker {
    /// An empty broker.
    pub fn new(config: BrokerConfig) -> Self {
        Broker { config, ..Broker::default() }
    }

    /// Whether the broker holds this evaluation in any stage.
    pub fn contains(&self, id: &str) -> bool {
        self.evals.contains_key(id)
    }

    /// Number of evaluations held in any stage.
    pub fn len(&self) -> usize {
        self.evals.len()
    }

    /// True when the broker holds nothing.
    pub fn is_empty(&self) -> bool {
        self.evals.is_empty()
    }

    /// Takes in a pending evaluation. One already held is ignored, which makes re-enqueueing
    /// what the replicated state says is pending harmless.
    pub fn enqueue(&mut self, eval: Evaluation, now: i64) {
        if self.evals.contains_key(&eval.id) {
            return;
        }
        let id = eval.id.clone();
        let due = eval.wait_until;
        self.evals.insert(id.clone(), eval);
        if due > now {
            self.delayed.insert((due, id), ());
        } else {
            self.admit(&id);
        }
    }

    /// Makes a held evaluation ready, or parks it behind its job's active one.
    fn admit(&mut self, id: &str) {
        let eval = &self.evals[id];
        let key = job_key(eval);
        match self.active.get(&key) {
            Some(active) if active != id => {
                self.waiting.entry(key).or_default().insert((eval.create_index, id.to_owned()), ());
            }
            _ => {
                self.active.insert(key, id.to_owned());
                self.push_ready(id);
            }
        }
    }

    fn push_ready(&mut self, id: &str) {
        let eval = &self.evals[id];
        self.ready.push(ReadyKey {
            priority: eval.priority,
            create_index: Reverse(eval.create_index),
            id: Reverse(id.to_owned()),
        });
    }

    /// Hands out the highest-priority ready evaluation, if any, with the token to ack it by.
    pub fn dequeue(&mut self, now: i64) -> Option<(Evaluation, Token)> {
        let key = self.ready.pop()?;
        let id = key.id.0;
        self.next_token += 1;
        let token = self.next_token;
        self.unacked
            .insert(id.clone(), Unacked { token, deadline: now + self.config.nack_timeout_ns });
        *self.deliveries.entry(id.clone()).or_default() += 1;
        Some((self.evals[&id].clone(), token))
    }

    fn take_outstanding(&mut self, id: &str, token: Token) -> Result<(), BrokerError> {
        match self.unacked.get(id) {
            None => Err(BrokerError::NotOutstanding(id.to_owned())),
            Some(u) if u.token != token => Err(BrokerError::StaleToken(id.to_owned())),
            Some(_) => {
                self.unacked.remove(id);
                Ok(())
            }
        }
    }

    /// The evaluation was processed. Returns the job's waiting evaluations it makes redundant:
    /// the newest waiting one becomes ready and the older ones are returned for the caller to
    /// cancel, as Nomad 1.4.3 sheds load when evaluations of one job pile up.
    pub fn ack(&mut self, id: &str, token: Token) -> Result<Vec<Evaluation>, BrokerError> {
        self.take_outstanding(id, token)?;
        Ok(self.finish(id))
    }

    /// Forgets a finished evaluation and releases its job's slot.
    fn finish(&mut self, id: &str) -> Vec<Evaluation> {
        self.deliveries.remove(id);
        let Some(eval) = self.evals.remove(id) else { return Vec::new() };
        let key = job_key(&eval);
        if self.active.get(&key).map(String::as_str) == Some(id) {
            self.active.remove(&key);
        }
        let Some(mut waiting) = self.waiting.remove(&key) else { return Vec::new() };
        let Some(((_, newest), ())) = waiting.pop_last() else { return Vec::new() };
        let cancelled =
            waiting.into_keys().filter_map(|(_, old)| self.evals.remove(&old)).collect();
        self.active.insert(key, newest.clone());
        self.push_ready(&newest);
        cancelled
    }

    /// The worker could not process the evaluation. It is redelivered after the nack delay, or
    /// failed once it has been delivered `delivery_limit` times.
    pub fn nack(&mut self, id: &str, token: Token, now: i64) -> Result<NackOutcome, BrokerError> {
        self.take_outstanding(id, token)?;
        Ok(self.requeue(id, now))
    }

    fn requeue(&mut self, id: &str, now: i64) -> NackOutcome {
        if self.deliveries.get(id).copied().unwrap_or(0) >= self.config.delivery_limit {
            let eval = self.evals.get(id).cloned().unwrap_or_default();
            // The job's next waiting evaluation takes over; nothing is cancelled because a
            // failed evaluation did not schedule the job.
            let superseded = self.finish(id);
            for e in superseded {
                self.evals.insert(e.id.clone(), e.clone());
                self.waiting.entry(job_key(&e)).or_default().insert((e.create_index, e.id), ());
            }
            return NackOutcome::Failed(Box::new(eval));
        }
        // The job's slot stays with this evaluation while it waits out the delay.
        self.delayed.insert((now + self.config.nack_delay_ns, id.to_owned()), ());
        NackOutcome::Requeued
    }

    /// Advances time: redelivers deliveries past their nack timeout and releases delayed
    /// evaluations that are due. Returns evaluations that reached the delivery limit.
    pub fn tick(&mut self, now: i64) -> Vec<Evaluation> {
        let expired: Vec<String> = self
            .unacked
            .iter()
            .filter(|(_, u)| u.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let mut failed = Vec::new();
        for id in expired {
            self.unacked.remove(&id);
            if let NackOutcome::Failed(e) = self.requeue(&id, now) {
                failed.push(*e);
            }
        }
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (_, id) = entry.remove_entry().0;
            if self.active.get(&job_key(&self.evals[&id])) == Some(&id) {
                self.push_ready(&id);
            } else {
                self.admit(&id);
            }
        }
        failed
    }

    /// When the broker next has something to do without being told: a delayed evaluation falls
    /// due or a delivery times out.
    pub fn next_deadline(&self) -> Option<i64> {
        let delayed = self.delayed.keys().next().map(|(t, _)| *t);
        let unacked = self.unacked.values().map(|u| u.deadline).min();
        delayed.into_iter().chain(unacked).min()
    }

    /// Deliveries after which an evaluation is failed.
    pub fn delivery_limit(&self) -> u32 {
        self.config.delivery_limit
    }

    /// Number of evaluations ready to be handed out.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(id: &str, job: &str, priority: i32, create_index: u64) -> Evaluation {
        Evaluation {
            id: id.into(),
            namespace: "default".into(),
            job_id: job.into(),
            priority,
            create_index,
            ..Evaluation::default()
        }
    }

    fn ids(b: &mut Broker, now: i64) -> Vec<String> {
        std::iter::from_fn(|| b.dequeue(now)).map(|(e, _)| e.id).collect()
    }

    #[test]
    fn priority_then_creation_order_one_per_job() {
        let mut b = Broker::new(BrokerConfig::default());
        b.enqueue(eval("low", "a", 10, 1), 0);
        b.enqueue(eval("high", "b", 90, 5), 0);
        b.enqueue(eval("mid-late", "c", 50, 4), 0);
        b.enqueue(eval("mid-early", "d", 50, 3), 0);
        b.enqueue(eval("a-second", "a", 99, 6), 0);
        assert_eq!(ids(&mut b, 0), ["high", "mid-early", "mid-late", "low"]);
    }

    #[test]
    fn ack_releases_the_newest_waiting_eval_and_cancels_older_ones() {
        let mut b = Broker::new(BrokerConfig::default());
        b.enqueue(eval("e1", "a", 50, 1), 0);
        let (e1, t1) = b.dequeue(0).unwrap();
        b.enqueue(eval("e2", "a", 50, 2), 0);
        b.enqueue(eval("e3", "a", 50, 3), 0);
        b.enqueue(eval("e4", "a", 50, 4), 0);
        b.enqueue(eval("e1", "a", 50, 1), 0);
        assert!(b.dequeue(0).is_none(), "one evaluation per job at a time");
        assert_eq!(b.ack("e1", t1 + 1), Err(BrokerError::StaleToken("e1".into())));
        let cancelled = b.ack(&e1.id, t1).unwrap();
        assert_eq!(cancelled.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["e2", "e3"]);
        assert_eq!(ids(&mut b, 0), ["e4"]);
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn nack_timeout_redelivers_until_the_delivery_limit_then_fails() {
        let config = BrokerConfig { nack_timeout_ns: 10, delivery_limit: 2, nack_delay_ns: 5 };
        let mut b = Broker::new(config);
        b.enqueue(eval("e1", "a", 50, 1), 0);
        b.enqueue(eval("e2", "a", 50, 2), 0);
        let (_, t) = b.dequeue(0).unwrap();
        assert_eq!(b.next_deadline(), Some(10));
        assert!(b.tick(9).is_empty());
        assert!(b.dequeue(9).is_none());
        // Timed out at 10, delayed until 15.
        assert!(b.tick(10).is_empty());
        assert!(b.dequeue(12).is_none());
        assert!(b.tick(15).is_empty());
        let (again, t2) = b.dequeue(15).unwrap();
        assert_eq!(again.id, "e1");
        assert_eq!(b.ack("e1", t), Err(BrokerError::StaleToken("e1".into())));
        let outcome = b.nack("e1", t2, 16).unwrap();
        assert!(matches!(outcome, NackOutcome::Failed(e) if e.id == "e1"));
        // The job's waiting evaluation takes over.
        assert_eq!(ids(&mut b, 16), ["e2"]);
    }

    #[test]
    fn delayed_evaluations_wait_for_their_time() {
        let mut b = Broker::new(BrokerConfig::default());
        let mut later = eval("later", "a", 50, 1);
        later.wait_until = 100;
        b.enqueue(later, 0);
        assert!(b.dequeue(50).is_none());
        assert_eq!(b.next_deadline(), Some(100));
        b.tick(100);
        assert_eq!(ids(&mut b, 100), ["later"]);
    }
}
