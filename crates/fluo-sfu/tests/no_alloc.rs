//! Counts heap allocations on the forwarding path with a counting global allocator:
//! after warm-up, forwarding (callback or batch), answering NACKs and handling RTCP
//! feedback allocate nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use fluo_sfu::rtcp::{write_nack, write_pli};
use fluo_sfu::rtp::{write_rtp, RtpHeaderMut};
use fluo_sfu::{ConsumerConfig, ForwardBatch, ProducerConfig, Router};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; only counts calls in a const-initialised
// thread-local (which itself never allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

#[test]
fn forwarding_allocates_nothing_per_packet_per_consumer_after_warm_up() {
    const CONSUMERS: usize = 100;
    const WARM: u16 = 2000;
    const MEASURED: u16 = 5000;

    let t0 = Instant::now();
    let mut r = Router::new();
    let p = r.add_producer(ProducerConfig::video());
    let p2 = r.add_producer(ProducerConfig::video());
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|i| {
            let c = r.add_consumer(ConsumerConfig::video(i as u32));
            r.attach(t0, c, p).unwrap();
            c
        })
        .collect();
    let mut packet = Vec::new();
    write_rtp(&mut packet, 96, false, 0, 0, 0xabc, &[7u8; 1188]);
    assert_eq!(packet.len(), 1200);
    let mut batch = ForwardBatch::new();
    let mut feedback = Vec::new();
    write_pli(&mut feedback, 1, 0);
    write_nack(&mut feedback, 1, 0, &[1500, 1502, 1510]);
    let mut sent_bytes = 0usize;

    let mut run = |r: &mut Router, seq: u16, packet: &mut Vec<u8>, batch: &mut ForwardBatch| {
        let now = t0 + Duration::from_millis(u64::from(seq));
        let mut h = RtpHeaderMut::new(packet).unwrap();
        h.set_sequence(seq);
        h.set_timestamp(u32::from(seq) * 3000);
        let n = r
            .forward(now, p, packet, |_, b| sent_bytes += b.len())
            .unwrap();
        assert_eq!(n, CONSUMERS);
        batch.clear();
        r.forward_batch(now, p, packet, batch).unwrap();
        r.handle_consumer_rtcp(
            now,
            consumers[seq as usize % CONSUMERS],
            &feedback,
            |_, b| sent_bytes += b.len(),
        )
        .unwrap();
        r.handle_timeout(now);
        while r.poll_event().is_some() {}
        // a switch back and forth now and then
        if seq % 500 == 0 {
            let c = consumers[0];
            r.attach(now, c, p2).unwrap();
            r.attach(now, c, p).unwrap();
        }
    };

    let start = allocs();
    for seq in 0..WARM {
        run(&mut r, seq, &mut packet, &mut batch);
    }
    // the counter works: warming the batch arena allocated
    assert!(allocs() > start);
    let before = allocs();
    for seq in WARM..WARM + MEASURED {
        run(&mut r, seq, &mut packet, &mut batch);
    }
    let during = allocs() - before;
    assert!(sent_bytes > 0);
    assert_eq!(
        during, 0,
        "{during} allocations for {} packets x {CONSUMERS} consumers",
        MEASURED
    );
    assert!(r.stats().retransmitted > 0);
}

/// A sink that only counts what it is given.
struct Counter(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl fluo_sfu::Node for Counter {
    fn caps(&self, _: fluo_sfu::MediaKind) -> fluo_sfu::SinkCaps {
        let vp8 = fluo_sfu::Codec::new(fluo_sfu::CodecName::Vp8);
        fluo_sfu::SinkCaps::codecs([fluo_sfu::SinkCodec::with_pt(vp8, 96)])
    }
    fn push(&mut self, _: std::time::Instant, pkt: &fluo_sfu::Packet<'_>, h: fluo_sfu::Header) {
        let n = pkt.payload.len() + usize::from(h.seq & 1);
        self.0.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn the_media_router_allocates_nothing_per_packet_per_sink_after_warm_up() {
    use fluo_sfu::{Codec, CodecName, MediaKind, MediaRouter, Packet};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    const SINKS: usize = 100;
    const WARM: u16 = 2000;
    const MEASURED: u16 = 5000;

    let t0 = Instant::now();
    let bytes = Arc::new(AtomicUsize::new(0));
    let mut r = MediaRouter::new();
    let cam = r.add_node("cam", Box::new(Counter(bytes.clone())));
    let cam2 = r.add_node("cam2", Box::new(Counter(bytes.clone())));
    let sinks: Vec<_> = (0..SINKS)
        .map(|_| {
            let s = r.add_node("viewer", Box::new(Counter(bytes.clone())));
            r.connect(t0, cam, MediaKind::Video, s).unwrap();
            s
        })
        .collect();
    let payload: Arc<[u8]> = Arc::from(vec![7u8; 1188]);
    let run = |r: &mut MediaRouter, seq: u16| {
        let now = t0 + Duration::from_millis(u64::from(seq));
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
        assert_eq!(r.forward(now, cam, &pkt), SINKS);
        r.request_keyframe(now, sinks[seq as usize % SINKS], MediaKind::Video);
        r.handle_timeout(now);
        while r.poll_event().is_some() {}
    };
    for seq in 0..WARM {
        run(&mut r, seq);
    }
    // A switch away and back (a change: decided again, then quiet).
    r.disconnect(cam, MediaKind::Video, sinks[0]).unwrap();
    r.connect(t0, cam2, MediaKind::Video, sinks[0]).unwrap();
    r.disconnect(cam2, MediaKind::Video, sinks[0]).unwrap();
    r.connect(t0, cam, MediaKind::Video, sinks[0]).unwrap();
    run(&mut r, WARM);
    let before = allocs();
    for seq in WARM + 1..WARM + MEASURED {
        run(&mut r, seq);
    }
    let during = allocs() - before;
    assert!(bytes.load(Ordering::Relaxed) > 0);
    assert_eq!(
        during, 0,
        "{during} allocations for {MEASURED} packets x {SINKS} sinks"
    );
}
