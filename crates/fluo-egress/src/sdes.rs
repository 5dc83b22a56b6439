//! SDES-keyed SRTP sessions (RFC 4568), for RtpEndpoint: one key per direction for every SSRC
//! of the session, no DTLS. [`SdesSender`] protects what Fluo sends (each SSRC's rollover
//! counter followed from its sequence numbers, an index never protected twice);
//! [`SdesReceiver`] checks what the peer sends (index estimation and a replay window per SSRC,
//! RFC 3711 §3.3).
//!
//! Per-SSRC state is created only by packets that authenticate (or, sending, by Fluo's own
//! packets) and is kept for at most [`MAX_SSRCS`] SSRCs: a receiver forgets the least
//! recently used one (a peer without the key cannot make the session grow), a sender refuses
//! a new SSRC past that ([`SrtpError::TooManySsrcs`]) rather than forget one and risk
//! protecting one of its indices twice.

use crate::replay::{estimate_index, ReplayWindow};
use crate::srtp::{rtp_header_len, Profile, SrtpContext, SrtpError};

/// Most SSRCs a session keeps state for, in each direction.
pub const MAX_SSRCS: usize = 16;

/// Packets a key may take (2^48, RFC 3711 §9.2) less the margin at which libsrtp raises its
/// soft limit (2^16; srtpdec's `soft-limit` signal, Kurento's `OnKeySoftLimit`).
pub const KEY_SOFT_LIMIT: u64 = (1 << 48) - (1 << 16);

#[derive(Debug, Clone, Copy)]
struct SsrcState {
    ssrc: u32,
    window: ReplayWindow,
    /// Last use, for eviction.
    used: u64,
}

/// Per-SSRC replay windows, bounded.
#[derive(Debug, Default)]
struct Ssrcs {
    states: Vec<SsrcState>,
    clock: u64,
}

impl Ssrcs {
    fn find(&self, ssrc: u32) -> Option<&SsrcState> {
        self.states.iter().find(|s| s.ssrc == ssrc)
    }

    /// The window of `ssrc`, created when missing; at [`MAX_SSRCS`] the least recently used
    /// one is forgotten when `evict`, else `None`.
    fn entry(&mut self, ssrc: u32, evict: bool) -> Option<&mut SsrcState> {
        self.clock += 1;
        let clock = self.clock;
        let fresh = SsrcState {
            ssrc,
            window: ReplayWindow::new(),
            used: clock,
        };
        let at = match self.states.iter().position(|s| s.ssrc == ssrc) {
            Some(i) => i,
            None if self.states.len() < MAX_SSRCS => {
                self.states.push(fresh);
                self.states.len() - 1
            }
            None if evict => {
                let i = (0..self.states.len()).min_by_key(|&i| self.states[i].used)?;
                self.states[i] = fresh;
                i
            }
            None => return None,
        };
        let s = &mut self.states[at];
        s.used = clock;
        Some(s)
    }
}

fn ssrc_seq(buf: &[u8]) -> Result<(u32, u16), SrtpError> {
    match buf {
        [_, _, s0, s1, _, _, _, _, a, b, c, d, ..] => Ok((
            u32::from_be_bytes([*a, *b, *c, *d]),
            u16::from_be_bytes([*s0, *s1]),
        )),
        _ => Err(SrtpError::Malformed),
    }
}

fn rtcp_ssrc(buf: &[u8]) -> Result<u32, SrtpError> {
    match buf {
        [_, _, _, _, a, b, c, d, ..] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(SrtpError::Malformed),
    }
}

/// What Fluo sends on an SDES session: RTP and RTCP protected with the local key.
#[derive(Debug)]
pub struct SdesSender {
    ctx: SrtpContext,
    rtp: Ssrcs,
}

impl SdesSender {
    /// A sender with the local SDES inline key (master key then salt, `profile`'s lengths).
    pub fn new(profile: Profile, inline_key: &[u8]) -> Result<SdesSender, SrtpError> {
        Ok(SdesSender {
            ctx: SrtpContext::from_inline(profile, inline_key)?,
            rtp: Ssrcs::default(),
        })
    }

    /// The suite.
    pub fn profile(&self) -> Profile {
        self.ctx.profile()
    }

    /// Protects the RTP packet in `buf` in place (the tag appended). The index follows the
    /// SSRC's sequence numbers; a packet whose index was already protected, or is too far
    /// behind, is refused ([`SrtpError::Replayed`]): protecting it would reuse keystream.
    pub fn protect_rtp(&mut self, buf: &mut Vec<u8>) -> Result<(), SrtpError> {
        let hlen = rtp_header_len(buf).ok_or(SrtpError::Malformed)?;
        let (ssrc, seq) = ssrc_seq(buf)?;
        // A send state is never forgotten: coming back with a fresh one would reuse indices.
        let state = self.rtp.entry(ssrc, false).ok_or(SrtpError::TooManySsrcs)?;
        let index = estimate_index(state.window.highest(), seq);
        if !state.window.check(index) {
            return Err(SrtpError::Replayed);
        }
        self.ctx.protect_rtp(buf, hlen, index)?;
        state.window.accept(index);
        Ok(())
    }

    /// Protects a compound RTCP packet in place with the next SRTCP index.
    pub fn protect_rtcp(&mut self, buf: &mut Vec<u8>) -> Result<(), SrtpError> {
        self.ctx.protect_rtcp(buf)
    }
}

/// What the peer sends on an SDES session: RTP and RTCP checked with the remote key.
#[derive(Debug)]
pub struct SdesReceiver {
    ctx: SrtpContext,
    rtp: Ssrcs,
    rtcp: Ssrcs,
    /// Packets accepted under the key.
    used: u64,
}

impl SdesReceiver {
    /// A receiver with the peer's SDES inline key (from its `a=crypto` line).
    pub fn new(profile: Profile, inline_key: &[u8]) -> Result<SdesReceiver, SrtpError> {
        Ok(SdesReceiver {
            ctx: SrtpContext::from_inline(profile, inline_key)?,
            rtp: Ssrcs::default(),
            rtcp: Ssrcs::default(),
            used: 0,
        })
    }

    /// Whether the key has taken [`KEY_SOFT_LIMIT`] packets: time to raise `OnKeySoftLimit`
    /// and re-key, as srtpdec signals it.
    pub fn near_key_limit(&self) -> bool {
        self.used >= KEY_SOFT_LIMIT
    }

    /// The suite.
    pub fn profile(&self) -> Profile {
        self.ctx.profile()
    }

    /// Checks and decrypts the SRTP packet in `buf` in place (the tag removed). Refused when
    /// it does not authenticate, is a replay or is older than the replay window; nothing is
    /// recorded for a refused packet.
    pub fn unprotect_rtp(&mut self, buf: &mut Vec<u8>) -> Result<(), SrtpError> {
        let hlen = rtp_header_len(buf).ok_or(SrtpError::Malformed)?;
        let (ssrc, seq) = ssrc_seq(buf)?;
        let highest = self.rtp.find(ssrc).and_then(|s| s.window.highest());
        let index = estimate_index(highest, seq);
        if let Some(s) = self.rtp.find(ssrc) {
            if !s.window.check(index) {
                return Err(SrtpError::Replayed);
            }
        }
        self.ctx.unprotect_rtp(buf, hlen, index)?;
        if let Some(s) = self.rtp.entry(ssrc, true) {
            s.window.accept(index);
        }
        self.used += 1;
        Ok(())
    }

    /// Checks and decrypts an SRTCP packet into `out` (replaced); refused as
    /// [`SdesReceiver::unprotect_rtp`] refuses.
    pub fn unprotect_rtcp(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        let ssrc = rtcp_ssrc(buf)?;
        let index = self.ctx.unprotect_rtcp(buf, out)?;
        let fresh = self
            .rtcp
            .entry(ssrc, true)
            .map(|s| s.window.accept(u64::from(index)));
        if fresh == Some(false) {
            out.clear();
            return Err(SrtpError::Replayed);
        }
        self.used += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluo_sfu::rtp::write_rtp;

    fn key(profile: Profile) -> Vec<u8> {
        (0..profile.inline_len() as u8)
            .map(|i| i.wrapping_mul(7).wrapping_add(1))
            .collect()
    }

    #[test]
    fn every_suite_carries_rtp_across_a_rollover_and_refuses_replays() {
        for profile in Profile::SDES {
            let mut tx = SdesSender::new(profile, &key(profile)).unwrap();
            let mut rx = SdesReceiver::new(profile, &key(profile)).unwrap();
            let mut sent = vec![];
            for i in 0..40u16 {
                let seq = 65_520u16.wrapping_add(i);
                let mut p = vec![];
                write_rtp(&mut p, 96, false, seq, u32::from(i), 0x55, &[i as u8; 50]);
                let plain = p.clone();
                tx.protect_rtp(&mut p).unwrap();
                assert_eq!(p.len(), plain.len() + profile.rtp_overhead());
                sent.push((plain, p));
            }
            // Delivered out of order across the wrap.
            sent.swap(10, 20);
            for (plain, p) in &sent {
                let mut q = p.clone();
                rx.unprotect_rtp(&mut q).unwrap();
                assert_eq!(&q, plain, "{profile:?}");
            }
            let mut again = sent[25].1.clone();
            assert_eq!(rx.unprotect_rtp(&mut again), Err(SrtpError::Replayed));
            // Fluo never protects an index twice.
            let mut dup = sent[30].0.clone();
            assert_eq!(tx.protect_rtp(&mut dup), Err(SrtpError::Replayed));

            let mut c = vec![0x80, 0xc9, 0, 1, 0, 0, 0, 0x55];
            tx.protect_rtcp(&mut c).unwrap();
            let mut out = vec![];
            rx.unprotect_rtcp(&c, &mut out).unwrap();
            assert_eq!(out, [0x80, 0xc9, 0, 1, 0, 0, 0, 0x55]);
            assert_eq!(rx.unprotect_rtcp(&c, &mut out), Err(SrtpError::Replayed));
        }
    }

    #[test]
    fn forged_packets_create_no_state() {
        let p = Profile::Aes128CmSha1_80;
        let mut rx = SdesReceiver::new(p, &key(p)).unwrap();
        for ssrc in 0..1000u32 {
            let mut f = vec![];
            write_rtp(&mut f, 96, false, 1, 0, ssrc, &[0; 30]);
            assert_eq!(rx.unprotect_rtp(&mut f), Err(SrtpError::Auth));
        }
        assert!(rx.rtp.states.is_empty());
        assert_eq!(rx.used, 0);
        assert!(!rx.near_key_limit());
        rx.used = KEY_SOFT_LIMIT;
        assert!(rx.near_key_limit());
        assert_eq!(
            rx.unprotect_rtp(&mut vec![0x80, 0, 0]),
            Err(SrtpError::Malformed)
        );
    }

    #[test]
    fn ssrc_state_is_bounded() {
        let p = Profile::Aes128CmSha1_32;
        let mut tx = SdesSender::new(p, &key(p)).unwrap();
        let mut rx = SdesReceiver::new(p, &key(p)).unwrap();
        for ssrc in 0..100u32 {
            let mut f = vec![];
            write_rtp(&mut f, 96, false, 1, 0, ssrc, &[0; 30]);
            let sent = tx.protect_rtp(&mut f);
            if (ssrc as usize) < MAX_SSRCS {
                sent.unwrap();
                rx.unprotect_rtp(&mut f).unwrap();
            } else {
                assert_eq!(sent, Err(SrtpError::TooManySsrcs));
            }
        }
        assert_eq!(tx.rtp.states.len(), MAX_SSRCS);
        // The receiver forgets its least recently used SSRC for a new one.
        let mut other = SdesSender::new(p, &key(p)).unwrap();
        let mut f = vec![];
        write_rtp(&mut f, 96, false, 1, 0, 0xabc, &[0; 30]);
        other.protect_rtp(&mut f).unwrap();
        rx.unprotect_rtp(&mut f).unwrap();
        assert_eq!(rx.rtp.states.len(), MAX_SSRCS);
        assert!(rx.rtp.find(0).is_none() && rx.rtp.find(0xabc).is_some());
    }
}
