use std::time::{Duration, Instant};

use super::*;
use crate::rtcp::{write_fir, write_nack, write_pli};
use crate::rtp::write_rtp;

const SSRC_A: u32 = 0xa;
const SSRC_B: u32 = 0xb;

fn pkt(pt: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut v = Vec::new();
    write_rtp(&mut v, pt, false, seq, ts, ssrc, &[seq as u8; 50]);
    v
}

/// Collects `(consumer, seq, ts, ssrc, pt, payload)` of everything emitted.
type Out = Vec<(ConsumerId, u16, u32, u32, u8, Vec<u8>)>;

fn sink(out: &mut Out) -> impl FnMut(ConsumerId, &[u8]) + '_ {
    |c, b| {
        let p = RtpPacket::parse(b).expect("router emits valid RTP");
        out.push((
            c,
            p.sequence(),
            p.timestamp(),
            p.ssrc(),
            p.payload_type(),
            p.payload().to_vec(),
        ))
    }
}

fn setup() -> (Router, ProducerId, ConsumerId, Instant) {
    let t = Instant::now();
    let mut r = Router::new();
    let p = r.add_producer(ProducerConfig::video());
    let c = r.add_consumer(ConsumerConfig {
        first_seq: 100,
        first_ts: 1000,
        ..ConsumerConfig::video(0xc0)
    });
    r.attach(t, c, p).unwrap();
    (r, p, c, t)
}

#[test]
fn forwards_with_rewritten_header_and_same_payload() {
    let (mut r, p, c, t) = setup();
    let mut out = Out::new();
    r.forward(t, p, &pkt(96, 7000, 55, SSRC_A), sink(&mut out))
        .unwrap();
    r.forward(t, p, &pkt(96, 7001, 3055, SSRC_A), sink(&mut out))
        .unwrap();
    assert_eq!(out[0], (c, 100, 1000, 0xc0, 96, vec![0x58; 50]));
    assert_eq!((out[1].1, out[1].2), (101, 4000));
    assert_eq!(r.stats().forwarded, 2);
}

#[test]
fn switch_between_producers_is_continuous() {
    let (mut r, pa, c, t) = setup();
    let pb = r.add_producer(ProducerConfig::video());
    let mut out = Out::new();
    for i in 0..3u16 {
        r.forward(
            t,
            pa,
            &pkt(96, 65_534u16.wrapping_add(i), 3000 * u32::from(i), SSRC_A),
            sink(&mut out),
        )
        .unwrap();
    }
    let t2 = t + Duration::from_millis(100);
    r.attach(t2, c, pb).unwrap();
    assert_eq!(r.consumers_of(pa).unwrap(), &[]);
    // A keeps sending: C no longer gets it
    r.forward(t2, pa, &pkt(96, 1, 9000, SSRC_A), sink(&mut out))
        .unwrap();
    r.forward(t2, pb, &pkt(96, 30_000, 777, SSRC_B), sink(&mut out))
        .unwrap();
    r.forward(t2, pb, &pkt(96, 30_001, 3777, SSRC_B), sink(&mut out))
        .unwrap();
    r.forward(t2, pb, &pkt(96, 29_999, 0, SSRC_B), sink(&mut out))
        .unwrap(); // older: dropped
    let seqs: Vec<u16> = out.iter().map(|o| o.1).collect();
    assert_eq!(seqs, vec![100, 101, 102, 103, 104]);
    let ts: Vec<u32> = out.iter().map(|o| o.2).collect();
    // 100 ms after the last packet (ts 7000) -> +9000 ticks
    assert_eq!(ts, vec![1000, 4000, 7000, 16_000, 19_000]);
    assert_eq!(r.stats().dropped_old, 1);
}

#[test]
fn producer_restart_with_new_ssrc_is_continuous() {
    let (mut r, p, _c, t) = setup();
    let mut out = Out::new();
    r.forward(t, p, &pkt(96, 10, 10, SSRC_A), sink(&mut out))
        .unwrap();
    r.forward(t, p, &pkt(96, 50_000, u32::MAX, SSRC_B), sink(&mut out))
        .unwrap();
    r.forward(t, p, &pkt(96, 50_001, 2999, SSRC_B), sink(&mut out))
        .unwrap();
    r.forward(t, p, &pkt(96, 11, 3010, SSRC_A), sink(&mut out))
        .unwrap(); // straggler
    let v: Vec<(u16, u32)> = out.iter().map(|o| (o.1, o.2)).collect();
    assert_eq!(v, vec![(100, 1000), (101, 1001), (102, 4001)]);
}

#[test]
fn producer_restart_same_ssrc_needs_explicit_signal() {
    let (mut r, p, _c, t) = setup();
    let mut out = Out::new();
    r.forward(t, p, &pkt(96, 40_000, 10, SSRC_A), sink(&mut out))
        .unwrap();
    r.producer_restarted(p).unwrap();
    r.forward(t, p, &pkt(96, 5, 99, SSRC_A), sink(&mut out))
        .unwrap();
    assert_eq!(out[1].1, 101);
}

#[test]
fn pause_and_resume_continue_numbering_and_request_keyframe() {
    let (mut r, p, c, t) = setup();
    assert_eq!(r.poll_event(), Some(RouterEvent::RequestKeyframe(p)));
    let mut out = Out::new();
    r.forward(t, p, &pkt(96, 1, 0, SSRC_A), sink(&mut out))
        .unwrap();
    r.pause(c).unwrap();
    assert!(r.is_paused(c).unwrap());
    for s in 2..50 {
        r.forward(t, p, &pkt(96, s, 0, SSRC_A), sink(&mut out))
            .unwrap();
    }
    assert_eq!(r.stats().skipped_paused, 48);
    let t2 = t + Duration::from_secs(1);
    r.resume(t2, c).unwrap();
    assert_eq!(r.poll_event(), Some(RouterEvent::RequestKeyframe(p)));
    r.forward(t2, p, &pkt(96, 50, 90_000, SSRC_A), sink(&mut out))
        .unwrap();
    assert_eq!((out[1].1, out[1].2), (101, 1000 + 90_000));
}

#[test]
fn payload_types_are_mapped_by_codec() {
    let (mut r, p, c, t) = setup();
    let producer_codecs = [(96, "VP8"), (98, "VP9"), (111, "opus")];
    let consumer_codecs = [(100, "VP8"), (101, "H264")];
    let map = PayloadMap::from_codecs(&producer_codecs, &consumer_codecs);
    assert_eq!(map.get(96), Some(100));
    assert_eq!(map.get(98), None);
    r.set_payload_map(c, map).unwrap();
    let mut out = Out::new();
    r.forward(t, p, &pkt(96, 1, 0, SSRC_A), sink(&mut out))
        .unwrap();
    r.forward(t, p, &pkt(98, 2, 0, SSRC_A), sink(&mut out))
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].4, 100);
    assert_eq!(r.stats().dropped_unmapped_pt, 1);
}

#[test]
fn hostile_packets_are_dropped_and_counted() {
    let (mut r, p, _c, t) = setup();
    let mut out = Out::new();
    let bad: [&[u8]; 5] = [
        &[],
        &[0x80, 96, 0],
        &[0x40; 20],
        &[0x8f, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        &[0x80, 200, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
    ];
    for b in bad {
        assert!(matches!(
            r.forward(t, p, b, sink(&mut out)),
            Err(RouterError::Malformed(_))
        ));
    }
    assert!(out.is_empty());
    assert_eq!(r.stats().malformed, 5);
    assert_eq!(r.stats().packets_in, 5);
}

#[test]
fn pli_flood_is_throttled_and_deferred_request_fires() {
    let (mut r, p, c, t) = setup();
    assert_eq!(r.poll_event(), Some(RouterEvent::RequestKeyframe(p))); // join
    let mut pli = Vec::new();
    write_pli(&mut pli, 0xc0, 0xc0);
    write_fir(&mut pli, 0xc0, 0xc0, 1);
    for i in 0..500u64 {
        let now = t + Duration::from_micros(i * 20);
        r.handle_consumer_rtcp(now, c, &pli, |_, _| {}).unwrap();
    }
    assert_eq!(r.poll_event(), None);
    let (deadline, reason) = r.poll_timeout().unwrap();
    assert_eq!(reason, TimeoutReason::KeyframeRequest(p));
    assert_eq!(deadline, t + DEFAULT_KEYFRAME_INTERVAL);
    r.handle_timeout(deadline);
    assert_eq!(r.poll_event(), Some(RouterEvent::RequestKeyframe(p)));
    assert_eq!(r.poll_event(), None);
    assert_eq!(r.poll_timeout(), None);
    assert_eq!(r.stats().keyframe_requests_sent, 2);
    assert_eq!(r.stats().keyframe_requests_received, 1001);
}

#[test]
fn audio_consumers_never_request_keyframes() {
    let t = Instant::now();
    let mut r = Router::new();
    let p = r.add_producer(ProducerConfig::audio());
    let c = r.add_consumer(ConsumerConfig::audio(1));
    r.attach(t, c, p).unwrap();
    r.request_keyframe(t, c).unwrap();
    assert_eq!(r.poll_event(), None);
    let v = r.add_consumer(ConsumerConfig::video(2));
    assert_eq!(r.attach(t, v, p), Err(RouterError::KindMismatch));
}

#[test]
fn nack_is_answered_from_cache_rewritten_for_the_consumer() {
    let (mut r, p, c, t) = setup();
    let c2 = r.add_consumer(ConsumerConfig::video(0xc2));
    r.attach(t, c2, p).unwrap();
    let mut out = Out::new();
    for s in 65_530..=65_535u16 {
        r.forward(t, p, &pkt(96, s, u32::from(s), SSRC_A), sink(&mut out))
            .unwrap();
    }
    for s in 0..4u16 {
        r.forward(
            t,
            p,
            &pkt(96, s, 70_000 + u32::from(s), SSRC_A),
            sink(&mut out),
        )
        .unwrap();
    }
    // consumer c got out seqs 100..=109; c2 got 1..=10
    let mut rtx = Out::new();
    let mut nack = Vec::new();
    write_nack(&mut nack, 0xc0, 0xc0, &[105, 107, 99, 200]);
    r.handle_consumer_rtcp(t, c, &nack, sink(&mut rtx)).unwrap();
    assert_eq!(rtx.len(), 2);
    assert_eq!((rtx[0].0, rtx[0].1, rtx[0].3), (c, 105, 0xc0));
    assert_eq!(rtx[0].5, vec![65_535u16 as u8; 50]);
    assert_eq!((rtx[1].1, rtx[1].5[0]), (107, 1));
    // timestamps match the originals as sent
    let sent = out.iter().find(|o| o.0 == c && o.1 == 107).unwrap();
    assert_eq!(rtx[1].2, sent.2);
    assert_eq!(r.stats().nack_misses, 2);
    // the other consumer's numbering
    let n = r.handle_nack(t, c2, [6u16], sink(&mut rtx)).unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        (rtx[2].0, rtx[2].1, rtx[2].3, rtx[2].5[0]),
        (c2, 6, 0xc2, 65_535u16 as u8)
    );
    // too old
    let late = t + Duration::from_secs(2);
    assert_eq!(r.handle_nack(late, c, [105u16], sink(&mut rtx)).unwrap(), 0);
}

#[test]
fn nack_before_switch_point_is_a_miss() {
    let (mut r, pa, c, t) = setup();
    let pb = r.add_producer(ProducerConfig::video());
    let mut out = Out::new();
    r.forward(t, pa, &pkt(96, 1, 0, SSRC_A), sink(&mut out))
        .unwrap();
    r.attach(t, c, pb).unwrap();
    r.forward(t, pb, &pkt(96, 1, 0, SSRC_B), sink(&mut out))
        .unwrap();
    assert_eq!(
        r.handle_nack(t, c, [100u16, 101], sink(&mut out)).unwrap(),
        1
    );
    assert_eq!(out.last().unwrap().1, 101);
}

#[test]
fn batch_output_matches_callback_output() {
    let (mut r, p, _c, t) = setup();
    for i in 0..5 {
        let c = r.add_consumer(ConsumerConfig::video(i));
        r.attach(t, c, p).unwrap();
    }
    let mut r2_out = Out::new();
    let mut batch = ForwardBatch::with_capacity(8, 8 * 1500);
    let packet = pkt(96, 9, 9, SSRC_A);
    assert_eq!(r.forward_batch(t, p, &packet, &mut batch).unwrap(), 6);
    {
        let mut f = sink(&mut r2_out);
        for (c, b) in batch.iter() {
            f(c, b);
        }
    }
    assert_eq!(batch.len(), 6);
    let ssrcs: Vec<u32> = r2_out.iter().map(|o| o.3).collect();
    assert_eq!(ssrcs, vec![0xc0, 0, 1, 2, 3, 4]);
    assert!(r2_out.iter().all(|o| o.5 == vec![9u8; 50]));
    batch.clear();
    assert!(batch.is_empty());
}

#[test]
fn removal_and_stale_ids() {
    let (mut r, p, c, t) = setup();
    r.remove_producer(p).unwrap();
    assert_eq!(r.consumer_source(c).unwrap(), None);
    assert_eq!(
        r.forward(t, p, &pkt(96, 1, 1, 1), |_, _| {}),
        Err(RouterError::UnknownProducer)
    );
    let p2 = r.add_producer(ProducerConfig::video());
    assert_eq!(p2.index(), p.index());
    assert_eq!(r.attach(t, c, p), Err(RouterError::UnknownProducer));
    r.attach(t, c, p2).unwrap();
    r.remove_consumer(c).unwrap();
    assert_eq!(r.consumers_of(p2).unwrap(), &[]);
    assert_eq!(r.pause(c), Err(RouterError::UnknownConsumer));
    assert_eq!(r.producers().count(), 1);
}
