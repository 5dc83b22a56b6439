//! The janitor: once a second it asks every relay whether it still feeds something and is
//! still fed (each relay's check a task of its own: a relay whose check has not ended, its
//! owner slow, is skipped, and delays no other; a relay busy with a client's request is
//! looked at next time), releases those idle at two checks in a row or with `relayIn` gone,
//! has those whose upstream went fed again from elsewhere ([`super::tree`]), and releases
//! again, each on its own too, the ends whose release failed or whose create was answered
//! too late ([`Leftovers`]).

use super::service::Service;
use super::Key;
use crate::lock;
use fluo_api::ErrorCode;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the janitor asks each relay whether it still feeds something.
const EVERY: Duration = Duration::from_secs(1);

/// Checks in a row that find a relay feeding nothing before it is released.
const IDLE_CHECKS: u8 = 2;

/// How long an end whose release failed is tried again (an owner unreachable that long has
/// lost its pipelines: nothing is left to release).
const RETRY_FOR: Duration = Duration::from_secs(600);

/// How often the janitor logs what its passes took.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Checks in a row that find a relay's upstream end not answering (its node unreachable)
/// while `relayIn` answers and feeds something but receives no more packets, before the
/// relay is fed from elsewhere.
const DARK_CHECKS: u8 = 3;

/// Checks in a row that find a relay's `relayIn` not answering (its node unreachable) before
/// it no longer counts in its feeder's fan-out ([`super::tree`], review R42 finding 2); it
/// feeds no new relay from the first such check.
pub(super) const MUTE_CHECKS: u8 = 3;

/// How long a relay that a new relay could not be made from is no feeder.
pub(super) const FAILED_FOR: Duration = Duration::from_secs(30);

/// A relay's two ends, what feeds it, and how many checks in a row found it idle or its
/// upstream end silent.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Ends {
    pub out: String,
    pub inp: String,
    pub idle: u8,
    /// The relay whose `relayIn` feeds `out` (`None`: the source itself; [`super::tree`]).
    pub parent: Option<Key>,
    pub dark: u8,
    /// Being fed again ([`Verdict::Refeed`] until its new ends are recorded, or the refeed
    /// gave up): no feeder, nor is anything under it ([`super::tree`], review R42 finding 1).
    pub refeeding: bool,
    /// Checks in a row whose answers told nothing ([`Probe::Unknown`]: `relayIn`'s node
    /// unreachable).
    pub mute: u8,
    /// When the table took it, in the order of [`Table::add`] (kept when fed again): the
    /// older a relay, the likelier its pipeline lives on ([`super::tree::pick`]).
    pub born: u64,
    /// The packets `relayIn` had received at the last check that found `relayOut` not
    /// answering (none since a check that found it answering).
    pub rx: Option<u64>,
}

impl Ends {
    pub(super) fn new(out: String, inp: String, parent: Option<Key>) -> Ends {
        Ends {
            out,
            inp,
            idle: 0,
            parent,
            dark: 0,
            refeeding: false,
            mute: 0,
            born: 0,
            rx: None,
        }
    }
}

/// What the janitor found on a relay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Probe {
    /// `relayIn` feeds a sink (or a child relay) and `relayOut` is fed.
    Feeding,
    /// `relayIn` feeds nothing.
    Idle,
    /// `relayIn` (or its pipeline) is gone (40101), or it feeds nothing and `relayOut` is
    /// gone.
    Gone,
    /// `relayIn` feeds something but `relayOut` is gone (40101) or fed by nothing: its
    /// upstream went (a parent relay's pipeline released, the source released).
    Cut,
    /// `relayIn` feeds something but `relayOut` does not answer (its node unreachable now),
    /// and `relayIn` received no packet since the last check ([`Table::arrived`]).
    Dark,
    /// `relayIn` feeds something and its packets arrive, but `relayOut` does not answer:
    /// only the entry's link to the upstream's node is cut, the media still flows (review
    /// R42-tree, finding 3).
    Flowing,
    /// No answer that tells (`relayIn`'s node unreachable now): nothing decided.
    Unknown,
}

/// The RTP packets an endpoint received, from its `getStats` (the sum of its inbound
/// entries' `packetsReceived`; 0 before any).
pub(super) fn received(stats: &Value) -> u64 {
    let entries = stats.as_object().into_iter().flat_map(|m| m.values());
    entries
        .filter_map(|e| e.get("packetsReceived").and_then(Value::as_u64))
        .sum()
}

/// Whether `r` says its object is gone (40101); any other error (a node unreachable now, a
/// request that timed out) tells nothing about it.
pub(super) fn gone(r: &Result<Value, Value>) -> bool {
    r.as_ref()
        .err()
        .is_some_and(|e| e["code"] == ErrorCode::MediaObjectNotFound.code())
}

impl Probe {
    /// From the answers of `relayIn.getSinkConnections` and `relayOut.getSourceConnections`.
    pub(super) fn of(sinks: &Result<Value, Value>, sources: &Result<Value, Value>) -> Probe {
        let some = |v: &Value| v.as_array().is_some_and(|a| !a.is_empty());
        if gone(sinks) {
            return Probe::Gone;
        }
        match (sinks, sources) {
            (Ok(a), Ok(b)) if some(a) && some(b) => Probe::Feeding,
            (Ok(a), Ok(_)) if some(a) => Probe::Cut,
            (Ok(a), _) if some(a) && gone(sources) => Probe::Cut,
            (Ok(a), Err(_)) if some(a) => Probe::Dark,
            (_, _) if gone(sources) => Probe::Gone,
            (Ok(_), Ok(_)) => Probe::Idle,
            _ => Probe::Unknown,
        }
    }
}

/// The janitor's decision on a relay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Verdict {
    Keep,
    Release,
    /// Fed again from elsewhere ([`super::tree`]), kept in the table meanwhile.
    Refeed,
}

/// The relays this entry made.
#[derive(Debug, Default)]
pub(super) struct Table {
    relays: HashMap<Key, Ends>,
    /// Emptied for good ([`Table::take_all`]: the entry stops).
    closed: bool,
    /// Relays being made, per what will feed them (a source, and its relay or `None` for
    /// the source itself): counted in that feeder's fan-out ([`super::tree::Place`]).
    pub(super) places: HashMap<(String, Option<Key>), usize>,
    /// Relays a new relay could not be made from (an error other than 40101), and when:
    /// no feeder for [`FAILED_FOR`] ([`super::tree`], review R42 finding 4).
    failed: HashMap<Key, Instant>,
    /// Relays added so far (the next one's `born`).
    added: u64,
}

impl Table {
    pub(super) fn ends(&self, k: &Key) -> Option<Ends> {
        self.relays.get(k).cloned()
    }

    /// Records relay `k`, unless the table was emptied for good (`false`: the caller
    /// releases it).
    #[must_use]
    pub(super) fn add(&mut self, k: Key, e: Ends) -> bool {
        if self.closed {
            return false;
        }
        let born = self.added;
        self.added += 1;
        self.relays.insert(k, Ends { born, ..e });
        true
    }

    /// Records `e` as relay `k`'s ends in place of those whose `relayIn` is `inp` (fed
    /// again); `false` when `k` has other ends now, or none (the caller releases `e`).
    #[must_use]
    pub(super) fn replace(&mut self, k: &Key, inp: &str, e: Ends) -> bool {
        match self.relays.get_mut(k) {
            Some(old) if old.inp == inp => {
                *old = Ends {
                    born: old.born,
                    ..e
                };
                true
            }
            _ => false,
        }
    }

    /// A new relay could not be made from relay `k` at `at` (an error other than 40101).
    pub(super) fn feeder_failed(&mut self, k: Key, at: Instant) {
        self.failed
            .retain(|_, t| at.saturating_duration_since(*t) < FAILED_FOR);
        self.failed.insert(k, at);
    }

    /// Whether a new relay could not be made from relay `k` in the [`FAILED_FOR`] before
    /// `now` (a time after the failure: the clock is not read, so a test needs no past).
    pub(super) fn failed_lately(&self, k: &Key, now: Instant) -> bool {
        self.failed
            .get(k)
            .is_some_and(|t| now.saturating_duration_since(*t) < FAILED_FOR)
    }

    /// Every relay with its ends.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Key, &Ends)> {
        self.relays.iter()
    }

    /// Relay `k` (its `relayIn` `inp`) was not fed again: a feeder again, if it still has
    /// those ends.
    pub(super) fn refeed_gave_up(&mut self, k: &Key, inp: &str) {
        if let Some(e) = self.relays.get_mut(k).filter(|e| e.inp == inp) {
            e.refeeding = false;
        }
    }

    pub(super) fn remove(&mut self, k: &Key) -> Option<Ends> {
        self.relays.remove(k)
    }

    pub(super) fn len(&self) -> usize {
        self.relays.len()
    }

    pub(super) fn keys(&self) -> Vec<Key> {
        self.relays.keys().cloned().collect()
    }

    /// Every relay, forgotten; the table takes none after this.
    pub(super) fn take_all(&mut self) -> Vec<Ends> {
        self.closed = true;
        self.relays.drain().map(|(_, e)| e).collect()
    }

    /// `relayIn` of relay `k` has received `rx` packets (`None`: not known) at a check that
    /// found its `relayOut` not answering: whether it received some since the last such
    /// check whose statistics were read (its media still arrives). Statistics that could not
    /// be read tell nothing, and keep the count to compare the next ones with.
    pub(super) fn arrived(&mut self, k: &Key, rx: Option<u64>) -> bool {
        let (Some(e), Some(now)) = (self.relays.get_mut(k), rx) else {
            return false;
        };
        e.rx.replace(now).is_some_and(|before| now > before)
    }

    /// [`Table::judge`] for a relay whose relayOut did not answer while relayIn still lists
    /// it (`Probe::Dark`), given relayIn's packets received (`None`: its statistics could not
    /// be read): `Flowing` while they grow, else `Dark`; the probe it counted as, and the
    /// verdict.
    pub(super) fn judge_dark(&mut self, k: &Key, rx: Option<u64>) -> (Probe, Verdict) {
        let probe = if self.arrived(k, rx) {
            Probe::Flowing
        } else {
            Probe::Dark
        };
        (probe, self.judge(k, probe))
    }

    /// Records what the janitor found on relay `k`; a relay to release is removed.
    pub(super) fn judge(&mut self, k: &Key, probe: Probe) -> Verdict {
        let Some(e) = self.relays.get_mut(k) else {
            return Verdict::Keep;
        };
        // An answer that tells nothing keeps the counts.
        if !matches!(probe, Probe::Idle | Probe::Unknown) {
            e.idle = 0;
        }
        if !matches!(probe, Probe::Dark | Probe::Unknown) {
            e.dark = 0;
        }
        e.mute = match probe {
            Probe::Unknown => e.mute.saturating_add(1),
            _ => 0,
        };
        if !matches!(probe, Probe::Dark | Probe::Flowing | Probe::Unknown) {
            e.rx = None;
        }
        let verdict = match probe {
            Probe::Feeding | Probe::Flowing | Probe::Unknown => Verdict::Keep,
            Probe::Idle => {
                e.idle += 1;
                if e.idle >= IDLE_CHECKS {
                    Verdict::Release
                } else {
                    Verdict::Keep
                }
            }
            Probe::Gone => Verdict::Release,
            Probe::Cut => Verdict::Refeed,
            Probe::Dark => {
                e.dark += 1;
                if e.dark >= DARK_CHECKS {
                    e.dark = 0;
                    Verdict::Refeed
                } else {
                    Verdict::Keep
                }
            }
        };
        match verdict {
            Verdict::Release => {
                self.relays.remove(k);
            }
            Verdict::Refeed => e.refeeding = true,
            Verdict::Keep => {}
        }
        verdict
    }
}

/// Ends to release again (finding 3 of review R40): one whose `release` failed (its owner
/// unreachable then), or an object whose `create` was answered after the relay's wait. Each
/// is tried at every pass for [`RETRY_FOR`] after it was first queued.
#[derive(Debug, Default)]
pub(super) struct Leftovers {
    ids: HashMap<String, Instant>,
}

impl Leftovers {
    /// Queues `id` (first queued `since`; a later queueing keeps the first time).
    pub(super) fn add(&mut self, id: String, since: Instant) {
        self.ids.entry(id).or_insert(since);
    }

    /// Every queued end, the queue emptied.
    pub(super) fn take(&mut self) -> Vec<(String, Instant)> {
        self.ids.drain().collect()
    }

    /// What the release of `id` (queued `since`) answered at `now`: queued again unless it
    /// is gone (released, or 40101) or was tried for [`RETRY_FOR`].
    pub(super) fn released(
        &mut self,
        id: String,
        since: Instant,
        r: &Result<Value, Value>,
        now: Instant,
    ) {
        if r.is_ok() || gone(r) {
            return;
        }
        if now.duration_since(since) >= RETRY_FOR {
            tracing::warn!(object = %id, "relay: an end could not be released for {} s; given up", RETRY_FOR.as_secs());
            return;
        }
        self.add(id, since);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }
}

/// What the janitor's checks took since it last said (logged every [`REPORT_EVERY`] while
/// there are relays).
#[derive(Default)]
struct Report {
    checks: u32,
    total: Duration,
    slowest: Duration,
    since: Option<Instant>,
}

impl Report {
    /// A check ended after `took`; `relays` are in the table.
    fn check(&mut self, relays: usize, took: Duration) {
        let since = *self.since.get_or_insert_with(Instant::now);
        self.checks += 1;
        self.total += took;
        self.slowest = self.slowest.max(took);
        if since.elapsed() >= REPORT_EVERY {
            if relays > 0 {
                let mean = self.total / self.checks;
                tracing::info!(
                    relays,
                    checks = self.checks,
                    mean_ms = mean.as_secs_f64() * 1000.0,
                    slowest_ms = self.slowest.as_secs_f64() * 1000.0,
                    "relay: janitor checks"
                );
            }
            *self = Report::default();
        }
    }
}

/// The relays whose check has not ended: not checked again until it has.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    keys: HashSet<Key>,
    /// The task checking each, by task id.
    tasks: HashMap<tokio::task::Id, Key>,
}

impl InFlight {
    /// Of `keys`, those to check now (none in flight).
    pub(super) fn due(&self, keys: Vec<Key>) -> Vec<Key> {
        keys.into_iter()
            .filter(|k| !self.keys.contains(k))
            .collect()
    }

    /// Task `id` checks `k` from now on.
    pub(super) fn started(&mut self, id: tokio::task::Id, k: Key) {
        self.keys.insert(k.clone());
        self.tasks.insert(id, k);
    }

    /// Task `id` ended (however it did): the relay it checked, if it checked one.
    pub(super) fn ended(&mut self, id: tokio::task::Id) -> Option<Key> {
        let k = self.tasks.remove(&id)?;
        self.keys.remove(&k);
        Some(k)
    }
}

/// The janitor of `svc`: every [`EVERY`], a check of each relay not in flight and a retry
/// of each leftover, each a task of its own, until `stop` changes (no task is started then;
/// those under way end first).
pub(super) async fn run(svc: Arc<Service>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut report, mut flight) = (Report::default(), InFlight::default());
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(r) = tasks.join_next_with_id() => {
                let (id, took) = match r {
                    Ok((id, took)) => (id, took),
                    Err(e) => (e.id(), None),
                };
                if flight.ended(id).is_some() {
                    let took = took.unwrap_or_default();
                    report.check(lock(&svc.table).len(), took);
                }
                continue;
            }
            _ = stop.changed() => break,
        }
        for k in flight.due(lock(&svc.table).keys()) {
            let svc = svc.clone();
            let check = tasks.spawn({
                let k = k.clone();
                async move {
                    let t0 = Instant::now();
                    svc.check(&k).await;
                    Some(t0.elapsed())
                }
            });
            flight.started(check.id(), k);
        }
        for (id, since) in lock(&svc.rpc.inbox.leftovers).take() {
            let svc = svc.clone();
            tasks.spawn(async move {
                let r = svc.release_one(&id).await;
                lock(&svc.rpc.inbox.leftovers).released(id, since, &r, Instant::now());
                None
            });
        }
    }
    while tasks.join_next().await.is_some() {}
}

impl Service {
    /// Relay `k`: asked, judged, released when its time came. Skipped when a client's
    /// request holds it (looked at next pass).
    async fn check(&self, k: &Key) {
        let k = k.clone();
        let l = self.key_lock(&k);
        let Ok(guard) = l.try_lock() else {
            return;
        };
        let ends = lock(&self.table).ends(&k);
        if let Some(e) = ends {
            let (sinks, sources) = tokio::join!(
                self.invoke(&e.inp, "getSinkConnections", json!({})),
                self.invoke(&e.out, "getSourceConnections", json!({}))
            );
            let probe = Probe::of(&sinks, &sources);
            let (probe, verdict) = if probe == Probe::Dark {
                let stats = self.invoke(&e.inp, "getStats", json!({})).await;
                let rx = stats.ok().map(|v| received(&v));
                lock(&self.table).judge_dark(&k, rx)
            } else {
                (probe, lock(&self.table).judge(&k, probe))
            };
            match verdict {
                Verdict::Release => {
                    tracing::info!(source = %k.source, pipeline = %k.pipeline, ?probe, "relay: released");
                    self.release(&e).await;
                }
                Verdict::Refeed => {
                    let fed = sinks.unwrap_or_default();
                    self.refeed(&k, &e, &fed, probe).await;
                }
                Verdict::Keep => {}
            }
        }
        drop(guard);
        self.unlock(&k, l);
    }
}
