//! Live heap per viewer endpoint on the server side after a few seconds of video, media sent
//! (a) through str0m's `write_rtp` as Fluo's media core does today (video resend history 200
//! ms, its value on a LAN, and 1 s, its starting value), (b) through the egress (str0m keeps
//! ICE, DTLS and RTCP; the resend cache is per source and not counted here).
//!
//! Each viewer is a str0m `Rtc` connected to an in-memory str0m browser; once it has streamed,
//! the browser and the test network are dropped and only the server's `Rtc` (and, for (b),
//! its egress state) are kept. glibc's `mallinfo2` gives the live bytes: Rust's allocations
//! and aws-lc's own (C `malloc`: DTLS and SRTP key state), which a Rust global allocator
//! would not see.
//!
//! `cargo bench -p fluo-egress --bench memory [-- VIEWERS SECONDS]`

#[path = "../tests/support/harness.rs"]
mod harness;

use harness::{Pair, AUDIO, VIDEO};
use std::time::Duration;

/// Bytes in use in glibc's allocator (small blocks and mmapped ones).
fn live() -> i64 {
    // SAFETY: no arguments; returns a plain struct.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as i64
}

/// Live heap bytes per viewer kept, for `n` viewers streamed for `secs`.
/// `connect`: false keeps the viewers negotiated but not connected.
fn run(n: usize, secs: u64, via_str0m: Option<Duration>, connect: bool) -> f64 {
    // One viewer first, dropped, so that what is allocated once per process (crypto
    // provider, thread-locals, lazily built tables) is not counted per viewer.
    {
        let mut p = Pair::new();
        p.via_str0m = via_str0m;
        p.connect();
        for _ in 0..10 {
            p.send(VIDEO);
            p.run(Duration::from_millis(10));
        }
    }
    let base = live();
    let mut kept = Vec::with_capacity(n);
    for _ in 0..n {
        let mut p = Pair::new();
        p.via_str0m = via_str0m;
        if !connect {
            kept.push((p.server, None));
            continue;
        }
        p.connect();
        for i in 0..secs * 100 {
            p.send(VIDEO);
            if i % 2 == 0 {
                p.send(AUDIO);
            }
            p.run(Duration::from_millis(10));
        }
        assert!(
            p.browser.rtp_in.len() as u64 >= secs * 140 * u64::from(secs > 0),
            "media arrived: {}",
            p.browser.rtp_in.len()
        );
        p.settle();
        let Pair { server, egress, .. } = p;
        let egress = if via_str0m.is_some() { None } else { egress };
        kept.push((server, egress));
    }
    let live = live() - base - (n * std::mem::size_of_val(&kept[0])) as i64;
    let per = live as f64 / n as f64 + std::mem::size_of_val(&kept[0]) as f64;
    drop(kept);
    per
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(50) as usize;
    let secs = args.get(1).copied().unwrap_or(3);
    println!("live heap per viewer (server side), {n} viewers, {secs} s of ~0.9 Mbit/s video + Opus each");
    for (name, mode) in [
        (
            "str0m write_rtp, resend history 200 ms",
            Some(Duration::from_millis(200)),
        ),
        (
            "str0m write_rtp, resend history 1 s",
            Some(Duration::from_secs(1)),
        ),
        ("egress (str0m: ICE, DTLS, RTCP only)", None),
    ] {
        if std::env::var("ONLY_EGRESS").is_ok() && mode.is_some() {
            continue;
        }
        let per = run(n, secs, mode, true);
        println!("{name:<45} | {:>8.1} KiB", per / 1024.0);
    }
    if std::env::var("ONLY_EGRESS").is_ok() {
        // Hold the viewers for a heap profiler's peak.
        return;
    }
    // The egress state alone: keys (two directions), two streams with RTX, scratch.
    {
        use fluo_egress::{
            Clock, ExtPlan, Path, Profile, Rtx, SocketId, SrtpContext, StreamOut, Viewer,
        };
        let p = Profile::AeadAes256Gcm;
        let material: Vec<u8> = (0..p.material_len() as u8).collect();
        let base = live();
        let vs: Vec<Viewer> = (0..1000u32)
            .map(|i| {
                let path = Path {
                    socket: SocketId(0),
                    to: "127.0.0.2:5000".parse().unwrap(),
                    tos: 0,
                };
                let mut v = Viewer::new(
                    SrtpContext::from_dtls(p, &material, false).unwrap(),
                    SrtpContext::from_dtls(p, &material, true).unwrap(),
                    path,
                    Clock::new(),
                );
                for kind in [AUDIO, VIDEO] {
                    let plan = ExtPlan {
                        mid: Some((4, b"1".to_vec())),
                        abs_send_time: Some(2),
                        ..ExtPlan::default()
                    };
                    let rtx = (kind == VIDEO).then(|| Rtx::new(i + 7, 97));
                    let stream = StreamOut::new(i, 96, 90_000, rtx, plan);
                    v.set_stream(harness::media_kind(kind), Some(stream));
                }
                v
            })
            .collect();
        let per = (live() - base) as f64 / 1000.0;
        println!(
            "{:<45} | {:>8.1} KiB",
            "  of which: the egress state alone",
            per / 1024.0
        );
        drop(vs);
    }
    // Where the egress case's bytes are: str0m's Rtc before and after DTLS.
    let per = run(n, 0, None, false);
    println!(
        "{:<45} | {:>8.1} KiB",
        "  of which: Rtc negotiated, not connected",
        per / 1024.0
    );
    let per = run(n, 0, None, true);
    println!(
        "{:<45} | {:>8.1} KiB",
        "  of which: Rtc + egress connected, no media",
        per / 1024.0
    );
}
