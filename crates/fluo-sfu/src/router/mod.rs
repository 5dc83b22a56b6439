//! The forwarding table: producers, consumers, and what happens to each packet.
//!
//! A [`Router`] owns every producer (an incoming RTP stream) and consumer (an outgoing
//! RTP stream bound to at most one producer at a time). Per packet it:
//!
//! 1. parses the RTP header (malformed packets are counted and dropped);
//! 2. stores a copy in the producer's [`RetransmitCache`];
//! 3. for each consumer of the producer that is not paused: maps the payload type
//!    ([`PayloadMap`]), rewrites sequence number, timestamp and SSRC ([`Rewriter`]) into a
//!    reused buffer, and hands the bytes to the caller.
//!
//! Feedback from subscribers comes back through [`Router::handle_consumer_rtcp`] (or the
//! typed [`Router::request_keyframe`] / [`Router::handle_nack`]): PLI and FIR become
//! throttled keyframe requests to the producer ([`RouterEvent::RequestKeyframe`], drained
//! by [`Router::poll_event`]); NACKs are answered from the cache, rewritten for the asking
//! consumer. Deferred keyframe requests are driven by [`Router::poll_timeout`] /
//! [`Router::handle_timeout`]. Nothing here reads the clock or does IO.
//!
//! Retransmissions are emitted as plain RTP with the consumer's payload type and
//! sequence number; wrapping them into RTX (RFC 4588) is the transport's business.

mod batch;
mod payload;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

pub use batch::ForwardBatch;
pub use payload::PayloadMap;

use crate::error::ParseError;
use crate::ids::{ConsumerId, MediaKind, ProducerId, Slab};
use crate::keyframe::{KeyframeThrottle, DEFAULT_KEYFRAME_INTERVAL};
use crate::nack::{RetransmitCache, DEFAULT_MAX_AGE, DEFAULT_VIDEO_CAPACITY};
use crate::rewrite::{Rewriter, Rewritten};
use crate::rtcp::{RtcpCompound, RtcpPacket};
use crate::rtp::{RtpHeaderMut, RtpPacket};

/// Errors of router operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouterError {
    /// The producer id is unknown or was removed.
    UnknownProducer,
    /// The consumer id is unknown or was removed.
    UnknownConsumer,
    /// A consumer of one media kind cannot follow a producer of another.
    KindMismatch,
    /// The packet could not be parsed; it was dropped and counted.
    Malformed(ParseError),
}

impl fmt::Display for RouterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouterError::UnknownProducer => f.write_str("unknown producer"),
            RouterError::UnknownConsumer => f.write_str("unknown consumer"),
            RouterError::KindMismatch => f.write_str("media kind mismatch"),
            RouterError::Malformed(e) => write!(f, "malformed packet: {e}"),
        }
    }
}

impl std::error::Error for RouterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RouterError::Malformed(e) => Some(e),
            _ => None,
        }
    }
}

/// How a producer is set up.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Audio or video.
    pub kind: MediaKind,
    /// Packets kept for retransmission (0 disables the cache).
    pub cache_capacity: usize,
    /// Age after which cached packets are not retransmitted.
    pub cache_max_age: Duration,
    /// Minimum spacing of keyframe requests sent to this producer.
    pub keyframe_interval: Duration,
}

impl ProducerConfig {
    /// Video defaults: 1000-packet cache, 1 s age limit, 500 ms keyframe interval.
    pub fn video() -> Self {
        ProducerConfig {
            kind: MediaKind::Video,
            cache_capacity: DEFAULT_VIDEO_CAPACITY,
            cache_max_age: DEFAULT_MAX_AGE,
            keyframe_interval: DEFAULT_KEYFRAME_INTERVAL,
        }
    }

    /// Audio defaults: no cache, no keyframes.
    pub fn audio() -> Self {
        ProducerConfig {
            kind: MediaKind::Audio,
            cache_capacity: 0,
            ..Self::video()
        }
    }
}

/// How a consumer is set up.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Audio or video; must match the producer it attaches to.
    pub kind: MediaKind,
    /// RTP clock rate of the media (90 000 video, 48 000 Opus).
    pub clock_rate: u32,
    /// SSRC written into every outgoing packet.
    pub ssrc: u32,
    /// Sequence number of the first outgoing packet.
    pub first_seq: u16,
    /// Timestamp of the first outgoing packet.
    pub first_ts: u32,
    /// Producer payload type -> consumer payload type.
    pub payload_map: PayloadMap,
}

impl ConsumerConfig {
    /// A video consumer (90 kHz) with identity payload mapping, starting at seq 1, ts 0.
    pub fn video(ssrc: u32) -> Self {
        ConsumerConfig {
            kind: MediaKind::Video,
            clock_rate: 90_000,
            ssrc,
            first_seq: 1,
            first_ts: 0,
            payload_map: PayloadMap::identity(),
        }
    }

    /// An audio consumer (48 kHz) with identity payload mapping, starting at seq 1, ts 0.
    pub fn audio(ssrc: u32) -> Self {
        ConsumerConfig {
            kind: MediaKind::Audio,
            clock_rate: 48_000,
            ..Self::video(ssrc)
        }
    }
}

/// Something the transport must do on the router's behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterEvent {
    /// Send a keyframe request (PLI/FIR) to this producer's publisher.
    RequestKeyframe(ProducerId),
}

/// Why [`Router::poll_timeout`] wants to be woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutReason {
    /// A deferred keyframe request to this producer becomes due.
    KeyframeRequest(ProducerId),
}

/// Router-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Packets given to [`Router::forward`] / [`Router::forward_batch`].
    pub packets_in: u64,
    /// Packets (RTP or RTCP) dropped because they could not be parsed.
    pub malformed: u64,
    /// Copies emitted to consumers, retransmissions excluded.
    pub forwarded: u64,
    /// Copies not emitted because the consumer has no mapping for the payload type.
    pub dropped_unmapped_pt: u64,
    /// Copies not emitted because they were older than the consumer's switch point.
    pub dropped_old: u64,
    /// Copies not emitted because the consumer was paused.
    pub skipped_paused: u64,
    /// Retransmitted copies emitted in answer to NACKs.
    pub retransmitted: u64,
    /// NACKed sequence numbers that could not be answered.
    pub nack_misses: u64,
    /// Keyframe requests emitted as [`RouterEvent::RequestKeyframe`].
    pub keyframe_requests_sent: u64,
    /// Keyframe requests received from consumers (before throttling).
    pub keyframe_requests_received: u64,
}

#[derive(Debug)]
struct Producer {
    kind: MediaKind,
    consumers: Vec<ConsumerId>,
    cache: RetransmitCache,
    keyframe: KeyframeThrottle,
}

#[derive(Debug)]
struct Consumer {
    kind: MediaKind,
    producer: Option<ProducerId>,
    paused: bool,
    rewriter: Rewriter,
    payload_map: PayloadMap,
}

/// The producer -> consumers forwarding table. See the [module docs](self).
#[derive(Debug)]
pub struct Router {
    producers: Slab<ProducerId, Producer>,
    consumers: Slab<ConsumerId, Consumer>,
    scratch: Vec<u8>,
    events: VecDeque<RouterEvent>,
    stats: RouterStats,
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

/// Copies `packet` into `buf` (appended at its end) with the consumer's header fields.
fn emit_into(buf: &mut Vec<u8>, packet: &[u8], rw: Rewritten, pt: u8) {
    let start = buf.len();
    buf.extend_from_slice(packet);
    let mut h = RtpHeaderMut::new(&mut buf[start..]).expect("packet was parsed as RTP");
    h.set_sequence(rw.seq);
    h.set_timestamp(rw.ts);
    h.set_ssrc(rw.ssrc);
    h.set_payload_type(pt);
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Router {
            producers: Slab::new(),
            consumers: Slab::new(),
            scratch: Vec::with_capacity(1500),
            events: VecDeque::with_capacity(64),
            stats: RouterStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &RouterStats {
        &self.stats
    }

    /// Adds a producer.
    pub fn add_producer(&mut self, config: ProducerConfig) -> ProducerId {
        self.producers.insert(Producer {
            kind: config.kind,
            consumers: Vec::new(),
            cache: RetransmitCache::new(config.cache_capacity, config.cache_max_age),
            keyframe: KeyframeThrottle::new(config.keyframe_interval),
        })
    }

    /// Removes a producer; its consumers stay, detached, and keep their stream state so a
    /// later [`attach`](Self::attach) continues their numbering.
    pub fn remove_producer(&mut self, id: ProducerId) -> Result<(), RouterError> {
        let p = self
            .producers
            .remove(id)
            .ok_or(RouterError::UnknownProducer)?;
        for c in p.consumers {
            if let Some(c) = self.consumers.get_mut(c) {
                c.producer = None;
            }
        }
        Ok(())
    }

    /// Adds a consumer, not yet attached to any producer.
    pub fn add_consumer(&mut self, config: ConsumerConfig) -> ConsumerId {
        self.consumers.insert(Consumer {
            kind: config.kind,
            producer: None,
            paused: false,
            rewriter: Rewriter::new(
                config.clock_rate,
                config.ssrc,
                config.first_seq,
                config.first_ts,
            ),
            payload_map: config.payload_map,
        })
    }

    /// Removes a consumer.
    pub fn remove_consumer(&mut self, id: ConsumerId) -> Result<(), RouterError> {
        self.detach(id)?;
        self.consumers.remove(id);
        Ok(())
    }

    /// The producers (ids) known to the router.
    pub fn producers(&self) -> impl Iterator<Item = ProducerId> + '_ {
        self.producers.iter().map(|(id, _)| id)
    }

    /// The producer a consumer currently follows.
    pub fn consumer_source(&self, id: ConsumerId) -> Result<Option<ProducerId>, RouterError> {
        Ok(self.consumer(id)?.producer)
    }

    /// The consumers currently attached to a producer.
    pub fn consumers_of(&self, id: ProducerId) -> Result<&[ConsumerId], RouterError> {
        Ok(&self
            .producers
            .get(id)
            .ok_or(RouterError::UnknownProducer)?
            .consumers)
    }

    fn consumer(&self, id: ConsumerId) -> Result<&Consumer, RouterError> {
        self.consumers.get(id).ok_or(RouterError::UnknownConsumer)
    }

    fn consumer_mut(&mut self, id: ConsumerId) -> Result<&mut Consumer, RouterError> {
        self.consumers
            .get_mut(id)
            .ok_or(RouterError::UnknownConsumer)
    }

    /// Makes `consumer` follow `producer` (switching away from its current producer, if
    /// any). The outgoing stream continues seamlessly and, for video, a keyframe is
    /// requested from the new producer (throttled).
    pub fn attach(
        &mut self,
        now: Instant,
        consumer: ConsumerId,
        producer: ProducerId,
    ) -> Result<(), RouterError> {
        let pkind = self
            .producers
            .get(producer)
            .ok_or(RouterError::UnknownProducer)?
            .kind;
        let c = self.consumer(consumer)?;
        if c.kind != pkind {
            return Err(RouterError::KindMismatch);
        }
        if c.producer == Some(producer) {
            return Ok(());
        }
        self.detach(consumer)?;
        let c = self.consumer_mut(consumer)?;
        c.producer = Some(producer);
        c.rewriter.resync();
        let p = self
            .producers
            .get_mut(producer)
            .expect("producer checked above");
        p.consumers.push(consumer);
        self.keyframe_for(now, producer);
        Ok(())
    }

    /// Stops `consumer` following any producer; its numbering state is kept.
    pub fn detach(&mut self, consumer: ConsumerId) -> Result<(), RouterError> {
        let c = self.consumer_mut(consumer)?;
        if let Some(pid) = c.producer.take() {
            if let Some(p) = self.producers.get_mut(pid) {
                if let Some(i) = p.consumers.iter().position(|&x| x == consumer) {
                    p.consumers.swap_remove(i);
                }
            }
        }
        Ok(())
    }

    /// Stops emitting packets to `consumer` until [`resume`](Self::resume).
    pub fn pause(&mut self, consumer: ConsumerId) -> Result<(), RouterError> {
        self.consumer_mut(consumer)?.paused = true;
        Ok(())
    }

    /// Resumes a paused consumer: its stream continues at the next sequence number and,
    /// for video, a keyframe is requested.
    pub fn resume(&mut self, now: Instant, consumer: ConsumerId) -> Result<(), RouterError> {
        let c = self.consumer_mut(consumer)?;
        if !c.paused {
            return Ok(());
        }
        c.paused = false;
        c.rewriter.resync();
        if let Some(p) = c.producer {
            self.keyframe_for(now, p);
        }
        Ok(())
    }

    /// Whether the consumer is paused.
    pub fn is_paused(&self, consumer: ConsumerId) -> Result<bool, RouterError> {
        Ok(self.consumer(consumer)?.paused)
    }

    /// Replaces a consumer's payload-type map.
    pub fn set_payload_map(
        &mut self,
        consumer: ConsumerId,
        map: PayloadMap,
    ) -> Result<(), RouterError> {
        self.consumer_mut(consumer)?.payload_map = map;
        Ok(())
    }

    /// Tells the router a producer restarted its stream under the same SSRC (sequence and
    /// timestamps jumped): its cache is emptied and every consumer resyncs.
    pub fn producer_restarted(&mut self, producer: ProducerId) -> Result<(), RouterError> {
        let p = self
            .producers
            .get_mut(producer)
            .ok_or(RouterError::UnknownProducer)?;
        p.cache.clear();
        for &c in &p.consumers {
            if let Some(c) = self.consumers.get_mut(c) {
                c.rewriter.resync();
            }
        }
        Ok(())
    }

    /// Forwards one RTP packet of `producer` to each of its consumers, calling
    /// `out(consumer, bytes)` with the rewritten copy. Returns the number of copies.
    ///
    /// The copy lives in a buffer reused for every consumer and packet: once warm, no
    /// allocation happens here.
    pub fn forward(
        &mut self,
        now: Instant,
        producer: ProducerId,
        packet: &[u8],
        mut out: impl FnMut(ConsumerId, &[u8]),
    ) -> Result<usize, RouterError> {
        let Router {
            producers,
            consumers,
            scratch,
            stats,
            ..
        } = self;
        let (p, rtp) = Self::ingest(producers, stats, now, producer, packet)?;
        let mut n = 0;
        for &cid in &p.consumers {
            let Some(c) = consumers.get_mut(cid) else {
                continue;
            };
            if let Some((rw, pt)) = Self::route(c, stats, now, &rtp) {
                scratch.clear();
                emit_into(scratch, packet, rw, pt);
                out(cid, scratch);
                n += 1;
            }
        }
        stats.forwarded += n as u64;
        Ok(n)
    }

    /// Like [`forward`](Self::forward) but appends the copies to `batch` (for a batched
    /// send, e.g. `sendmmsg`). The batch is not cleared first.
    pub fn forward_batch(
        &mut self,
        now: Instant,
        producer: ProducerId,
        packet: &[u8],
        batch: &mut ForwardBatch,
    ) -> Result<usize, RouterError> {
        let Router {
            producers,
            consumers,
            stats,
            ..
        } = self;
        let (p, rtp) = Self::ingest(producers, stats, now, producer, packet)?;
        let mut n = 0;
        for &cid in &p.consumers {
            let Some(c) = consumers.get_mut(cid) else {
                continue;
            };
            if let Some((rw, pt)) = Self::route(c, stats, now, &rtp) {
                batch.push_with(cid, |buf| emit_into(buf, packet, rw, pt));
                n += 1;
            }
        }
        stats.forwarded += n as u64;
        Ok(n)
    }

    /// Parses and caches one incoming packet.
    fn ingest<'p, 'b>(
        producers: &'p mut Slab<ProducerId, Producer>,
        stats: &mut RouterStats,
        now: Instant,
        producer: ProducerId,
        packet: &'b [u8],
    ) -> Result<(&'p Producer, RtpPacket<'b>), RouterError> {
        let p = producers
            .get_mut(producer)
            .ok_or(RouterError::UnknownProducer)?;
        stats.packets_in += 1;
        let rtp = match RtpPacket::parse(packet) {
            Ok(r) => r,
            Err(e) => {
                stats.malformed += 1;
                return Err(RouterError::Malformed(e));
            }
        };
        p.cache.insert(now, rtp.sequence(), packet);
        Ok((p, rtp))
    }

    /// Decides whether and how one consumer gets one packet.
    fn route(
        c: &mut Consumer,
        stats: &mut RouterStats,
        now: Instant,
        rtp: &RtpPacket<'_>,
    ) -> Option<(Rewritten, u8)> {
        if c.paused {
            stats.skipped_paused += 1;
            return None;
        }
        let Some(pt) = c.payload_map.get(rtp.payload_type()) else {
            stats.dropped_unmapped_pt += 1;
            return None;
        };
        match c
            .rewriter
            .rewrite(now, rtp.ssrc(), rtp.sequence(), rtp.timestamp())
        {
            Some(rw) => Some((rw, pt)),
            None => {
                stats.dropped_old += 1;
                None
            }
        }
    }

    fn keyframe_for(&mut self, now: Instant, producer: ProducerId) {
        let Some(p) = self.producers.get_mut(producer) else {
            return;
        };
        if p.kind != MediaKind::Video {
            return;
        }
        self.stats.keyframe_requests_received += 1;
        if p.keyframe.handle_request(now) {
            self.stats.keyframe_requests_sent += 1;
            self.events
                .push_back(RouterEvent::RequestKeyframe(producer));
        }
    }

    /// A consumer's subscriber asked for a keyframe (PLI/FIR): forwards the request to
    /// its producer, throttled. Ignored for audio and for detached consumers.
    pub fn request_keyframe(
        &mut self,
        now: Instant,
        consumer: ConsumerId,
    ) -> Result<(), RouterError> {
        if let Some(p) = self.consumer(consumer)?.producer {
            self.keyframe_for(now, p);
        }
        Ok(())
    }

    /// Answers a NACK from `consumer` for the given *outgoing* sequence numbers with
    /// cached packets, rewritten for that consumer, through `out`. Returns how many were
    /// retransmitted; numbers sent before the consumer's last switch point, evicted or
    /// too old are counted as misses.
    pub fn handle_nack(
        &mut self,
        now: Instant,
        consumer: ConsumerId,
        lost: impl IntoIterator<Item = u16>,
        mut out: impl FnMut(ConsumerId, &[u8]),
    ) -> Result<usize, RouterError> {
        let Router {
            producers,
            consumers,
            scratch,
            stats,
            ..
        } = self;
        let c = consumers
            .get_mut(consumer)
            .ok_or(RouterError::UnknownConsumer)?;
        let p = c.producer.and_then(|p| producers.get(p));
        let mut n = 0;
        for out_seq in lost {
            let hit = p.and_then(|p| {
                let seq = c.rewriter.original_seq(out_seq)?;
                let bytes = p.cache.get(now, seq)?;
                let rtp = RtpPacket::parse(bytes).ok()?;
                let pt = c.payload_map.get(rtp.payload_type())?;
                let rw = c.rewriter.rewrite_retransmission(
                    rtp.ssrc(),
                    rtp.sequence(),
                    rtp.timestamp(),
                )?;
                Some((bytes, rw, pt))
            });
            match hit {
                Some((bytes, rw, pt)) if !c.paused => {
                    scratch.clear();
                    emit_into(scratch, bytes, rw, pt);
                    out(consumer, scratch);
                    n += 1;
                }
                _ => stats.nack_misses += 1,
            }
        }
        stats.retransmitted += n as u64;
        Ok(n)
    }

    /// Handles a compound RTCP packet received from `consumer`'s subscriber: PLI and FIR
    /// become keyframe requests, NACKs are answered through `out`; other packets are
    /// ignored here. A malformed packet is counted; the packets before it still count.
    pub fn handle_consumer_rtcp(
        &mut self,
        now: Instant,
        consumer: ConsumerId,
        buf: &[u8],
        mut out: impl FnMut(ConsumerId, &[u8]),
    ) -> Result<(), RouterError> {
        self.consumer(consumer)?;
        for pkt in RtcpCompound::new(buf) {
            match pkt {
                Ok(RtcpPacket::Pli { .. } | RtcpPacket::Fir(_)) => {
                    self.request_keyframe(now, consumer)?;
                }
                Ok(RtcpPacket::Nack(nack)) => {
                    self.handle_nack(now, consumer, nack.lost(), &mut out)?;
                }
                Ok(_) => {}
                Err(e) => {
                    self.stats.malformed += 1;
                    return Err(RouterError::Malformed(e));
                }
            }
        }
        Ok(())
    }

    /// The next action for the transport, if any.
    pub fn poll_event(&mut self) -> Option<RouterEvent> {
        self.events.pop_front()
    }

    /// The earliest deadline at which [`handle_timeout`](Self::handle_timeout) must be
    /// called, and why.
    pub fn poll_timeout(&self) -> Option<(Instant, TimeoutReason)> {
        self.producers
            .iter()
            .filter_map(|(id, p)| {
                p.keyframe
                    .poll_timeout()
                    .map(|t| (t, TimeoutReason::KeyframeRequest(id)))
            })
            .min_by_key(|(t, _)| *t)
    }

    /// Advances time: deferred keyframe requests that are due become events.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (id, p) in self.producers.iter_mut() {
            if p.keyframe.handle_timeout(now) {
                self.stats.keyframe_requests_sent += 1;
                self.events.push_back(RouterEvent::RequestKeyframe(id));
            }
        }
    }
}
