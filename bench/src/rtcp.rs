//! The RTCP a receive-only viewer sends and reads (RFC 3550, RFC 4585): receiver reports
//! with the statistics of RFC 3550 appendix A.3 and A.8, an SDES CNAME, generic NACKs, PLIs;
//! and the sender reports of the server, for the report blocks' LSR / DLSR.

/// Receive statistics of one media stream (RFC 3550 A.3, A.8), by extended sequence number.
#[derive(Debug, Clone, Default)]
pub struct RecvStats {
    base: Option<u64>,
    pub max: u64,
    /// Distinct packets received (repaired ones included, duplicates not).
    pub received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Interarrival jitter in timestamp units (A.8), scaled by 16 as the RFC's integer form.
    jitter16: u64,
    transit: Option<i64>,
}

/// One report block of a receiver report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction: u8,
    /// Cumulative packets lost, clamped to 24 bits signed.
    pub lost: i32,
    pub ext_max: u32,
    pub jitter: u32,
    pub lsr: u32,
    pub dlsr: u32,
}

impl RecvStats {
    /// A packet with extended sequence number `ext`, seen for the first time.
    pub fn record(&mut self, ext: u64) {
        let base = *self.base.get_or_insert(ext);
        if ext < base {
            self.base = Some(ext);
        }
        if self.received == 0 || ext > self.max {
            self.max = ext;
        }
        self.received += 1;
    }

    /// The jitter update of a packet that was not a retransmission: `arrival` in the
    /// stream's clock units, `ts` its RTP timestamp.
    pub fn jitter_sample(&mut self, arrival: u32, ts: u32) {
        let transit = i64::from(arrival.wrapping_sub(ts) as i32);
        if let Some(prev) = self.transit {
            let d = (transit - prev).unsigned_abs();
            // J += (|D| - J) / 16, kept as 16 J.
            self.jitter16 = self.jitter16 + d - ((self.jitter16 + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// The report block for this interval, and the start of the next one.
    pub fn report(&mut self, ssrc: u32, lsr: u32, dlsr: u32) -> Option<ReportBlock> {
        let b = self.peek(ssrc, lsr, dlsr)?;
        self.expected_prior = self.max + 1 - self.base?;
        self.received_prior = self.received;
        Some(b)
    }

    /// The report block of the interval so far, which goes on (the block heading a
    /// feedback packet between two reports).
    pub fn peek(&self, ssrc: u32, lsr: u32, dlsr: u32) -> Option<ReportBlock> {
        let base = self.base?;
        let expected = self.max + 1 - base;
        let lost = expected as i64 - self.received as i64;
        let exp_int = expected - self.expected_prior;
        let rec_int = self.received - self.received_prior;
        let lost_int = exp_int as i64 - rec_int as i64;
        let fraction = if exp_int == 0 || lost_int <= 0 {
            0
        } else {
            ((lost_int << 8) / exp_int as i64).min(255) as u8
        };
        Some(ReportBlock {
            ssrc,
            fraction,
            lost: lost.clamp(-0x80_0000, 0x7f_ffff) as i32,
            ext_max: self.max as u32,
            jitter: (self.jitter16 >> 4) as u32,
            lsr,
            dlsr,
        })
    }
}

fn header(out: &mut Vec<u8>, count: u8, pt: u8, words: usize) {
    out.push(0x80 | (count & 0x1f));
    out.push(pt);
    out.extend_from_slice(&(words as u16).to_be_bytes());
}

/// A receiver report (PT 201) from `sender` with up to 31 blocks.
pub fn write_rr(out: &mut Vec<u8>, sender: u32, blocks: &[ReportBlock]) {
    let blocks = &blocks[..blocks.len().min(31)];
    header(out, blocks.len() as u8, 201, 1 + 6 * blocks.len());
    out.extend_from_slice(&sender.to_be_bytes());
    for b in blocks {
        out.extend_from_slice(&b.ssrc.to_be_bytes());
        let lost = (b.lost as u32) & 0x00ff_ffff;
        out.extend_from_slice(&((u32::from(b.fraction) << 24) | lost).to_be_bytes());
        out.extend_from_slice(&b.ext_max.to_be_bytes());
        out.extend_from_slice(&b.jitter.to_be_bytes());
        out.extend_from_slice(&b.lsr.to_be_bytes());
        out.extend_from_slice(&b.dlsr.to_be_bytes());
    }
}

/// An SDES (PT 202) with one chunk: `ssrc`'s CNAME.
pub fn write_sdes_cname(out: &mut Vec<u8>, ssrc: u32, cname: &[u8]) {
    let cname = &cname[..cname.len().min(255)];
    // SSRC, type, length, text, then at least one zero octet up to a 32-bit boundary.
    let chunk = 4 + 2 + cname.len();
    let padded = (chunk + 1).div_ceil(4) * 4;
    header(out, 1, 202, padded / 4);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(1);
    out.push(cname.len() as u8);
    out.extend_from_slice(cname);
    out.resize(out.len() + padded - chunk, 0);
}

/// A picture loss indication (PT 206, FMT 1) for `media`.
pub fn write_pli(out: &mut Vec<u8>, sender: u32, media: u32) {
    header(out, 1, 206, 2);
    out.extend_from_slice(&sender.to_be_bytes());
    out.extend_from_slice(&media.to_be_bytes());
}

/// A generic NACK (PT 205, FMT 1) for `media` naming the sequence numbers `seqs` (in
/// ascending order of their extended numbers); at most `max_fci` FCI entries. Returns how
/// many sequence numbers it names.
pub fn write_nack(
    out: &mut Vec<u8>,
    sender: u32,
    media: u32,
    seqs: &[u64],
    max_fci: usize,
) -> usize {
    let start = out.len();
    header(out, 1, 205, 2);
    out.extend_from_slice(&sender.to_be_bytes());
    out.extend_from_slice(&media.to_be_bytes());
    let (mut i, mut fci, mut named) = (0, 0, 0);
    while i < seqs.len() && fci < max_fci {
        let pid = seqs[i];
        let mut blp = 0u16;
        i += 1;
        named += 1;
        while i < seqs.len() && seqs[i] > pid && seqs[i] - pid <= 16 {
            blp |= 1 << (seqs[i] - pid - 1);
            i += 1;
            named += 1;
        }
        out.extend_from_slice(&(pid as u16).to_be_bytes());
        out.extend_from_slice(&blp.to_be_bytes());
        fci += 1;
    }
    let words = 2 + fci;
    out[start + 2..start + 4].copy_from_slice(&(words as u16).to_be_bytes());
    named
}

/// The sender reports (PT 200) of a compound packet: (sender SSRC, the middle 32 bits of
/// its NTP timestamp, what a report block's LSR carries).
pub fn sender_reports(compound: &[u8], mut f: impl FnMut(u32, u32)) {
    let mut at = 0;
    while compound.len() >= at + 4 {
        let p = &compound[at..];
        if p[0] >> 6 != 2 {
            return;
        }
        let len = (usize::from(u16::from_be_bytes([p[2], p[3]])) + 1) * 4;
        if p.len() < len {
            return;
        }
        if p[1] == 200 && len >= 28 {
            let ssrc = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            let mid = u32::from_be_bytes([p[10], p[11], p[12], p[13]]);
            f(ssrc, mid);
        }
        at += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3550 A.3: cumulative loss from the extended numbers, the fraction over the
    /// interval since the last report, none counted twice.
    #[test]
    fn report_blocks_count_loss_per_interval() {
        let mut s = RecvStats::default();
        for ext in (65_530..65_540).filter(|e| *e != 65_533 && *e != 65_534) {
            s.record(ext);
        }
        let b = s.report(7, 0x1234_5678, 65536).expect("a block");
        assert_eq!((b.ssrc, b.lost, b.ext_max), (7, 2, 65_539));
        assert_eq!(b.fraction, (2 * 256 / 10) as u8);
        assert_eq!((b.lsr, b.dlsr), (0x1234_5678, 65536));
        // The next interval: 10 more, one lost, one of the earlier ones repaired.
        s.record(65_533);
        for ext in (65_540..65_550).filter(|e| *e != 65_545) {
            s.record(ext);
        }
        let b = s.report(7, 0, 0).expect("a block");
        assert_eq!(b.lost, 2, "two missing: 65534 and 65545");
        assert_eq!(
            b.fraction, 0,
            "as many received as expected in the interval"
        );
        assert_eq!(b.ext_max, 65_549);
        assert!(RecvStats::default().report(1, 0, 0).is_none());
    }

    #[test]
    fn jitter_follows_a_8() {
        let mut s = RecvStats::default();
        // Arrivals 3000 units apart, timestamps 3000 apart but for one packet 48 late.
        for (i, late) in [0, 0, 48, 0, 0].iter().enumerate() {
            s.jitter_sample(i as u32 * 3000 + late, i as u32 * 3000);
        }
        // 16 J: 0, 48 (|D| = 48), 48 + 48 - 3 = 93, 93 - 6 = 87 (|D| = 0): J = 87 / 16.
        let b = s.report(1, 0, 0);
        assert!(b.is_none(), "no packet counted, no block");
        assert_eq!(s.jitter16 >> 4, 5);
    }

    /// The packets are what RFC 3550 and RFC 4585 lay out, and a compound of them parses
    /// back: lengths in 32-bit words minus one, the NACK's bitmask of the following 16.
    #[test]
    fn packets_have_their_wire_layout() {
        let mut out = vec![];
        let b = ReportBlock {
            ssrc: 0xaabb_ccdd,
            fraction: 3,
            lost: -1,
            ext_max: 0x0001_0005,
            jitter: 9,
            lsr: 1,
            dlsr: 2,
        };
        write_rr(&mut out, 0x1111_2222, &[b]);
        assert_eq!(out.len(), 32);
        assert_eq!(&out[..4], &[0x81, 201, 0, 7]);
        assert_eq!(&out[12..16], &[3, 0xff, 0xff, 0xff], "fraction | lost -1");
        let at = out.len();
        write_sdes_cname(&mut out, 0x1111_2222, b"abcd");
        assert_eq!(out.len() - at, 16, "4 + 4 + 2 + 4, one zero, padded to 16");
        assert_eq!(&out[at..at + 4], &[0x81, 202, 0, 3]);
        let at = out.len();
        write_pli(&mut out, 1, 2);
        assert_eq!(&out[at..], &[0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
        let at = out.len();
        let named = write_nack(&mut out, 1, 2, &[100, 101, 116, 117, 65_536 + 5], 16);
        assert_eq!(named, 5);
        // 100 with 101 and 116 (bits 0 and 15); 117 starts the next; then 5 (wrapped).
        assert_eq!(
            &out[at + 12..],
            &[0, 100, 0x80, 0x01, 0, 117, 0, 0, 0, 5, 0, 0]
        );
        assert_eq!(&out[at..at + 4], &[0x81, 205, 0, 5]);
        let mut sr = vec![0x80, 200, 0, 6];
        sr.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        sr.extend_from_slice(&[0xaa, 0xbb, 0x12, 0x34, 0x56, 0x78, 0xcc, 0xdd]);
        sr.extend_from_slice(&[0; 12]);
        sr.extend_from_slice(&out);
        let mut seen = vec![];
        sender_reports(&sr, |s, m| seen.push((s, m)));
        assert_eq!(seen, vec![(0x0102_0304, 0x1234_5678)]);
    }
}
