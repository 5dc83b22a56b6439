//! Forwarding one 1200-byte RTP packet to N consumers.
//!
//! Throughput is set to N elements, so criterion's "thrpt" line gives forwarded copies per
//! second and `time / N` is the cost per packet per consumer.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fluo_sfu::rtp::{write_rtp, RtpHeaderMut};
use fluo_sfu::{ConsumerConfig, ForwardBatch, ProducerConfig, Router};

fn setup(n: usize) -> (Router, fluo_sfu::ProducerId, Instant) {
    let t0 = Instant::now();
    let mut r = Router::new();
    let p = r.add_producer(ProducerConfig::video());
    for i in 0..n {
        let c = r.add_consumer(ConsumerConfig::video(i as u32));
        r.attach(t0, c, p).unwrap();
    }
    (r, p, t0)
}

fn forward(c: &mut Criterion) {
    let mut packet = Vec::new();
    write_rtp(&mut packet, 96, false, 0, 0, 0xabc, &[7u8; 1188]);
    assert_eq!(packet.len(), 1200);

    let mut g = c.benchmark_group("forward_1200B");
    for n in [10usize, 100, 1000] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("callback", n), &n, |b, &n| {
            let (mut r, p, t0) = setup(n);
            let mut seq = 0u16;
            let mut sink = 0usize;
            b.iter(|| {
                seq = seq.wrapping_add(1);
                let mut h = RtpHeaderMut::new(&mut packet).unwrap();
                h.set_sequence(seq);
                h.set_timestamp(u32::from(seq) * 3000);
                let now = t0 + Duration::from_micros(u64::from(seq));
                r.forward(now, p, &packet, |_, bytes| sink += black_box(bytes).len())
                    .unwrap()
            });
            black_box(sink);
        });
        g.bench_with_input(BenchmarkId::new("batch", n), &n, |b, &n| {
            let (mut r, p, t0) = setup(n);
            let mut batch = ForwardBatch::with_capacity(n, n * 1200);
            let mut seq = 0u16;
            b.iter(|| {
                seq = seq.wrapping_add(1);
                let mut h = RtpHeaderMut::new(&mut packet).unwrap();
                h.set_sequence(seq);
                h.set_timestamp(u32::from(seq) * 3000);
                let now = t0 + Duration::from_micros(u64::from(seq));
                batch.clear();
                r.forward_batch(now, p, &packet, &mut batch).unwrap();
                black_box(batch.len())
            });
        });
    }
    g.finish();
}

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

fn media_router(c: &mut Criterion) {
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
                };
                let now = t0 + Duration::from_micros(u64::from(seq));
                r.forward(now, cam, &pkt)
            });
        });
    }
    g.finish();
}

criterion_group!(benches, forward, media_router);
criterion_main!(benches);
