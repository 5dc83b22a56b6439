//! Cascade as a tree (docs/cluster.md, "Cascade", "The tree"): with `--relay-fanout F` an
//! element feeds at most F relays of one source; further relays are fed from the `relayIn`
//! of an existing relay. Three nodes on a Redis of the test's own, one entry (node-a), a
//! publisher (str0m) on node-a and viewers on the others; the tree is read from the relay
//! ends' names and connections, the media from the viewers' decrypted frames. A relay whose
//! upstream goes is fed again; one that feeds only another relay stays while it does.
mod common;
#[path = "cluster_link/relays.rs"]
mod relays;
#[path = "cluster_link/support.rs"]
mod support;

use common::Client;
use fluo_testkit::udp_peer::Peer;
use relays::*;
use serde_json::json;
use std::time::{Duration, Instant};
use str0m::media::Direction;
use support::*;

const ABC: [&str; 3] = ["node-a", "node-b", "node-c"];

/// Through node-a: pipeline P on node-a with a publisher's WebRtcEndpoint, and a viewer's
/// WebRtcEndpoint in a pipeline on each node of `on`, their peers negotiated.
struct Stage {
    c: Client,
    p: String,
    e_pub: String,
    publisher: Peer,
    /// The viewers' pipelines, endpoints and peers, in the order of `on`.
    qs: Vec<String>,
    views: Vec<String>,
    viewers: Vec<Peer>,
}

async fn stage(port: u16, on: &[&str]) -> Stage {
    let mut c = Client::connect(port).await;
    let pin = |n: &str| json!({"fluoNode": n});
    let p = c.create("MediaPipeline", pin("node-a")).await.unwrap();
    let e_pub = c
        .create("WebRtcEndpoint", json!({"mediaPipeline": p}))
        .await
        .unwrap();
    let publisher = peer(&mut c, &e_pub, Direction::SendOnly).await;
    let (mut qs, mut views, mut viewers) = (vec![], vec![], vec![]);
    for n in on {
        let q = c.create("MediaPipeline", pin(n)).await.unwrap();
        let v = c
            .create("WebRtcEndpoint", json!({"mediaPipeline": q}))
            .await
            .unwrap();
        viewers.push(peer(&mut c, &v, Direction::RecvOnly).await);
        qs.push(q);
        views.push(v);
    }
    Stage {
        c,
        p,
        e_pub,
        publisher,
        qs,
        views,
        viewers,
    }
}

impl Stage {
    /// `publisher.connect(viewer i)`, answered.
    async fn connect(&mut self, i: usize) {
        let connect = json!({"object": self.e_pub, "operation": "connect",
            "operationParams": {"sink": self.views[i]}});
        self.c
            .request("invoke", connect)
            .await
            .unwrap_or_else(|e| panic!("connect of viewer {i}: {e}"));
    }

    /// The relay of the publisher in pipeline `q`: its `relayIn`, the `relayOut` it was
    /// negotiated with (in P or a viewer's pipeline), and that `relayOut`'s pipeline.
    async fn upstream(&mut self, q: &str) -> (String, String, String) {
        let name = format!("fluo-relay-in:{}", self.e_pub);
        let ins: Vec<_> = relay_ends(&mut self.c, q)
            .await
            .into_iter()
            .filter(|(_, n)| *n == name)
            .collect();
        assert_eq!(ins.len(), 1, "{q}: {ins:?}");
        let mut all = vec![self.p.clone()];
        all.extend(self.qs.iter().filter(|x| *x != q).cloned());
        let (out, pipeline) = feeder(&mut self.c, &ins[0].0, &all).await;
        let name = format!("fluo-relay-out:{}", self.e_pub);
        assert_eq!(self.c.value(&out, "getName").await, json!(name));
        (ins[0].0.clone(), out, pipeline)
    }

    /// Drives everyone until every viewer of `who` got `n` more frames (`within` at most).
    async fn frames(&mut self, who: &[usize], n: u64, within: Duration) {
        let before: Vec<u64> = self.viewers.iter().map(|v| v.frames_in).collect();
        let done = |_: &Peer, vs: &[Peer]| who.iter().all(|&i| vs[i].frames_in >= before[i] + n);
        drive_all(&mut self.publisher, &mut self.viewers, within, done).await;
        for &i in who {
            let got = self.viewers[i].frames_in - before[i];
            assert!(got >= n, "viewer {i} got {got} frames of {n} in {within:?}");
        }
    }

    /// Drives everyone until viewer `i` got `n` more frames (`within` at most), keeping the
    /// longest time it went without a frame.
    async fn resumed(&mut self, i: usize, n: u64, within: Duration, gap: &mut Gap) {
        let (t0, before) = (Instant::now(), self.viewers[i].frames_in);
        while self.viewers[i].frames_in < before + n && t0.elapsed() < within {
            self.watch(i, Duration::from_millis(10), gap).await;
        }
        let got = self.viewers[i].frames_in - before;
        assert!(got >= n, "viewer {i} got {got} frames of {n} in {within:?}");
    }

    /// Drives everyone until pipeline `q` holds a `relayIn` of the publisher other than
    /// `old` (`within` at most), then until viewer `i` got 30 more frames (5 s at most),
    /// keeping the longest time it went without a frame in `gap`; how long each took.
    async fn until_fed_again(
        &mut self,
        (q, old): (&str, &str),
        i: usize,
        within: Duration,
        gap: &mut Gap,
    ) -> (Duration, Duration) {
        let t0 = Instant::now();
        let name = format!("fluo-relay-in:{}", self.e_pub);
        loop {
            self.watch(i, Duration::from_millis(100), gap).await;
            let ins = relay_ends(&mut self.c, q).await;
            if ins.iter().any(|(id, n)| *n == name && id != old) {
                break;
            }
            assert!(t0.elapsed() < within, "{q}'s relay not fed again: {ins:?}");
        }
        let refed = t0.elapsed();
        self.resumed(i, 30, Duration::from_secs(5), gap).await;
        (refed, t0.elapsed())
    }

    /// Drives everyone for `d`, keeping the longest time viewer `i` went without a frame.
    async fn watch(&mut self, i: usize, d: Duration, gap: &mut Gap) {
        let t0 = Instant::now();
        while t0.elapsed() < d {
            let step = Duration::from_millis(10);
            drive_all(&mut self.publisher, &mut self.viewers, step, |_, _| false).await;
            gap.saw(self.viewers[i].frames_in);
        }
    }
}

/// The longest time a viewer went without a frame.
struct Gap {
    last: (Instant, u64),
    longest: Duration,
}

impl Gap {
    fn new(frames: u64) -> Gap {
        Gap {
            last: (Instant::now(), frames),
            longest: Duration::ZERO,
        }
    }

    fn saw(&mut self, frames: u64) {
        if frames > self.last.1 {
            self.longest = self.longest.max(self.last.0.elapsed());
            self.last = (Instant::now(), frames);
        }
    }
}

/// The entry's (node-a's) log lines saying a relay was fed again.
fn fed_again(n: &Nodes) -> String {
    let log = std::fs::read_to_string(n.dirs[0].path().join("fluo.log")).unwrap_or_default();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("relay: fed again"))
        .collect();
    lines.join(" / ")
}

#[tokio::test(flavor = "multi_thread")]
async fn with_fanout_1_node_c_is_fed_through_node_b_and_fed_again_when_b_goes() {
    let fanout = ["--relay-fanout", "1"];
    let Some(n) = nodes("relay tree: fan-out 1", &ABC, &fanout).await else {
        return;
    };
    let mut s = stage(n.ports[0], &["node-b", "node-c"]).await;
    s.connect(0).await;
    s.connect(1).await;
    let (p, qb, qc) = (s.p.clone(), s.qs[0].clone(), s.qs[1].clone());
    // P feeds one relay, B's; C's relayIn is fed by a relayOut in B's pipeline, itself fed
    // by B's relayIn (which feeds B's viewer too).
    assert_eq!(relay_ends(&mut s.c, &p).await.len(), 1, "relays from P");
    let (in_b, _, from_b) = s.upstream(&qb).await;
    assert_eq!(from_b, p, "B is not fed from the source's pipeline");
    let (in_c, out_c, from_c) = s.upstream(&qc).await;
    assert_eq!(from_c, qb, "C is not fed through B");
    assert_eq!(sources_of(&mut s.c, &out_c).await, [in_b.clone()].into());
    let fed = [s.views[0].clone(), out_c.clone()].into();
    assert_eq!(sinks_of(&mut s.c, &in_b).await, fed);
    // The publisher's media reaches both viewers, C's over two hops.
    let t0 = Instant::now();
    s.frames(&[0, 1], 30, Duration::from_secs(10)).await;
    println!(
        "30 frames at both viewers {:?} after the connects",
        t0.elapsed()
    );

    // B's application releases its pipeline (relayIn and the relayOut to C with it): C's
    // relay lost its upstream and is fed again, from the source (the one with room now).
    s.c.request("release", json!({"object": qb})).await.unwrap();
    s.qs.retain(|q| *q != qb);
    let mut gap = Gap::new(s.viewers[1].frames_in);
    let within = Duration::from_secs(8);
    let (refed, frames) = s.until_fed_again((&qc, &in_c), 1, within, &mut gap).await;
    println!(
        "C's new relayIn made {refed:?} after B's pipeline was released; 30 frames through it {frames:?} after the release; longest time without a frame {:?}; {}",
        gap.longest,
        fed_again(&n)
    );
    // Within a couple of seconds: the janitor's next check (a second at most), then the
    // new ends made and negotiated; room left for a loaded machine.
    assert!(
        gap.longest < Duration::from_secs(4),
        "C's viewer went {:?} without a frame",
        gap.longest
    );
    let (_, _, from) = s.upstream(&qc).await;
    assert_eq!(from, p, "C is fed again, from the source's pipeline");
    // The old relay to B goes (its relayIn gone): P feeds one relay again, C's.
    let t2 = Instant::now();
    while relay_ends(&mut s.c, &p).await.len() != 1 {
        assert!(t2.elapsed() < Duration::from_secs(4), "relays from P");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_fanout_2_the_source_feeds_two_relays_and_a_third_is_fed_from_one_of_them() {
    let fanout = ["--relay-fanout", "2"];
    let Some(n) = nodes("relay tree: fan-out 2", &ABC, &fanout).await else {
        return;
    };
    // Viewers on B and C, then a second pipeline on C.
    let mut s = stage(n.ports[0], &["node-b", "node-c", "node-c"]).await;
    for i in 0..3 {
        s.connect(i).await;
    }
    let p = s.p.clone();
    let (_, _, from_b) = s.upstream(&s.qs[0].clone()).await;
    let (_, _, from_c) = s.upstream(&s.qs[1].clone()).await;
    assert_eq!((&from_b, &from_c), (&p, &p), "B and C are fed from A");
    assert_eq!(relay_ends(&mut s.c, &p).await.len(), 2, "relays from P");
    let (_, out_d, from_d) = s.upstream(&s.qs[2].clone()).await;
    assert!(
        from_d == s.qs[0] || from_d == s.qs[1],
        "the third is fed from {from_d}, not from B's or C's relay"
    );
    // That relayOut is fed by the relayIn of its pipeline.
    let (in_parent, _, _) = s.upstream(&from_d).await;
    assert_eq!(sources_of(&mut s.c, &out_d).await, [in_parent].into());
    let t0 = Instant::now();
    s.frames(&[0, 1, 2], 30, Duration::from_secs(10)).await;
    println!(
        "30 frames at three viewers {:?} after the connects",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_that_feeds_only_another_relay_stays_until_that_one_goes() {
    let fanout = ["--relay-fanout", "1"];
    let Some(n) = nodes("relay tree: an inner relay", &ABC, &fanout).await else {
        return;
    };
    let mut s = stage(n.ports[0], &["node-b", "node-c"]).await;
    s.connect(0).await;
    s.connect(1).await;
    let (p, qb, qc) = (s.p.clone(), s.qs[0].clone(), s.qs[1].clone());
    let (in_b, _, _) = s.upstream(&qb).await;
    let (in_c, out_c, from_c) = s.upstream(&qc).await;
    assert_eq!(from_c, qb, "C is not fed through B");
    s.frames(&[0, 1], 30, Duration::from_secs(10)).await;
    // B's viewer is disconnected: B's relay feeds only C's, and is kept (past two idle
    // checks of the janitor), C's viewer still fed through it.
    let disconnect = json!({"object": s.e_pub, "operation": "disconnect",
        "operationParams": {"sink": s.views[0]}});
    s.c.request("invoke", disconnect).await.unwrap();
    assert_eq!(sinks_of(&mut s.c, &in_b).await, [out_c.clone()].into());
    let mut gap = Gap::new(s.viewers[1].frames_in);
    s.watch(1, Duration::from_secs(3), &mut gap).await;
    // Neither relay made again (a refeed's gap, 0.3-1.2 s, would pass the bound below):
    // the same ends, C's still fed by B's relayIn.
    let (in_b2, _, _) = s.upstream(&qb).await;
    assert_eq!(in_b2, in_b, "B's relay was made again");
    let (in_c2, out_c2, from_c2) = s.upstream(&qc).await;
    assert_eq!(
        (&in_c2, &out_c2),
        (&in_c, &out_c),
        "C's relay was made again"
    );
    assert_eq!(from_c2, qb, "C is no longer fed through B");
    println!(
        "inner relay kept: C's viewer's longest time without a frame over 3 s: {:?}",
        gap.longest
    );
    // A loose bound: two such tests run at once on a shared 2-core machine.
    assert!(
        gap.longest < Duration::from_millis(2500),
        "C's viewer went {:?} without a frame",
        gap.longest
    );
    assert_eq!(relay_ends(&mut s.c, &qb).await.len(), 2, "B's relay ends");
    s.frames(&[1], 30, Duration::from_secs(5)).await;
    // C's viewer goes: C's relay goes, then B's (idle once C's relayOut went), then
    // nothing of the tree is left.
    s.c.request("release", json!({"object": s.views[1]}))
        .await
        .unwrap();
    let t0 = Instant::now();
    for q in [&qc, &qb, &p] {
        while !relay_ends(&mut s.c, q).await.is_empty() {
            assert!(t0.elapsed() < Duration::from_secs(10), "relay ends in {q}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!("the tree gone {:?} after C's viewer", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_fed_through_a_node_that_dies_is_fed_again() {
    let fanout = ["--relay-fanout", "1"];
    let Some(n) = nodes("relay tree: a node dies", &ABC, &fanout).await else {
        return;
    };
    let mut s = stage(n.ports[0], &["node-b", "node-c"]).await;
    s.connect(0).await;
    s.connect(1).await;
    let (p, qb, qc) = (s.p.clone(), s.qs[0].clone(), s.qs[1].clone());
    let (in_c, _, from_c) = s.upstream(&qc).await;
    assert_eq!(from_c, qb, "C is not fed through B");
    s.frames(&[1], 30, Duration::from_secs(10)).await;
    // node-b dies: C's relayOut (on node-b) stops answering; C's relay is fed again from
    // the source after a few checks.
    signal(&n.servers[1], libc::SIGKILL);
    s.qs.retain(|q| *q != qb);
    let mut gap = Gap::new(s.viewers[1].frames_in);
    let within = Duration::from_secs(12);
    let (refed, frames) = s.until_fed_again((&qc, &in_c), 1, within, &mut gap).await;
    println!(
        "C's new relayIn made {refed:?} after node-b died; 30 frames through it {frames:?} after; longest time without a frame {:?}; {}",
        gap.longest,
        fed_again(&n)
    );
    // Three checks of a silent upstream (about 3 s), then the new ends.
    assert!(
        gap.longest < Duration::from_secs(7),
        "C's viewer went {:?} without a frame",
        gap.longest
    );
    let (_, _, from) = s.upstream(&qc).await;
    assert_eq!(from, p, "C is fed again, from the source's pipeline");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_fed_again_keeps_feeding_the_relays_below_it() {
    let fanout = ["--relay-fanout", "1"];
    let abcd = ["node-a", "node-b", "node-c", "node-d"];
    let Some(n) = nodes("relay tree: a chain of three", &abcd, &fanout).await else {
        return;
    };
    // A chain: P -> B -> C -> D.
    let mut s = stage(n.ports[0], &["node-b", "node-c", "node-d"]).await;
    for i in 0..3 {
        s.connect(i).await;
    }
    let (qb, qc, qd) = (s.qs[0].clone(), s.qs[1].clone(), s.qs[2].clone());
    let (_, _, from_c) = s.upstream(&qc).await;
    let (in_d, out_d, from_d) = s.upstream(&qd).await;
    assert_eq!((&from_c, &from_d), (&qb, &qc), "not a chain");
    s.frames(&[0, 1, 2], 30, Duration::from_secs(10)).await;
    // B's pipeline released: C's relay is fed again; its new relayIn feeds C's viewer and
    // D's relayOut (in C's pipeline), so D's relay keeps its ends and its viewer its media.
    s.c.request("release", json!({"object": qb})).await.unwrap();
    s.qs.retain(|q| *q != qb);
    let t1 = Instant::now();
    let mut gap = Gap::new(s.viewers[2].frames_in);
    s.watch(2, Duration::from_millis(300), &mut gap).await;
    s.resumed(2, 30, Duration::from_secs(8), &mut gap).await;
    s.frames(&[1], 30, Duration::from_secs(5)).await;
    println!(
        "D's viewer, two relays below the one released: 30 frames {:?} after; longest time without a frame {:?}",
        t1.elapsed(),
        gap.longest
    );
    assert!(
        gap.longest < Duration::from_secs(4),
        "D's viewer went {:?} without a frame",
        gap.longest
    );
    let (in_c, _, from_c) = s.upstream(&qc).await;
    assert_eq!(from_c, s.p, "C is fed again, from the source's pipeline");
    let (in_d2, out_d2, _) = s.upstream(&qd).await;
    assert_eq!((in_d2, &out_d2), (in_d, &out_d), "D's relay was made again");
    assert_eq!(sources_of(&mut s.c, &out_d).await, [in_c].into());
}
