//! An RtpEndpoint's RTCP: what it counts of each media, the reports it sends (a sender report
//! for what it sends, report blocks for what it receives, as RFC 3550 asks of any RTP
//! endpoint) and reads (the peer's reports: loss, round trip; its first one makes the media
//! state CONNECTED, as with KMS), and getStats in Kurento's shapes.

use fluo_core::StatsQuery;
use fluo_sfu::rtcp::{ReportBlock, RtcpCompound, RtcpPacket};
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often reports are sent (RFC 3550's 5 s minimum, halved as for a small session with
/// reduced minimum; browsers and gst-launch's rtpbin send about this often).
pub(super) const REPORT_EVERY: Duration = Duration::from_millis(2500);

/// How long without a report from the peer before the media state is DISCONNECTED again
/// (five report intervals of 5 s).
pub(super) const REPORT_TIMEOUT: Duration = Duration::from_secs(25);

/// The CNAME in our reports.
const CNAME: &[u8] = b"fluo";

/// One media of an endpoint: both directions.
#[derive(Debug, Default, Clone)]
pub(super) struct MediaStats {
    pub in_ssrc: u32,
    pub in_packets: u64,
    pub in_bytes: u64,
    /// Extended sequence numbers of the incoming stream: first and highest.
    seq: Option<(u64, u64)>,
    /// Packets of the current incoming stream, and (expected, received) at our last report.
    stream_packets: u64,
    prior: (u64, u64),
    /// RFC 3550 interarrival jitter, in timestamp units, the last transit time, and the
    /// instant arrival times count from.
    jitter: f64,
    transit: Option<i64>,
    epoch: Option<Instant>,
    /// The 8-bit fraction lost in our last report.
    fraction: u8,
    /// The peer's last sender report: the middle of its NTP time, when it arrived.
    peer_sr: Option<(u32, Instant)>,
    pub plis_sent: u64,
    pub out_packets: u64,
    pub out_bytes: u64,
    /// The last RTP timestamp sent and when (for our sender report's timestamp).
    last_sent: Option<(u32, Instant)>,
    /// The peer's last report block on our stream, and the round trip it gave.
    peer_block: Option<ReportBlock>,
    rtt: Option<Duration>,
    pub plis_received: u64,
    pub firs_received: u64,
    pub nacks_received: u64,
    /// When we last sent a report, and the bytes sent then; the rate sent since the one
    /// before (bps).
    pub reported_at: Option<Instant>,
    rate_mark: Option<(Instant, u64)>,
    out_rate: f64,
    /// SDES-SRTP is on: the peer's packets dropped because they did not authenticate (or
    /// were not SRTP at all) and because they were replays.
    pub srtp: bool,
    pub srtp_auth_failures: u64,
    pub srtp_replays: u64,
}

/// 64-bit NTP time now.
fn ntp_now() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() + 2_208_988_800;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

fn mid32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

impl MediaStats {
    /// An RTP packet arrived at `now` (sequence `seq`, timestamp `ts` at `clock` Hz).
    pub fn received(&mut self, now: Instant, p: (u32, u16, u32, usize), clock: u32) {
        let (ssrc, seq, ts, bytes) = p;
        let epoch = *self.epoch.get_or_insert(now);
        if ssrc != self.in_ssrc || self.seq.is_none() {
            self.in_ssrc = ssrc;
            self.seq = None;
            self.stream_packets = 0;
            self.prior = (0, 0);
            self.transit = None;
        }
        self.in_packets += 1;
        self.in_bytes += bytes as u64;
        self.stream_packets += 1;
        let ext = match self.seq {
            None => u64::from(seq) + 0x1_0000,
            Some((_, max)) => {
                // The extended value nearest to the highest seen.
                let cand = (max & !0xffff) | u64::from(seq);
                if cand + 0x8000 < max {
                    cand + 0x1_0000
                } else if cand > max + 0x8000 && cand >= 0x1_0000 {
                    cand - 0x1_0000
                } else {
                    cand
                }
            }
        };
        self.seq = Some(match self.seq {
            None => (ext, ext),
            Some((first, max)) => (first.min(ext), max.max(ext)),
        });
        let arrival =
            (now.saturating_duration_since(epoch).as_secs_f64() * f64::from(clock)) as i64;
        let transit = arrival - i64::from(ts);
        if let Some(prev) = self.transit {
            let d = (transit - prev).abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }

    /// Packets lost so far (RFC 3550: expected minus received).
    fn lost(&self) -> i64 {
        self.seq.map_or(0, |(first, max)| {
            (max - first + 1).saturating_sub(self.stream_packets) as i64
        })
    }

    /// A packet was sent (RTP timestamp `ts`, `bytes` of payload).
    pub fn sent(&mut self, now: Instant, ts: u32, bytes: usize) {
        self.out_packets += 1;
        self.out_bytes += bytes as u64;
        self.last_sent = Some((ts, now));
    }

    /// Our report for this media: a sender report when we send, else a receiver report, with
    /// a block on the peer's stream when it sends; then our CNAME. `None` when there is
    /// nothing to report yet.
    pub fn report(&mut self, now: Instant, ssrc: u32, clock: u32) -> Option<Vec<u8>> {
        let block = self.seq.map(|(first, max)| {
            let expected = max - first + 1;
            let (e0, r0) = self.prior;
            let (de, dr) = (expected - e0, self.stream_packets.saturating_sub(r0));
            self.prior = (expected, self.stream_packets);
            let fraction = if de > 0 && de > dr {
                (((de - dr) << 8) / de).min(255) as u8
            } else {
                0
            };
            self.fraction = fraction;
            let lost = self.lost().clamp(-0x80_0000, 0x7f_ffff) as i32;
            let (lsr, dlsr) = self.peer_sr.map_or((0, 0), |(lsr, at)| {
                let d = now.saturating_duration_since(at).as_secs_f64() * 65536.0;
                (lsr, d as u32)
            });
            let mut b = Vec::with_capacity(24);
            b.extend_from_slice(&self.in_ssrc.to_be_bytes());
            b.push(fraction);
            b.extend_from_slice(&(lost as u32).to_be_bytes()[1..]);
            b.extend_from_slice(&(max as u32).to_be_bytes());
            b.extend_from_slice(&(self.jitter as u32).to_be_bytes());
            b.extend_from_slice(&lsr.to_be_bytes());
            b.extend_from_slice(&dlsr.to_be_bytes());
            b
        });
        let sending = self.last_sent.is_some();
        if !sending && block.is_none() {
            return None;
        }
        let count = u8::from(block.is_some());
        let mut out = vec![];
        if let Some((ts, at)) = self.last_sent {
            let since = now.saturating_duration_since(at).as_secs_f64() * f64::from(clock);
            let ntp = ntp_now();
            out.extend_from_slice(&[0x80 | count, 200]);
            out.extend_from_slice(&(6 + 6 * u16::from(count)).to_be_bytes());
            out.extend_from_slice(&ssrc.to_be_bytes());
            out.extend_from_slice(&ntp.to_be_bytes());
            out.extend_from_slice(&ts.wrapping_add(since as u32).to_be_bytes());
            out.extend_from_slice(&(self.out_packets as u32).to_be_bytes());
            out.extend_from_slice(&(self.out_bytes as u32).to_be_bytes());
        } else {
            out.extend_from_slice(&[0x80 | count, 201]);
            out.extend_from_slice(&(1 + 6 * u16::from(count)).to_be_bytes());
            out.extend_from_slice(&ssrc.to_be_bytes());
        }
        out.extend(block.unwrap_or_default());
        // SDES: one chunk, CNAME, end, padded to 32 bits.
        let mut chunk = ssrc.to_be_bytes().to_vec();
        chunk.extend_from_slice(&[1, CNAME.len() as u8]);
        chunk.extend_from_slice(CNAME);
        chunk.push(0);
        while !chunk.len().is_multiple_of(4) {
            chunk.push(0);
        }
        out.extend_from_slice(&[0x81, 202]);
        out.extend_from_slice(&((chunk.len() / 4) as u16).to_be_bytes());
        out.extend(chunk);
        self.reported_at = Some(now);
        if let Some((t, bytes)) = self.rate_mark {
            let secs = now.saturating_duration_since(t).as_secs_f64();
            if secs > 0.0 {
                self.out_rate = (self.out_bytes - bytes) as f64 * 8.0 / secs;
            }
        }
        self.rate_mark = Some((now, self.out_bytes));
        Some(out)
    }

    /// The peer's RTCP on this media: its reports (on our stream `ssrc`) and feedback. Returns
    /// (a report arrived, a goodbye arrived).
    pub fn peer_rtcp(&mut self, now: Instant, ssrc: u32, bytes: &[u8]) -> (bool, bool) {
        let (mut report, mut bye) = (false, false);
        let mut blocks = vec![];
        for p in RtcpCompound::new(bytes).flatten() {
            match p {
                RtcpPacket::SenderReport(sr) => {
                    report = true;
                    self.peer_sr = Some((mid32(sr.ntp_time()), now));
                    blocks.extend(sr.reports());
                }
                RtcpPacket::ReceiverReport(rr) => {
                    report = true;
                    blocks.extend(rr.reports());
                }
                RtcpPacket::Bye(_) => bye = true,
                RtcpPacket::Pli { .. } => self.plis_received += 1,
                RtcpPacket::Fir(_) => self.firs_received += 1,
                RtcpPacket::Nack(_) => self.nacks_received += 1,
                _ => {}
            }
        }
        if let Some(b) = blocks.into_iter().find(|b| b.ssrc == ssrc) {
            if b.last_sr != 0 {
                let a = mid32(ntp_now());
                let rtt = a
                    .wrapping_sub(b.last_sr)
                    .wrapping_sub(b.delay_since_last_sr);
                // A negative difference (clock steps) wraps to a huge value: not a round trip.
                if rtt < 65536 * 10 {
                    self.rtt = Some(Duration::from_secs_f64(f64::from(rtt) / 65536.0));
                }
            }
            self.peer_block = Some(b);
        }
        (report, bye)
    }

    /// This media's inbound and outbound entries, as KMS's RTP endpoints report them.
    /// (No transport entry: as with KMS, `transportId` is empty.)
    pub fn entries(
        &self,
        q: &StatsQuery<'_>,
        out: &mut Map<String, Value>,
        short: &str,
        media: &str,
        (our_ssrc, clock): (u32, u32),
    ) {
        let transport = "";
        let id = |dir: &str| format!("{short}_{dir}_{}", media.to_lowercase());
        let dropped = self.srtp_auth_failures + self.srtp_replays;
        if self.in_packets > 0 || dropped > 0 {
            let mut v = q.rtp_entry(&id("in"), true, self.in_ssrc, media, transport);
            v["packetsReceived"] = json!(self.in_packets);
            v["bytesReceived"] = json!(self.in_bytes);
            v["packetsLost"] = json!(self.lost());
            v["fractionLost"] = json!(f64::from(self.fraction));
            v["jitter"] = json!(if clock > 0 {
                self.jitter / f64::from(clock)
            } else {
                0.0
            });
            v["pliCount"] = json!(self.plis_sent);
            v["firCount"] = json!(0);
            v["nackCount"] = json!(0);
            v["remb"] = json!(0);
            if self.srtp {
                // Fluo's: what SRTP refused (KMS's stats have no such counters).
                v["srtpAuthFailures"] = json!(self.srtp_auth_failures);
                v["srtpReplays"] = json!(self.srtp_replays);
            }
            out.insert(id("in"), v);
        }
        if self.out_packets > 0 {
            let mut v = q.rtp_entry(&id("out"), false, our_ssrc, media, transport);
            let b = self.peer_block;
            v["packetsSent"] = json!(self.out_packets);
            v["bytesSent"] = json!(self.out_bytes);
            v["packetsLost"] = json!(b.map_or(0, |b| b.cumulative_lost));
            v["fractionLost"] = json!(b.map_or(0.0, |b| f64::from(b.fraction_lost)));
            v["roundTripTime"] = json!(self.rtt.map_or(0.0, |r| r.as_secs_f64()));
            v["targetBitrate"] = json!(self.out_rate);
            v["pliCount"] = json!(self.plis_received);
            v["firCount"] = json!(self.firs_received);
            v["nackCount"] = json!(self.nacks_received);
            v["remb"] = json!(0);
            out.insert(id("out"), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_carry_what_was_received_and_sent_and_the_peers_give_the_round_trip() {
        let now = Instant::now();
        let mut m = MediaStats::default();
        for seq in (1u16..=10).filter(|s| *s != 5) {
            m.received(now, (77, seq, u32::from(seq) * 3000, 100), 90_000);
        }
        assert_eq!(m.lost(), 1);
        // Receiving only: a receiver report with a block on the peer's stream, and our CNAME.
        let rr = m.report(now, 42, 90_000).expect("a report");
        let packets: Vec<_> = RtcpCompound::new(&rr).collect::<Result<_, _>>().unwrap();
        let RtcpPacket::ReceiverReport(r) = packets[0] else {
            panic!("{packets:?}")
        };
        let b = r.reports().next().unwrap();
        assert_eq!((r.ssrc(), b.ssrc, b.cumulative_lost), (42, 77, 1));
        assert_eq!(b.fraction_lost, 25, "1 of 10: 25/256");
        assert_eq!(b.highest_seq & 0xffff, 10);
        assert!(matches!(packets[1], RtcpPacket::Sdes(_)));
        // Sending too: a sender report counting what was sent.
        m.sent(now, 90_000, 500);
        m.sent(now, 93_000, 500);
        let sr = m.report(now, 42, 90_000).unwrap();
        let Some(Ok(RtcpPacket::SenderReport(s))) = RtcpCompound::new(&sr).next() else {
            panic!("a sender report first")
        };
        assert_eq!(
            (s.packet_count(), s.octet_count(), s.rtp_time()),
            (2, 1000, 93_000)
        );
        assert_eq!(
            s.reports().next().unwrap().fraction_lost,
            0,
            "nothing lost since"
        );
        // The peer's receiver report on our stream: sent 100 ms after our report, held 0 s.
        let lsr = mid32(ntp_now()).wrapping_sub(6554);
        let mut rr = vec![0x81, 201, 0, 7];
        rr.extend_from_slice(&77u32.to_be_bytes());
        rr.extend_from_slice(&42u32.to_be_bytes());
        rr.extend_from_slice(&[3, 0, 0, 2]);
        rr.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0]);
        rr.extend_from_slice(&lsr.to_be_bytes());
        rr.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(m.peer_rtcp(now, 42, &rr), (true, false));
        let rtt = m.rtt.unwrap().as_secs_f64();
        assert!((0.09..0.2).contains(&rtt), "{rtt}");
        let b = m.peer_block.unwrap();
        assert_eq!((b.fraction_lost, b.cumulative_lost), (3, 2));
        // Garbage is no report.
        assert_eq!(
            m.peer_rtcp(now, 42, &[0x80, 201, 0xff, 0xff]),
            (false, false)
        );
    }
}
