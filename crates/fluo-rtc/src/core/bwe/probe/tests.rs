//! The prober: a cluster becomes padding packets paced at its rate, marked in the sent-packet
//! log with the cluster's id, with the pacing information goog_cc's probe estimator needs;
//! nothing without RTX.

use super::*;
use fluo_egress::{Clock, ExtPlan, Path, Profile, Rtx, SocketId, SrtpContext, StreamOut};
use fluo_sfu::MediaKind;
use goog_cc::units::{TimeDelta, Timestamp};

fn viewer(rtx: bool) -> Viewer {
    let p = Profile::AeadAes128Gcm;
    let m: Vec<u8> = (0..p.material_len() as u8).collect();
    let path = Path {
        socket: SocketId(1),
        to: "127.0.0.1:9".parse().unwrap(),
        tos: 0,
    };
    let tx = SrtpContext::from_dtls(p, &m, false).unwrap();
    let rx = SrtpContext::from_dtls(p, &m, true).unwrap();
    let mut v = Viewer::new(tx, rx, path, Clock::new());
    let plan = ExtPlan {
        transport_cc: Some(6),
        ..ExtPlan::default()
    };
    let rtx = rtx.then(|| Rtx::new(0x900, 97));
    v.set_stream(
        MediaKind::Video,
        Some(StreamOut::new(0x100, 96, 90_000, rtx, plan)),
    );
    v
}

fn config(id: i32, kbps: i64, ms: i64, count: i32) -> ProbeClusterConfig {
    ProbeClusterConfig {
        at_time: Timestamp::from_micros(0),
        target_data_rate: DataRate::from_kilobits_per_sec(kbps),
        target_duration: TimeDelta::from_millis(ms),
        min_probe_delta: TimeDelta::from_millis(2),
        target_probe_count: count,
        id,
    }
}

/// Steps `prober` whenever it asks, from `t0`, until it has nothing left (at most 2 s): the
/// times of each packet sent, and the batch's datagram sizes.
fn run(prober: &mut Prober, v: &mut Viewer, t0: Instant) -> (Vec<Instant>, Vec<usize>) {
    let mut batch = Batch::new();
    let mut times = vec![];
    let mut now = t0;
    while let Some(next) = prober.next(now) {
        now = next.max(now);
        assert!(now < t0 + Duration::from_secs(2), "runs for ever");
        let sent = prober.step(now, v, &mut batch);
        times.extend(std::iter::repeat_n(now, sent.packets as usize));
    }
    let sizes = batch.iter().map(|(_, d)| d.len()).collect();
    (times, sizes)
}

#[test]
fn a_cluster_becomes_padding_paced_at_its_rate_and_marked_in_the_log() {
    let t0 = Instant::now();
    let mut v = viewer(true);
    v.log_sent(t0);
    let mut prober = Prober::default();
    // 480 kbit/s for 100 ms: 6000 bytes, at least 5 packets.
    prober.ask(&[config(3, 480, 100, 5)]);
    let (times, sizes) = run(&mut prober, &mut v, t0);
    let bytes: usize = sizes.iter().sum();
    assert!(
        (6000..6000 + 300).contains(&bytes),
        "its bytes: {bytes} in {sizes:?}"
    );
    assert!(sizes.len() >= 5);
    assert!(sizes.iter().all(|s| (250..330).contains(s)), "{sizes:?}");
    // Paced: the last packet leaves when the bytes before it are due at 480 kbit/s.
    let spread = times.last().unwrap().duration_since(times[0]);
    let due = Duration::from_micros((bytes - sizes.last().unwrap()) as u64 * 8_000_000 / 480_000);
    assert!(
        spread >= due && spread <= due + STEP,
        "sent over {spread:?}, due over {due:?}"
    );
    assert_eq!(prober.done, 1);
    // Each packet is in the log with the cluster's id; goog_cc gets the cluster's size.
    let mut seen = vec![];
    v.sent_log()
        .unwrap()
        .take_sent(t0 + Duration::from_secs(1), |s| seen.push(s));
    assert_eq!(seen.len(), sizes.len());
    assert!(seen.iter().all(|s| s.probe == Some(3)), "{seen:?}");
    let info = prober.info(Some(3));
    assert_eq!(
        (info.probe_cluster_id, info.probe_cluster_min_probes),
        (3, 5)
    );
    assert_eq!(info.probe_cluster_min_bytes, 6000);
    assert_eq!(
        prober.info(None).probe_cluster_id,
        PacedPacketInfo::NOT_APROBE
    );
    assert_eq!(
        prober.info(Some(4)).probe_cluster_id,
        PacedPacketInfo::NOT_APROBE
    );
}

#[test]
fn clusters_go_one_after_the_other_their_count_and_rate_bounded() {
    let t0 = Instant::now();
    let mut v = viewer(true);
    v.log_sent(t0);
    let mut prober = Prober::default();
    // A short cluster still sends its least count; a rate above the bound is taken at it.
    prober.ask(&[config(1, 100, 15, 5), config(2, 50_000, 30, 5)]);
    let (times, sizes) = run(&mut prober, &mut v, t0);
    let mut seen = vec![];
    v.sent_log()
        .unwrap()
        .take_sent(t0 + Duration::from_secs(1), |s| seen.push(s));
    let first = seen.iter().filter(|s| s.probe == Some(1)).count();
    let second: Vec<_> = seen.iter().filter(|s| s.probe == Some(2)).collect();
    assert_eq!(first, 5, "the least count");
    assert_eq!(first + second.len(), sizes.len());
    // 5 Mbit/s for 30 ms: 18 750 bytes.
    let bytes: u64 = second.iter().map(|s| u64::from(s.size)).sum();
    assert!((18_750..18_750 + 300).contains(&bytes), "{bytes}");
    let spread = times.last().unwrap().duration_since(times[first]);
    assert!(spread >= Duration::from_millis(28), "{spread:?}");
    assert_eq!(prober.done, 2);
}

#[test]
fn without_rtx_nothing_is_sent_and_the_clusters_are_given_up() {
    let t0 = Instant::now();
    let mut v = viewer(false);
    v.log_sent(t0);
    let mut prober = Prober::default();
    prober.ask(&[config(1, 480, 30, 5), config(2, 960, 30, 5)]);
    let mut batch = Batch::new();
    assert_eq!(prober.step(t0, &mut v, &mut batch), Sent::default());
    assert!(batch.is_empty());
    assert_eq!((prober.done, prober.given_up), (0, 2));
    assert_eq!(prober.next(t0), None);
}

#[test]
fn a_cluster_long_late_is_given_up() {
    let t0 = Instant::now();
    let mut v = viewer(true);
    let mut prober = Prober::default();
    prober.ask(&[config(1, 480, 100, 5)]);
    let mut batch = Batch::new();
    assert_eq!(prober.step(t0, &mut v, &mut batch).packets, 1);
    // The timers came back a second later: given up, nothing more sent.
    let late = t0 + Duration::from_secs(1);
    assert_eq!(prober.step(late, &mut v, &mut batch).packets, 0);
    assert_eq!((prober.done, prober.given_up), (0, 1));
    assert_eq!(batch.len(), 1);
}
