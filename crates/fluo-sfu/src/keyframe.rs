//! Keyframes: request throttling, and telling a keyframe's first packet from its payload.
//!
//! Every consumer that joins, resumes or receives a PLI/FIR from its subscriber wants a
//! keyframe from the producer. A producer asked a thousand times in a row would spend its
//! whole bitrate on keyframes, so [`KeyframeThrottle`] lets at most one request through per
//! interval: the first request of a quiet period goes out at once; requests inside the
//! window set a *pending* flag, and the pending request goes out when the window ends.
//!
//! ```text
//! interval 500 ms
//! t=0 ms     request  -> sent now            (window until 500 ms)
//! t=1..10 ms requests -> pending             (poll_timeout() = 500 ms)
//! t=500 ms   timeout  -> sent (the deferred)  (window until 1000 ms)
//! t=1000 ms  timeout  -> nothing pending, nothing sent
//! ```
//!
//! Time is passed in; the throttle never reads the clock.
//!
//! [`starts_keyframe`] reads an RTP payload's codec header: whether the packet begins a
//! keyframe (VP8, VP9, H.264, AV1), so that a sink switched to another source can wait for
//! one.

use crate::descriptor;
use crate::port::CodecName;
use std::time::{Duration, Instant};

/// Whether an RTP payload of `codec` begins a keyframe: `Some(true)` for the first packet of
/// a VP8 or VP9 key frame, an H.264 IDR picture (or its SPS) or an AV1 coded video sequence
/// (its aggregation header's N bit, or a sequence header OBU first), `Some(false)` for any
/// other packet of those codecs (malformed ones included), `None` for codecs it cannot tell
/// (audio, H.263).
pub fn starts_keyframe(codec: CodecName, payload: &[u8]) -> Option<bool> {
    match codec {
        CodecName::Vp8 => Some(vp8_starts_keyframe(payload)),
        CodecName::Vp9 => Some(vp9_starts_keyframe(payload)),
        CodecName::H264 => Some(h264_starts_keyframe(payload)),
        CodecName::Av1 => Some(descriptor::av1_begins_sequence(payload)),
        _ => None,
    }
}

/// RFC 7741: the payload descriptor, then (at the start of partition 0) the VP8 frame tag,
/// whose lowest bit is 0 on a key frame.
fn vp8_starts_keyframe(p: &[u8]) -> bool {
    descriptor::vp8(p)
        .filter(|d| d.begins_frame)
        .and_then(|d| p.get(d.end))
        .is_some_and(|tag| tag & 0x01 == 0)
}

/// RFC 9628: the payload descriptor's P bit (inter-picture predicted) is clear on a key
/// frame; B marks the frame's first packet.
fn vp9_starts_keyframe(p: &[u8]) -> bool {
    p.first().is_some_and(|b| b & 0x40 == 0 && b & 0x08 != 0)
}

/// RFC 6184: a single NAL unit, a STAP-A holding one, or the first fragment of an FU-A, of
/// type 5 (IDR slice) or 7 (SPS, sent before an IDR).
fn h264_starts_keyframe(p: &[u8]) -> bool {
    let key = |t: u8| t == 5 || t == 7;
    let Some(&b0) = p.first() else {
        return false;
    };
    match b0 & 0x1f {
        24 => descriptor::stap_a(p).any(|nal| nal.first().is_some_and(|h| key(h & 0x1f))),
        28 => p.get(1).is_some_and(|h| h & 0x80 != 0 && key(h & 0x1f)),
        t => key(t),
    }
}

/// Default minimum spacing of keyframe requests to one producer.
pub const DEFAULT_KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// Lets through at most one keyframe request per interval, deferring one more.
#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    interval: Duration,
    last_sent: Option<Instant>,
    pending: bool,
}

impl Default for KeyframeThrottle {
    fn default() -> Self {
        Self::new(DEFAULT_KEYFRAME_INTERVAL)
    }
}

impl KeyframeThrottle {
    /// A throttle with the given minimum spacing between requests sent.
    pub fn new(interval: Duration) -> Self {
        KeyframeThrottle {
            interval,
            last_sent: None,
            pending: false,
        }
    }

    /// The configured interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether a request is waiting for the window to end.
    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// Records a request at `now`; returns `true` if the request must be sent now.
    pub fn handle_request(&mut self, now: Instant) -> bool {
        match self.last_sent {
            Some(t) if now < t + self.interval => {
                self.pending = true;
                false
            }
            _ => {
                self.last_sent = Some(now);
                self.pending = false;
                true
            }
        }
    }

    /// A keyframe came: a request still pending is answered by it and goes nowhere.
    pub fn satisfied(&mut self) {
        self.pending = false;
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, if a request is
    /// pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.pending, self.last_sent) {
            (true, Some(t)) => Some(t + self.interval),
            _ => None,
        }
    }

    /// Advances time; returns `true` if the deferred request must be sent now.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        match self.poll_timeout() {
            Some(deadline) if now >= deadline => {
                self.pending = false;
                self.last_sent = Some(now);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframes_are_told_from_the_payload_header() {
        use CodecName::*;
        // VP8: S=1 PID=0, frame tag bit 0 clear; with X, I (15-bit picture id), L and T/K.
        assert_eq!(starts_keyframe(Vp8, &[0x10, 0x00]), Some(true));
        assert_eq!(starts_keyframe(Vp8, &[0x10, 0x01]), Some(false));
        assert_eq!(
            starts_keyframe(Vp8, &[0x00, 0x00]),
            Some(false),
            "not a partition start"
        );
        let ext = [0x90, 0xf0, 0x80, 0x01, 0x05, 0x20, 0x10, 0x02, 0x00, 0x9d];
        assert_eq!(starts_keyframe(Vp8, &ext), Some(true));
        let mut inter = ext;
        inter[6] = 0x31;
        assert_eq!(starts_keyframe(Vp8, &inter), Some(false));
        assert_eq!(starts_keyframe(Vp8, &ext[..4]), Some(false), "truncated");
        assert_eq!(starts_keyframe(Vp8, &[]), Some(false));
        // VP9: B set, P clear.
        assert_eq!(starts_keyframe(Vp9, &[0x08]), Some(true));
        assert_eq!(starts_keyframe(Vp9, &[0x48]), Some(false));
        assert_eq!(starts_keyframe(Vp9, &[0x00]), Some(false));
        // H.264: IDR, SPS, a non-IDR slice, STAP-A with an SPS, FU-A start / middle of an IDR.
        assert_eq!(starts_keyframe(H264, &[0x65, 0x88]), Some(true));
        assert_eq!(starts_keyframe(H264, &[0x67, 0x42]), Some(true));
        assert_eq!(starts_keyframe(H264, &[0x41, 0x9a]), Some(false));
        let stap = [0x78, 0x00, 0x02, 0x09, 0xf0, 0x00, 0x02, 0x67, 0x42];
        assert_eq!(starts_keyframe(H264, &stap), Some(true));
        assert_eq!(starts_keyframe(H264, &stap[..6]), Some(false));
        assert_eq!(starts_keyframe(H264, &[0x7c, 0x85, 0x00]), Some(true));
        assert_eq!(starts_keyframe(H264, &[0x7c, 0x05, 0x00]), Some(false));
        assert_eq!(starts_keyframe(H264, &[0x7c, 0x81, 0x00]), Some(false));
        // AV1: N set, or a sequence header OBU (type 1) first; a frame OBU (type 6) is not.
        assert_eq!(starts_keyframe(Av1, &[0x18, 0x32]), Some(true));
        assert_eq!(starts_keyframe(Av1, &[0x10, 0x0a, 0x00]), Some(true));
        assert_eq!(starts_keyframe(Av1, &[0x10, 0x32, 0x00]), Some(false));
        assert_eq!(starts_keyframe(Av1, &[]), Some(false));
        // Codecs it cannot tell.
        assert_eq!(starts_keyframe(Opus, &[0x10, 0x00]), None);
        assert_eq!(starts_keyframe(H263, &[0x10, 0x00]), None);
    }

    #[test]
    fn thousand_requests_in_10ms_give_one_now_and_one_deferred() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::default();
        let mut sent = 0;
        for i in 0..1000u64 {
            let now = t0 + Duration::from_micros(i * 10);
            sent += usize::from(k.handle_request(now));
            sent += usize::from(k.handle_timeout(now));
        }
        assert_eq!(sent, 1);
        let deadline = k.poll_timeout().unwrap();
        assert_eq!(deadline, t0 + Duration::from_millis(500));
        assert!(!k.handle_timeout(deadline - Duration::from_millis(1)));
        assert!(k.handle_timeout(deadline));
        assert_eq!(k.poll_timeout(), None);
        assert!(!k.handle_timeout(t0 + Duration::from_secs(5)));
    }

    #[test]
    fn spaced_requests_all_pass() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(Duration::from_millis(100));
        for i in 0..10u64 {
            assert!(k.handle_request(t0 + Duration::from_millis(100 * i)));
        }
        assert_eq!(k.poll_timeout(), None);
    }

    #[test]
    fn deferred_send_opens_a_new_window() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(Duration::from_millis(100));
        assert!(k.handle_request(t0));
        assert!(!k.handle_request(t0 + Duration::from_millis(50)));
        assert!(k.handle_timeout(t0 + Duration::from_millis(120)));
        // the window now runs from 120 ms
        assert!(!k.handle_request(t0 + Duration::from_millis(150)));
        assert_eq!(k.poll_timeout(), Some(t0 + Duration::from_millis(220)));
    }
}
