//! Counts heap allocations on the router's forwarding path with a counting global allocator:
//! after warm-up, forwarding to every sink on its line, keyframe requests, timers and the
//! input-latency samples allocate nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

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
    let board = Arc::new(fluo_sfu::LatencyBoard::default());
    r.set_latency_board(board.clone());
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
    // The first packet of a VP8 key frame: a switched sink waits for one.
    let mut key = vec![0u8; 1188];
    key[0] = 0x10;
    let key: Arc<[u8]> = Arc::from(key);
    let run = |r: &mut MediaRouter, seq: u16| {
        let now = t0 + Duration::from_millis(u64::from(seq));
        let pkt = Packet {
            kind: MediaKind::Video,
            codec: Codec::new(CodecName::Vp8),
            seq,
            ts: u32::from(seq) * 3000,
            ssrc: 0xabc,
            marker: false,
            payload: if seq == WARM { &key } else { &payload },
            // One packet in 32 is timed, as the media core times them.
            entered: fluo_sfu::latency::sampled(seq).then(Instant::now),
            extensions: None,
            dd: None,
            layer: None,
        };
        assert_eq!(r.forward(now, cam, &pkt), SINKS);
        r.request_keyframe(now, sinks[seq as usize % SINKS], MediaKind::Video);
        r.handle_timeout(now);
        while r.poll_event().is_some() {}
    };
    for seq in 0..WARM {
        run(&mut r, seq);
    }
    // A switch away and back (a change: decided again, then quiet; the switched sink goes on
    // at the keyframe, packet WARM).
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
    assert!(board.get("viewer")[1].is_some(), "latencies were measured");
    assert_eq!(
        during, 0,
        "{during} allocations for {MEASURED} packets x {SINKS} sinks"
    );
}

#[test]
fn simulcast_forwarding_allocates_nothing_per_packet_per_sink_after_warm_up() {
    use fluo_sfu::{Codec, CodecName, LayerLimits, MediaKind, MediaRouter, Packet};
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    const SINKS: usize = 90;
    let t0 = Instant::now();
    let bytes = Arc::new(AtomicUsize::new(0));
    let mut r = MediaRouter::new();
    let cam = r.add_node("cam", Box::new(Counter(bytes.clone())));
    // A third of the sinks on each layer.
    for i in 0..SINKS {
        let s = r.add_node("viewer", Box::new(Counter(bytes.clone())));
        r.connect(t0, cam, MediaKind::Video, s).unwrap();
        let limits = LayerLimits {
            max: Some((i % 3) as u8),
            preferred: None,
            max_temporal: None,
        };
        r.set_layer_limits(s, MediaKind::Video, limits);
    }
    // VP8 key frames announcing each layer's size, and inter frames.
    let frame = |key: bool, w: u16| -> Arc<[u8]> {
        let mut p = vec![0x10, u8::from(!key), 0x2d, 0x01, 0x9d, 0x01, 0x2a];
        p.extend_from_slice(&w.to_le_bytes());
        p.extend_from_slice(&(w / 4 * 3).to_le_bytes());
        p.resize(1000, 7);
        Arc::from(p)
    };
    let keys = [frame(true, 160), frame(true, 320), frame(true, 640)];
    let inter = frame(false, 0);
    let mut sent = 0usize;
    let run = |r: &mut MediaRouter, i: u16, key: bool, sent: &mut usize| {
        let now = t0 + Duration::from_millis(u64::from(i) * 11);
        for layer in 0..3u8 {
            let seq = i.wrapping_add(u16::from(layer) * 20_000);
            let pkt = Packet {
                kind: MediaKind::Video,
                codec: Codec::new(CodecName::Vp8),
                seq,
                ts: u32::from(i) * 3000,
                ssrc: 0x100 + u32::from(layer),
                marker: true,
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
            *sent += r.forward(now, cam, &pkt);
        }
        r.handle_timeout(now);
        while r.poll_event().is_some() {}
    };
    // Warm-up: the layers settle (the source announced none: after LAYER_SETTLE), every sink
    // starts on its layer at the next key frames.
    for i in 0..500 {
        run(&mut r, i, i % 100 == 0, &mut sent);
    }
    let (before, sent_before) = (allocs(), sent);
    for i in 500..3000 {
        run(&mut r, i, false, &mut sent);
    }
    let during = allocs() - before;
    assert_eq!(
        sent - sent_before,
        2500 * SINKS,
        "each sink got one layer's packets"
    );
    assert_eq!(
        during, 0,
        "{during} allocations for 2500 frames x 3 layers x {SINKS} sinks"
    );
}
