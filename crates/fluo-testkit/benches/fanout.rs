//! Cost of Fluo's real forwarding path: one publisher's video RTP packet in, SRTP-decrypted,
//! rewritten and SRTP-encrypted once per viewer, datagrams out. Measured on the sans-IO media
//! core with in-memory str0m browsers, so sockets and the browsers' own work are excluded.
//!
//! `cargo bench -p fluo-testkit --bench fanout [-- 10 100 1000]`: wall time and this thread's
//! CPU time per forwarded packet (compare the CPU column on a shared machine). Through the
//! egress fast path by default; `FLUO_EGRESS=off` measures str0m's path (write, tick, poll).
use fluo_testkit::World;
use serde_json::json;
use std::time::{Duration, Instant};
use str0m::media::Direction;

/// This thread's CPU time (user + system): on a shared machine the figure that other
/// processes' load does not inflate, as wall time is.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn run(n: usize, packets: usize) -> (f64, f64, f64) {
    let mut w = World::new();
    let p = w.create("MediaPipeline", None);
    let publisher_ep = w.create("WebRtcEndpoint", Some(&p));
    let publisher = w.add_browser("pub", false);
    w.negotiate_browser_offer(publisher, &publisher_ep, Direction::SendOnly);
    for i in 0..n {
        let ep = w.create("WebRtcEndpoint", Some(&p));
        let b = w.add_browser(&format!("v{i}"), true);
        w.negotiate_browser_offer(b, &ep, Direction::RecvOnly);
        w.invoke(
            &publisher_ep,
            "connect",
            json!({"sink": ep, "mediaType": "VIDEO"}),
        );
    }
    assert!(w.connect_all(Duration::from_secs(30)), "all peers connect");
    w.stream(&[publisher], Duration::from_millis(300));
    let server = w.server;
    let mut busy = Duration::ZERO;
    let mut cpu = Duration::ZERO;
    let mut sent = 0u64;
    for _ in 0..packets {
        let now = w.now.mono;
        // ~1100-byte frame: one RTP packet.
        w.browsers[publisher].send_video_frame(now, 1100);
        let out = w.browsers[publisher].take_outbox(now + Duration::from_millis(1));
        let t0 = Instant::now();
        let c0 = thread_cpu();
        for (src, dst, data) in &out {
            if *dst == server {
                w.core.handle_receive(now, *dst, *src, data);
            }
        }
        // The egress fast path queued its copies in one batch, which the shell sends with
        // sendmmsg (not counted here: the kernel's part is the sendmmsg bench's). With
        // FLUO_EGRESS=off str0m queues written RTP and releases it on the next timer tick,
        // which the shell runs at once (the deadline is "now").
        w.core.send_egress(|batch, _| sent += batch.len() as u64);
        let mut ticks = 0;
        while let Some(t) = w.core.poll_timeout() {
            if t > now + Duration::from_millis(1) || ticks > 3 {
                break;
            }
            w.core.handle_timeout(t.max(now));
            ticks += 1;
        }
        while w.core.poll_transmit().is_some() {
            sent += 1;
        }
        busy += t0.elapsed();
        cpu += thread_cpu() - c0;
        while w.core.poll_event().is_some() {}
        w.now = w.now.advanced(Duration::from_millis(2));
    }
    if std::env::var("FANOUT_DEBUG").is_ok() {
        eprintln!(
            "next timeout in {:?}",
            w.core
                .poll_timeout()
                .map(|t| t.saturating_duration_since(w.now.mono))
        );
    }
    let per_packet = |d: Duration| d.as_secs_f64() * 1e6 / sent.max(1) as f64;
    (
        per_packet(busy),
        per_packet(cpu),
        sent as f64 / packets as f64,
    )
}

fn main() {
    let ns: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let ns = if ns.is_empty() {
        vec![10, 100, 1000]
    } else {
        ns
    };
    let path = match std::env::var("FLUO_EGRESS").as_deref() {
        Ok("off" | "0" | "false" | "no") => "str0m write_rtp + tick",
        _ => "egress fast path",
    };
    println!("fanout: Fluo media core, one VP8 publisher -> N viewers, SRTP both ways ({path})");
    println!(
        "{:>6} | {:>22} | {:>22} | {:>18}",
        "N", "wall us per fwd packet", "CPU us per fwd packet", "datagrams per input"
    );
    for n in ns {
        let packets = (20_000 / n).clamp(20, 400);
        let (us, cpu, fan) = run(n, packets);
        println!("{n:>6} | {us:>22.2} | {cpu:>22.2} | {fan:>18.1}");
    }
}
