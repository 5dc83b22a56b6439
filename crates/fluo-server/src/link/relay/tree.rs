//! The relays of one source form a tree (issue 22; docs/cluster.md, "Cascade"): an element
//! feeds at most `--relay-fanout` (F) relays of a source, the source itself included. A new
//! relay is fed by the source while it feeds fewer than F; else by the `relayIn` of one of
//! the source's relays with room (the shallowest, then the oldest: a pipeline that has
//! lived long is likelier to live on, so fewer relays are cut and fed again; review R42
//! finding 14): its `relayOut` is made in that relay's pipeline, fed by that `relayIn`.
//! A relay whose upstream goes while it still feeds something is fed again the same way
//! ([`Service::refeed`]): a new pair of ends, the new `relayIn` connected to everything the
//! old one fed (its sinks and its child relays' `relayOut`), then the old ends released.

use super::janitor::{gone, Ends, Probe, Table, FAILED_FOR, MUTE_CHECKS};
use super::service::Service;
use super::{Key, Step};
use crate::link::route::pipeline_of;
use crate::lock;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How deep `k` is in its source's tree (1: fed by the source), `None` when a relay above
/// it is no longer in the table (its upstream went: it is about to be fed again) or is
/// being fed again (`refeeding`).
pub(super) fn depth(t: &Table, k: &Key) -> Option<usize> {
    let mut d = 1;
    let mut up = t.ends(k)?.parent;
    while let Some(p) = up {
        d += 1;
        if d > t.len() + 1 {
            return None;
        }
        let e = t.ends(&p)?;
        if e.refeeding {
            return None;
        }
        up = e.parent;
    }
    Some(d)
}

/// `k` and every relay fed through it.
pub(super) fn subtree(t: &Table, k: &Key) -> HashSet<Key> {
    let under = |mut at: Key| {
        for _ in 0..=t.len() {
            if at == *k {
                return true;
            }
            match t.ends(&at).and_then(|e| e.parent) {
                Some(p) => at = p,
                None => return false,
            }
        }
        false
    };
    let mut all: HashSet<Key> = t
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|x| under(x.clone()))
        .collect();
    all.insert(k.clone());
    all
}

/// How many relays of `source` `parent` feeds (`None`: the source itself), those being made
/// included, `avoid` and those whose `relayIn` did not answer [`MUTE_CHECKS`] checks in a
/// row (their node unreachable) left out.
fn load(t: &Table, source: &str, parent: &Option<Key>, avoid: &HashSet<Key>) -> usize {
    let fed = t
        .iter()
        .filter(|(k, e)| {
            k.source == source && !avoid.contains(*k) && e.parent == *parent && e.mute < MUTE_CHECKS
        })
        .count();
    fed + t
        .places
        .get(&(source.to_string(), parent.clone()))
        .copied()
        .unwrap_or(0)
}

/// Whether relay ends `e` may feed a new relay: not idle, its upstream not silent, not
/// being fed again, its `relayIn` answering at the last check.
fn feeds(e: &Ends) -> bool {
    e.idle == 0 && e.dark == 0 && !e.refeeding && e.mute == 0
}

/// What is to feed a new relay of `source`: `None` for the source itself (it feeds fewer
/// than `fanout`, or no relay has room), else the relay whose `relayIn` feeds it: of the
/// relays of `source` not in `avoid`, neither idle, silent, mute nor being fed again, not
/// failed lately ([`Table::failed_lately`]), and whole up to the source (nothing above
/// being fed again),
/// feeding fewer than `fanout`, the shallowest, then the oldest (the first the table took,
/// [`Ends::born`]), then the least loaded, then by pipeline.
pub(super) fn pick(t: &Table, source: &str, fanout: usize, avoid: &HashSet<Key>) -> Option<Key> {
    pick_at(t, source, fanout, avoid, Instant::now())
}

/// [`pick`] at `now` (what failed lately is counted back from it).
pub(super) fn pick_at(
    t: &Table,
    source: &str,
    fanout: usize,
    avoid: &HashSet<Key>,
    now: Instant,
) -> Option<Key> {
    if load(t, source, &None, avoid) < fanout {
        return None;
    }
    let best = t
        .iter()
        .filter(|(k, e)| {
            k.source == source && !avoid.contains(*k) && feeds(e) && !t.failed_lately(k, now)
        })
        .filter_map(|(k, e)| {
            let d = depth(t, k)?;
            let l = load(t, source, &Some(k.clone()), avoid);
            (l < fanout).then(|| ((d, e.born, l, k.pipeline.clone()), k.clone()))
        })
        .min_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, k)| k);
    if best.is_none() {
        tracing::info!(
            source,
            fanout,
            "relay: no relay has room; fed from the source"
        );
    }
    best
}

/// A relay being made, counted in the fan-out of what feeds it until dropped (by then it is
/// in the table, or was given up): two relays made at once do not both take a last place.
pub(super) struct Place {
    table: Arc<Mutex<Table>>,
    source: String,
    /// What feeds it: a relay, or `None` for the source itself.
    pub parent: Option<Key>,
    /// The element that feeds its `relayOut` (the source, or the parent's `relayIn`).
    pub from: String,
}

impl Place {
    /// A place under what [`pick`] chooses for a relay of `source`.
    pub(super) fn choose(
        table: &Arc<Mutex<Table>>,
        source: &str,
        fanout: usize,
        avoid: &HashSet<Key>,
    ) -> Place {
        let mut t = lock(table);
        let parent = pick(&t, source, fanout, avoid);
        let from = match &parent {
            Some(p) => t.ends(p).map(|e| e.inp).unwrap_or_default(),
            None => source.to_string(),
        };
        *t.places
            .entry((source.to_string(), parent.clone()))
            .or_default() += 1;
        Place {
            table: table.clone(),
            source: source.to_string(),
            parent,
            from,
        }
    }

    /// A place under the source itself, whatever its fan-out.
    fn source(table: &Arc<Mutex<Table>>, source: &str) -> Place {
        *lock(table)
            .places
            .entry((source.to_string(), None))
            .or_default() += 1;
        Place {
            table: table.clone(),
            source: source.to_string(),
            parent: None,
            from: source.to_string(),
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut t = lock(&self.table);
        let k = (std::mem::take(&mut self.source), self.parent.take());
        if let Some(n) = t.places.get_mut(&k) {
            *n -= 1;
            if *n == 0 {
                t.places.remove(&k);
            }
        }
    }
}

impl Service {
    /// Makes relay `k` fed where the tree has room ([`Place::choose`], `avoid` left out);
    /// fed by the source itself when that fails. An error other than the feeder being gone
    /// (40101) or the job stopping leaves that relay no feeder for a while
    /// ([`Table::feeder_failed`]: e.g. its node and `k`'s cannot reach each other's media
    /// ports). `client`: a client's connect waits (logged). Its ends, and its place, to keep
    /// until it is in the table.
    pub(super) async fn grow(
        &self,
        k: &Key,
        avoid: &HashSet<Key>,
        step: &Step,
        client: bool,
    ) -> Result<(Ends, Place), Value> {
        let place = Place::choose(&self.table, &k.source, self.fanout, avoid);
        let r = self.build(&k.source, &place.from, &k.pipeline, step).await;
        let from = pipeline_of(&place.from).unwrap_or_default();
        let Some(parent) = place.parent.clone() else {
            let e = r?;
            tracing::info!(source = %k.source, pipeline = %k.pipeline, from, from_relay = false, "relay: made");
            return Ok((e, place));
        };
        let err = match r {
            Ok(mut e) => {
                e.parent = Some(parent);
                tracing::info!(source = %k.source, pipeline = %k.pipeline, from, from_relay = true, "relay: made");
                return Ok((e, place));
            }
            Err(err) => err,
        };
        // The feeder is barred for a while unless it is gone (40101) or the job itself
        // stopped (its deadline, the node stopping: not the feeder's fault). Either way the
        // source is tried next: its build takes no step past the job's deadline
        // (`Step::at`), so a client waits no longer than without the fallback (review
        // R42-final, B1: a client's connect failed on any other error, e.g. a feeder on a
        // node that just died, picked before its first check).
        let lost = gone(&Err(err.clone()));
        let message = err["message"].as_str().unwrap_or_default();
        let job_stopped =
            message.contains("stopped at its deadline") || message.contains("this node stops");
        if !lost && !job_stopped {
            tracing::warn!(source = %k.source, pipeline = %k.pipeline, from = %place.from, client, "relay: not made from another relay; that one feeds none for {} s: {}", FAILED_FOR.as_secs(), err["message"]);
            lock(&self.table).feeder_failed(parent, Instant::now());
        }
        tracing::info!(source = %k.source, pipeline = %k.pipeline, from = %place.from, "relay: not made from another relay; made from the source: {}", err["message"]);
        drop(place);
        let place = Place::source(&self.table, &k.source);
        let e = self.build(&k.source, &k.source, &k.pipeline, step).await?;
        Ok((e, place))
    }

    /// Relay `k` (its ends `old`, its `relayIn` feeding `fed`, as `getSinkConnections`
    /// listed it) lost its upstream (`probe`): fed again from the source or another relay,
    /// the new `relayIn` connected to all the old one fed, then the old ends released. A
    /// relay whose source is gone is released; one that cannot be fed now is left for the
    /// next checks. Runs under `k`'s lock (the janitor's check).
    pub(super) async fn refeed(&self, k: &Key, old: &Ends, fed: &Value, probe: Probe) {
        let t0 = Instant::now();
        let src = self.invoke(&k.source, "getName", json!({})).await;
        if gone(&src) {
            tracing::info!(source = %k.source, pipeline = %k.pipeline, ?probe, "relay: released (its source is gone)");
            lock(&self.table).remove(k);
            self.release(old).await;
            return;
        }
        if let Err(e) = src {
            tracing::info!(source = %k.source, pipeline = %k.pipeline, "relay: not fed again (the source does not answer): {}", e["message"]);
            lock(&self.table).refeed_gave_up(k, &old.inp);
            return;
        }
        // Not fed from below itself, nor from anything under its old parent (cut as well,
        // or being fed again).
        let avoid = {
            let t = lock(&self.table);
            let mut avoid = subtree(&t, k);
            if let Some(p) = &old.parent {
                avoid.extend(subtree(&t, p));
            }
            avoid
        };
        let step = Step::new(&self.stopping);
        let (made, place) = match self.grow(k, &avoid, &step, false).await {
            Ok(m) => m,
            Err(e) => {
                tracing::info!(source = %k.source, pipeline = %k.pipeline, "relay: not fed again: {}", e["message"]);
                lock(&self.table).refeed_gave_up(k, &old.inp);
                return;
            }
        };
        self.move_sinks(&made.inp, fed, false).await;
        // What the old relayIn still feeds: a connect that failed, or a child relay made
        // from it while this ran (chosen before it was marked): moved once more.
        if let Ok(left) = self.invoke(&old.inp, "getSinkConnections", json!({})).await {
            self.move_sinks(&made.inp, &left, true).await;
        }
        let recorded = lock(&self.table).replace(k, &old.inp, made.clone());
        drop(place);
        if !recorded {
            self.release(&made).await;
            return;
        }
        self.release(old).await;
        let from = made
            .parent
            .as_ref()
            .map_or("the source", |p| p.pipeline.as_str());
        tracing::info!(source = %k.source, pipeline = %k.pipeline, ?probe, from, ms = t0.elapsed().as_millis() as u64, "relay: fed again");
    }
}

impl Service {
    /// Connects `to` to each connection of `fed` (as `getSinkConnections` listed them): each
    /// connect replaces the old `relayIn` as its sink's source of that media type. A sink
    /// not fed again is logged (at warn on the `last` try).
    async fn move_sinks(&self, to: &str, fed: &Value, last: bool) {
        for s in fed.as_array().into_iter().flatten() {
            if let Err(e) = self.invoke(to, "connect", reconnect(s)).await {
                if last {
                    tracing::warn!(sink = %s["sink"], "relay: a sink not fed again: {}", e["message"]);
                } else {
                    tracing::info!(sink = %s["sink"], "relay: a sink not fed again (tried once more): {}", e["message"]);
                }
            }
        }
    }
}

/// The parameters of a `connect` that makes the connection `s` (an item of
/// `getSinkConnections`) again from another source.
pub(super) fn reconnect(s: &Value) -> Value {
    let mut args = json!({"sink": s["sink"]});
    if let Some(t) = s.get("type").filter(|t| t.is_string()) {
        args["mediaType"] = t.clone();
    }
    for (from, to) in [
        ("sourceDescription", "sourceMediaDescription"),
        ("sinkDescription", "sinkMediaDescription"),
    ] {
        if let Some(d) = s
            .get(from)
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
        {
            args[to] = Value::from(d);
        }
    }
    args
}
