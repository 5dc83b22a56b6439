//! The router forwarding one 1200-byte RTP packet to N sinks (each on its own line, with its
//! payload type; the sinks only touch what they are given).
//!
//! Throughput is set to N elements, so criterion's "thrpt" line gives forwarded packets per
//! second and `time / N` is the cost per packet per sink.
//!
//! Times are the bench thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall-clock time: on
//! a shared machine the time other processes take the cores from it does not count (under a
//! load of 8 on 2 cores, wall-clock figures of one binary varied by a factor of two).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Criterion's measurement of the thread's CPU time, shown as durations.
struct ThreadCpu;

/// Formats the CPU times as criterion formats wall-clock times.
static DURATIONS: WallTime = WallTime;

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu()
    }
    fn end(&self, started: Duration) -> Duration {
        thread_cpu().saturating_sub(started)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, d: &Duration) -> f64 {
        d.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        DURATIONS.formatter()
    }
}

type Crit = Criterion<ThreadCpu>;

/// A sink that only touches what it is given.
struct Sink(usize);

impl fluo_sfu::Node for Sink {
    fn caps(&self, _: fluo_sfu::MediaKind) -> fluo_sfu::SinkCaps {
        let vp8 = fluo_sfu::Codec::new(fluo_sfu::CodecName::Vp8);
        fluo_sfu::SinkCaps::codecs([fluo_sfu::SinkCodec::with_pt(vp8, 96)])
    }
    fn push(&mut self, _: std::time::Instant, pkt: &fluo_sfu::Packet<'_>, h: fluo_sfu::Header) {
        self.0 = self
            .0
            .wrapping_add(black_box(pkt.payload.len()) + usize::from(h.seq));
    }
}

/// A sink that takes any codec.
struct AnySink(usize);

impl fluo_sfu::Node for AnySink {
    fn caps(&self, _: fluo_sfu::MediaKind) -> fluo_sfu::SinkCaps {
        fluo_sfu::SinkCaps::anything()
    }
    fn push(&mut self, _: std::time::Instant, pkt: &fluo_sfu::Packet<'_>, h: fluo_sfu::Header) {
        self.0 = self
            .0
            .wrapping_add(black_box(pkt.payload.len()) + usize::from(h.seq));
    }
}

fn media_router(c: &mut Crit) {
    use fluo_sfu::{Codec, CodecName, MediaKind, MediaRouter, Packet};
    use std::sync::Arc;
    let payload: Arc<[u8]> = Arc::from(vec![7u8; 1188]);
    let mut g = c.benchmark_group("media_router_1200B");
    for n in [10usize, 100, 1000] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("forward", n), &n, |b, &n| {
            let t0 = Instant::now();
            let mut r = MediaRouter::new();
            let cam = r.add_node("cam", Box::new(Sink(0)));
            for _ in 0..n {
                let s = r.add_node("viewer", Box::new(Sink(0)));
                r.connect(t0, cam, MediaKind::Video, s).unwrap();
            }
            let mut seq = 0u16;
            b.iter(|| {
                seq = seq.wrapping_add(1);
                let pkt = Packet {
                    kind: MediaKind::Video,
                    codec: Codec::new(CodecName::Vp8),
                    seq,
                    ts: u32::from(seq) * 3000,
                    ssrc: 0xabc,
                    marker: false,
                    payload: &payload,
                    entered: None,
                    extensions: None,
                    dd: None,
                    layer: None,
                };
                let now = t0 + Duration::from_micros(u64::from(seq));
                r.forward(now, cam, &pkt)
            });
        });
    }
    g.finish();
}

/// The same for a simulcast source: three layers each sent to a third of the N sinks, a
/// packet of each layer per iteration (3 packets in, N out: `time / N` is the cost per
/// forwarded packet, which includes the sinks a packet looks at without sending to them).
fn media_router_simulcast(c: &mut Crit) {
    simulcast_group(c, "media_router_simulcast_1200B", false);
}

/// The same with another, plain publisher in the router whose payload type alternates, one
/// packet before each iteration's three: each of its packets decides its routes again (a
/// route change elsewhere in the router, which must not make the layered source sort its
/// sinks again).
fn media_router_simulcast_churn(c: &mut Crit) {
    simulcast_group(c, "media_router_simulcast_churn_1200B", true);
}

fn simulcast_group(c: &mut Crit, name: &str, churn: bool) {
    use fluo_sfu::{Codec, CodecName, LayerLimits, MediaKind, MediaRouter, Packet};
    use std::sync::Arc;
    let key = |w: u16| -> Arc<[u8]> {
        let mut p = vec![0x10, 0x50, 0x2d, 0x01, 0x9d, 0x01, 0x2a];
        p.extend_from_slice(&w.to_le_bytes());
        p.extend_from_slice(&(w / 4 * 3).to_le_bytes());
        p.resize(1188, 7);
        Arc::from(p)
    };
    let keys = [key(160), key(320), key(640)];
    let mut inter = vec![7u8; 1188];
    inter[..2].copy_from_slice(&[0x10, 0x01]);
    let inter: Arc<[u8]> = Arc::from(inter);
    let mut g = c.benchmark_group(name);
    for n in [12usize, 99, 999] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("forward", n), &n, |b, &n| {
            let t0 = Instant::now();
            let mut r = MediaRouter::new();
            let cam = r.add_node("cam", Box::new(Sink(0)));
            for i in 0..n {
                let s = r.add_node("viewer", Box::new(Sink(0)));
                r.connect(t0, cam, MediaKind::Video, s).unwrap();
                let max = Some((i % 3) as u8);
                r.set_layer_limits(
                    s,
                    MediaKind::Video,
                    LayerLimits {
                        max,
                        preferred: None,
                        max_temporal: None,
                    },
                );
            }
            let plain = r.add_node("plain", Box::new(Sink(0)));
            let other = r.add_node("other viewer", Box::new(AnySink(0)));
            r.connect(t0, plain, MediaKind::Video, other).unwrap();
            let mut seq = 0u16;
            let send = |r: &mut MediaRouter, seq: u16, key: bool| {
                let now = t0 + Duration::from_micros(u64::from(seq) * 100);
                let mut out = 0;
                if churn {
                    let codec = [CodecName::Vp8, CodecName::H264][usize::from(seq % 2)];
                    let pkt = Packet {
                        kind: MediaKind::Video,
                        codec: Codec::new(codec),
                        seq,
                        ts: u32::from(seq) * 3000,
                        ssrc: 0xdef,
                        marker: false,
                        payload: &inter,
                        entered: None,
                        extensions: None,
                        dd: None,
                        layer: None,
                    };
                    black_box(r.forward(now, plain, &pkt));
                }
                for layer in 0..3u8 {
                    let pkt = Packet {
                        kind: MediaKind::Video,
                        codec: Codec::new(CodecName::Vp8),
                        seq: seq.wrapping_add(u16::from(layer) * 20_000),
                        ts: u32::from(seq) * 3000,
                        ssrc: 0xabc + u32::from(layer),
                        marker: false,
                        payload: if key {
                            &keys[usize::from(layer)]
                        } else {
                            &inter
                        },
                        entered: None,
                        extensions: None,
                        dd: None,
                        layer: Some(layer),
                    };
                    out += r.forward(now, cam, &pkt);
                }
                out
            };
            // Past the settling time, every sink on its layer.
            for i in 0..10_000u16 {
                seq = i;
                send(&mut r, seq, i % 5000 == 0);
            }
            assert_eq!(
                send(&mut r, seq.wrapping_add(1), false),
                n,
                "each sink gets its layer"
            );
            b.iter(|| {
                seq = seq.wrapping_add(1);
                send(&mut r, seq, false)
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = media_router, media_router_simulcast, media_router_simulcast_churn
}
criterion_main!(benches);
