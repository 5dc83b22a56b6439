//! `--pacing FACTOR[:BURST_MS]`: the publisher's video leaves as a browser's pacer lets it out,
//! instead of each frame's packets at one instant (the default, "burst").
//!
//! libwebrtc's pacer (`PacingController`) is a leaky bucket over the bytes of the payloads it
//! sends: each packet sent adds its size to a debt that drains at the pacing rate, FACTOR
//! (`kDefaultPaceMultiplier`, 2.5) times the target bitrate. A packet leaves while the debt
//! drains within the *burst interval* (`send_burst_interval`); once it does not, the next
//! one waits until the debt has drained. Without a burst interval (libwebrtc before it had
//! one, and `--pacing 2.5`), a 1188-byte packet at 2.5 x 939 kbit/s leaves every 4.05 ms, so
//! a four-packet frame is spread over 12.2 ms. Chromium sets the burst interval to 40 ms
//! (`pacer_burst_interval` in blink's RTCPeerConnectionHandler; `--pacing 2.5:40`): at that
//! rate 11.7 KB leave at once, more than any of the feed's delta frames (4748 bytes at
//! most), so Chromium sends them as bursts too and spreads only the keyframe. Audio is not
//! paced (libwebrtc leaves it out unless `WebRTC-Pacer-BlockAudio`), nor counted in the debt
//! (libwebrtc counts it when the audio has transport-wide sequence numbers: not modelled).
//! libwebrtc's rate is FACTOR times its congestion controller's target, not the encoder's
//! output: this model takes the feed's average, as if the target were exactly what the
//! encoder made of it (a higher estimate paces faster, with larger bursts).
//! The debt is capped at 500 ms of sending (`kMaxDebtInTime`) and a burst at 63 000 bytes
//! (`kMaxBurstSize`), as libwebrtc's are.
//!
//! The publisher logs a frame's send time when its last packet is written, so the pacer's
//! own delay is not in the latency measured: only what follows the send call.

use serde_json::{json, Value};
use std::time::Duration;

/// libwebrtc's cap on the debt, as time at the pacing rate.
const MAX_DEBT: Duration = Duration::from_millis(500);
/// libwebrtc's cap on the bytes of one burst.
const MAX_BURST_BYTES: f64 = 63_000.0;

/// How the publisher's video is paced (`--pacing`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    /// The pacing rate as a multiple of the video's bitrate (libwebrtc: 2.5).
    pub factor: f64,
    /// The debt that may build up before packets wait, as time at the pacing rate
    /// (libwebrtc's send burst interval; Chromium: 40 ms). Zero: a packet waits until the
    /// debt of those before it has drained.
    pub burst: Duration,
}

impl Pacing {
    /// `FACTOR` or `FACTOR:BURST_MS`.
    pub fn parse(s: &str) -> Result<Pacing, String> {
        let bad = || format!("bad --pacing {s} (FACTOR[:BURST_MS], e.g. 2.5 or 2.5:40)");
        let (f, b) = match s.split_once(':') {
            Some((f, b)) => (f, Some(b)),
            None => (s, None),
        };
        let factor = f
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.1 && *x <= 100.0)
            .ok_or_else(bad)?;
        let burst = match b {
            Some(b) => b
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0 && *x <= 1000.0)
                .map(|ms| Duration::from_secs_f64(ms / 1e3))
                .ok_or_else(bad)?,
            None => Duration::ZERO,
        };
        Ok(Pacing { factor, burst })
    }

    /// The pacer for video of `video_bps` (its payloads' bitrate).
    pub fn pacer(&self, video_bps: f64) -> Pacer {
        Pacer::new(self.factor * video_bps, self.burst)
    }

    /// For the results file and the tables: `None` is the burst publisher.
    pub fn describe(p: Option<Pacing>, video_bps: f64) -> (Value, String) {
        match p {
            None => (
                json!({"mode": "burst"}),
                "publisher: burst (each video frame's packets written at one instant)".into(),
            ),
            Some(p) => {
                let rate = p.factor * video_bps;
                (
                    json!({"mode": "paced", "factor": p.factor,
                           "burst_ms": p.burst.as_secs_f64() * 1e3,
                           "rate_bps": rate, "video_payload_bps": video_bps}),
                    format!(
                        "publisher: paced (--pacing {}:{}), video at {:.2} x {:.0} kbit/s = {:.0} kbit/s of payload, burst interval {:.0} ms, audio unpaced; latency from the send call of a frame's last packet",
                        p.factor,
                        p.burst.as_secs_f64() * 1e3,
                        p.factor,
                        video_bps / 1e3,
                        rate / 1e3,
                        p.burst.as_secs_f64() * 1e3
                    ),
                )
            }
        }
    }
}

/// libwebrtc's leaky bucket over the video payloads, in time from the start of the replay.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Bytes per second.
    rate: f64,
    /// Debt below which a packet leaves at once (bytes).
    allowance: f64,
    /// Bytes sent and not yet drained, at `at`.
    debt: f64,
    /// The last send.
    at: Duration,
}

impl Pacer {
    /// A pacer of `bps` bits per second with a burst interval of `burst`.
    pub fn new(bps: f64, burst: Duration) -> Pacer {
        let rate = (bps / 8.0).max(1.0);
        Pacer {
            rate,
            allowance: (rate * burst.as_secs_f64()).min(MAX_BURST_BYTES),
            debt: 0.0,
            at: Duration::ZERO,
        }
    }

    /// When a packet of `size` bytes, ready at `ready`, leaves. Packets leave in the order
    /// they are given, none before the one given before it: at once while the debt is
    /// within the allowance (none at all without a burst interval), otherwise once the debt
    /// has drained.
    pub fn schedule(&mut self, ready: Duration, size: usize) -> Duration {
        let mut t = ready.max(self.at);
        let drained = self.rate * (t - self.at).as_secs_f64();
        self.debt = (self.debt - drained).max(0.0);
        if self.debt > 0.0 && self.debt >= self.allowance {
            t += Duration::from_secs_f64(self.debt / self.rate);
            self.debt = 0.0;
        }
        self.at = t;
        self.debt = (self.debt + size as f64).min(self.rate * MAX_DEBT.as_secs_f64());
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(x: f64) -> Duration {
        Duration::from_secs_f64(x / 1e3)
    }

    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) < Duration::from_micros(2)
    }

    /// 1200-byte packets at 2.4 Mbit/s: one every 4 ms.
    const BPS: f64 = 2_400_000.0;

    #[test]
    fn without_a_burst_interval_a_frames_packets_leave_one_drain_apart() {
        let mut p = Pacer::new(BPS, Duration::ZERO);
        let sent: Vec<Duration> = (0..4).map(|_| p.schedule(ms(0.0), 1200)).collect();
        for (s, want) in sent.iter().zip([0.0, 4.0, 8.0, 12.0]) {
            assert!(close(*s, ms(want)), "{sent:?}");
        }
        // The next frame, 33.3 ms later, finds the debt drained: its first packet leaves at
        // once, the others spread again.
        let next: Vec<Duration> = (0..2).map(|_| p.schedule(ms(33.3), 1200)).collect();
        assert!(
            close(next[0], ms(33.3)) && close(next[1], ms(37.3)),
            "{next:?}"
        );
    }

    #[test]
    fn a_packet_ready_after_the_debt_drained_is_not_held() {
        let mut p = Pacer::new(BPS, Duration::ZERO);
        assert_eq!(p.schedule(ms(10.0), 1200), ms(10.0));
        // Half drained: it waits for the rest.
        assert!(close(p.schedule(ms(12.0), 600), ms(14.0)));
        // A small packet waits for the debt of those before it, not for its own.
        assert!(close(p.schedule(ms(14.0), 300), ms(16.0)));
        assert!(close(p.schedule(ms(30.0), 1200), ms(30.0)));
    }

    #[test]
    fn never_before_the_packet_given_before_it() {
        let mut p = Pacer::new(BPS, Duration::ZERO);
        let a = p.schedule(ms(5.0), 1200);
        let b = p.schedule(ms(1.0), 1200);
        assert!(b >= a && close(b, ms(9.0)), "{a:?} {b:?}");
    }

    #[test]
    fn with_chromiums_burst_interval_a_delta_frame_leaves_at_once() {
        // Chromium: 40 ms at 2.5 x 939 kbit/s is 11.7 KB; a 4-packet frame is 4.8 KB.
        let mut p = Pacing::parse("2.5:40").unwrap().pacer(939_000.0);
        for _ in 0..4 {
            assert_eq!(p.schedule(ms(0.0), 1188), ms(0.0));
        }
        for _ in 0..5 {
            assert_eq!(p.schedule(ms(33.3), 1188), ms(33.3));
        }
    }

    #[test]
    fn with_a_burst_interval_a_keyframe_goes_in_bursts_with_drains_between() {
        // 40 ms at 2.4 Mbit/s = 12 000 bytes: ten 1200-byte packets at once, then the 11th
        // waits for the whole debt to drain (40 ms), then ten more at once.
        let mut p = Pacer::new(BPS, ms(40.0));
        let sent: Vec<Duration> = (0..21).map(|_| p.schedule(ms(0.0), 1200)).collect();
        assert!(sent[..10].iter().all(|s| *s == ms(0.0)), "{sent:?}");
        assert!(sent[10..20].iter().all(|s| close(*s, ms(40.0))), "{sent:?}");
        assert!(close(sent[20], ms(80.0)), "{sent:?}");
    }

    #[test]
    fn the_debt_is_capped_at_half_a_second() {
        let mut p = Pacer::new(BPS, Duration::ZERO);
        // 1 MB at once: capped at 500 ms of sending (150 000 bytes).
        p.schedule(ms(0.0), 1_000_000);
        assert!(close(p.schedule(ms(0.0), 1200), ms(500.0)));
    }

    #[test]
    fn parses_factor_and_burst() {
        assert_eq!(
            Pacing::parse("2.5"),
            Ok(Pacing {
                factor: 2.5,
                burst: Duration::ZERO
            })
        );
        assert_eq!(Pacing::parse("2.5:40").map(|p| p.burst), Ok(ms(40.0)));
        for bad in [
            "", "0", "-1", "abc", "2.5:", "2.5:-3", "2.5:x", "inf", "NaN:1",
        ] {
            assert!(Pacing::parse(bad).is_err(), "{bad}");
        }
        let (v, line) = Pacing::describe(Pacing::parse("2.5").ok(), 900_000.0);
        assert_eq!(v["rate_bps"], json!(2_250_000.0));
        assert!(line.contains("2250 kbit/s"), "{line}");
        assert_eq!(Pacing::describe(None, 1.0).0["mode"], json!("burst"));
    }
}
