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
