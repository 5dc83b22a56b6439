//! What remains per forwarded packet on the egress path, without sockets: for each input
//! video packet, one insert into the source's shared resend cache, then per viewer the
//! rewrite (sequence, timestamp, SSRC), the header (PT, abs-send-time) written into a
//! reused batch buffer, the payload copied, AES-256-GCM with that viewer's own keys, queued.
//! Thread CPU time per forwarded packet, several runs.
//!
//! `cargo bench -p fluo-egress --bench egress [-- RUNS N...]`

use fluo_egress::{
    Batch, Clock, ExtPlan, Path, Profile, Rtx, SocketId, Source, SourcePacket, SrtpContext,
    StreamOut, Viewer,
};
use fluo_sfu::rtp::write_rtp;
use fluo_sfu::MediaKind;
use std::time::{Duration, Instant};

const VIDEO: MediaKind = MediaKind::Video;

fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn viewers(n: usize) -> Vec<Viewer> {
    let clock = Clock::new();
    (0..n)
        .map(|i| {
            let p = Profile::AeadAes256Gcm;
            // Distinct keys per viewer, as in a real fan-out.
            let material: Vec<u8> = (0..p.material_len())
                .map(|j| (i * 31 + j * 7) as u8)
                .collect();
            let tx = SrtpContext::from_dtls(p, &material, false).unwrap();
            let rx = SrtpContext::from_dtls(p, &material, true).unwrap();
            let path = Path {
                socket: SocketId(0),
                to: format!("127.0.{}.{}:{}", 1 + i / 250, 2 + i % 250, 5000 + i)
                    .parse()
                    .unwrap(),
                tos: 0,
            };
            let mut v = Viewer::new(tx, rx, path, clock);
            let plan = ExtPlan {
                abs_send_time: Some(3),
                ..ExtPlan::default()
            };
            let stream = StreamOut::new(
                0x1000 + i as u32,
                96,
                90_000,
                Some(Rtx::new(0x9000 + i as u32, 97)),
                plan,
            );
            v.set_stream(VIDEO, Some(stream));
            v
        })
        .collect()
}

/// Thread CPU ns per forwarded packet.
fn run(n: usize, packets: usize) -> f64 {
    let mut vs = viewers(n);
    let mut source = Source::new();
    let mut batch = Batch::new();
    let payload = vec![0x10u8; 1160];
    let mut pkt = Vec::with_capacity(1500);
    let t0 = Instant::now();
    let mut cpu = 0u64;
    for i in 0..packets + 20 {
        let now = t0 + Duration::from_millis(i as u64 * 9);
        let seq = 1000u16.wrapping_add(i as u16);
        write_rtp(
            &mut pkt,
            96,
            i % 3 == 0,
            seq,
            i as u32 * 3000,
            0xabcd,
            &payload,
        );
        let start = thread_cpu_ns();
        source.insert(now, seq, &pkt);
        let p = SourcePacket::parse(&pkt).unwrap();
        for v in vs.iter_mut() {
            v.forward(now, VIDEO, &p, &mut batch);
        }
        let end = thread_cpu_ns();
        assert_eq!(batch.len(), n);
        batch.clear();
        // The first 20 packets warm the buffers up.
        if i >= 20 {
            cpu += end - start;
        }
    }
    cpu as f64 / (packets * n) as f64
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let runs = args.first().copied().unwrap_or(5);
    let ns = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        vec![100, 200, 1000]
    };
    println!(
        "egress: rewrite + header + copy + AES-256-GCM + queue, per forwarded 1200-byte packet"
    );
    println!("thread CPU ns per forwarded packet, {runs} runs");
    println!("{:>6} | {:>7} | {:>7} | {:>7}", "N", "min", "median", "max");
    for n in ns {
        let packets = (400_000 / n).clamp(200, 4000);
        let mut v: Vec<f64> = (0..runs).map(|_| run(n, packets)).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{n:>6} | {:>7.1} | {:>7.1} | {:>7.1}",
            v[0],
            v[v.len() / 2],
            v[v.len() - 1]
        );
    }
}
