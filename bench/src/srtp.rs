//! The receive side of DTLS-SRTP for the thin viewer: session keys derived once from the
//! keying material the DTLS handshake exported (RFC 5764 §4.2, RFC 3711 §4.3 with a key
//! derivation rate of 0), SRTP packets checked and decrypted in place in the receive buffer,
//! SRTCP read (the server's sender reports) and written (the viewer's reports, NACKs, PLIs).
//! AES-GCM (RFC 7714) and AES_CM_128_HMAC_SHA1_80 (RFC 3711) on aws-lc-rs, the library
//! str0m's crypto already links.
//!
//! The same derivation as the egress spike's `fluo-egress` (branch spike-egress), reduced to
//! what a receiver needs; once that crate lands, the tool can use it instead.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use aws_lc_rs::cipher::{
    DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128,
    AES_256,
};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

/// The SRTP protection profiles str0m negotiates (RFC 5764, RFC 7714).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// SRTP_AES128_CM_HMAC_SHA1_80.
    Aes128CmSha1_80,
    /// SRTP_AEAD_AES_128_GCM.
    AeadAes128Gcm,
    /// SRTP_AEAD_AES_256_GCM.
    AeadAes256Gcm,
}

impl Profile {
    /// The profile of a DTLS handshake's export, if it is one of the three.
    pub fn from_dtls(p: str0m::crypto::dtls::SrtpProfile) -> Option<Profile> {
        use str0m::crypto::dtls::SrtpProfile as P;
        match p {
            P::AES128_CM_SHA1_80 => Some(Profile::Aes128CmSha1_80),
            P::AEAD_AES_128_GCM => Some(Profile::AeadAes128Gcm),
            P::AEAD_AES_256_GCM => Some(Profile::AeadAes256Gcm),
            _ => None,
        }
    }

    fn key_len(self) -> usize {
        match self {
            Profile::AeadAes256Gcm => 32,
            _ => 16,
        }
    }

    fn salt_len(self) -> usize {
        match self {
            Profile::Aes128CmSha1_80 => 14,
            _ => 12,
        }
    }

    /// The authentication tag after an SRTP packet's payload.
    pub fn tag_len(self) -> usize {
        match self {
            Profile::Aes128CmSha1_80 => 10,
            _ => 16,
        }
    }

    fn material_len(self) -> usize {
        2 * (self.key_len() + self.salt_len())
    }
}

const LABEL_RTP_KEY: u8 = 0;
const LABEL_RTP_AUTH: u8 = 1;
const LABEL_RTP_SALT: u8 = 2;
const LABEL_RTCP_KEY: u8 = 3;
const LABEL_RTCP_AUTH: u8 = 4;
const LABEL_RTCP_SALT: u8 = 5;

/// RFC 3711 §4.3.1, key derivation rate 0: the AES-CM keystream under the master key with
/// IV `(master_salt XOR label << 48) << 16` (RFC 6188 for 256-bit keys; a 96-bit GCM salt is
/// padded with zeros, RFC 7714 §11).
fn derive(master_key: &[u8], master_salt: &[u8], label: u8, out: &mut [u8]) -> Option<()> {
    let alg = match master_key.len() {
        16 => &AES_128,
        32 => &AES_256,
        _ => return None,
    };
    if master_salt.len() > 14 {
        return None;
    }
    let mut iv = [0u8; 16];
    iv[..master_salt.len()].copy_from_slice(master_salt);
    iv[7] ^= label;
    let key = EncryptingKey::ctr(UnboundCipherKey::new(alg, master_key).ok()?).ok()?;
    out.fill(0);
    key.less_safe_encrypt(out, EncryptionContext::Iv128(FixedLength::from(iv)))
        .ok()?;
    Some(())
}

enum Cipher {
    Gcm(LessSafeKey),
    Cm(Box<CmKeys>),
}

struct CmKeys {
    enc: EncryptingKey,
    dec: DecryptingKey,
    auth: hmac::Key,
}

/// One derived key set (RTP or RTCP) of a direction.
struct Keys {
    cipher: Cipher,
    salt: [u8; 14],
}

impl Keys {
    fn new(profile: Profile, key: &[u8], salt: &[u8], labels: [u8; 3]) -> Option<Keys> {
        let mut k = [0u8; 32];
        let k = &mut k[..profile.key_len()];
        derive(key, salt, labels[0], k)?;
        let mut s = [0u8; 14];
        derive(key, salt, labels[2], &mut s[..profile.salt_len()])?;
        let cipher = match profile {
            Profile::AeadAes128Gcm => {
                Cipher::Gcm(LessSafeKey::new(UnboundKey::new(&AES_128_GCM, k).ok()?))
            }
            Profile::AeadAes256Gcm => {
                Cipher::Gcm(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k).ok()?))
            }
            Profile::Aes128CmSha1_80 => {
                let mut a = [0u8; 20];
                derive(key, salt, labels[1], &mut a)?;
                Cipher::Cm(Box::new(CmKeys {
                    enc: EncryptingKey::ctr(UnboundCipherKey::new(&AES_128, k).ok()?).ok()?,
                    dec: DecryptingKey::ctr(UnboundCipherKey::new(&AES_128, k).ok()?).ok()?,
                    auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &a),
                }))
            }
        };
        Some(Keys { cipher, salt: s })
    }

    /// RFC 7714 §8.1 / §9.1: `0x0000 | SSRC | ROC | SEQ` for RTP (the 48-bit index),
    /// `0x0000 | SSRC | 0x0000 | SRTCP index` for RTCP, XOR the salt.
    fn gcm_iv(&self, ssrc: u32, index: u64) -> [u8; 12] {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..12].copy_from_slice(&index.to_be_bytes()[2..]);
        for (a, b) in iv.iter_mut().zip(&self.salt[..12]) {
            *a ^= b;
        }
        iv
    }

    /// RFC 3711 §4.1.1: `(salt << 16) XOR (SSRC << 64) XOR (index << 16)`.
    fn cm_iv(&self, ssrc: u32, index: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[4..8].copy_from_slice(&ssrc.to_be_bytes());
        for (i, b) in (index & 0xffff_ffff_ffff).to_be_bytes()[2..]
            .iter()
            .enumerate()
        {
            iv[8 + i] ^= b;
        }
        for (a, b) in iv.iter_mut().zip(&self.salt) {
            *a ^= b;
        }
        iv
    }
}

/// SRTP and SRTCP of one direction: what one side writes.
pub struct SrtpContext {
    profile: Profile,
    rtp: Keys,
    rtcp: Keys,
    srtcp_index: u32,
}

impl SrtpContext {
    /// The context of the side that was DTLS client (`client`) or server, from the keying
    /// material `client key | server key | client salt | server salt`.
    pub fn from_dtls(profile: Profile, material: &[u8], client: bool) -> Option<SrtpContext> {
        if material.len() != profile.material_len() {
            return None;
        }
        let (k, s) = (profile.key_len(), profile.salt_len());
        let (ko, so) = if client { (0, 2 * k) } else { (k, 2 * k + s) };
        let (key, salt) = (&material[ko..ko + k], &material[so..so + s]);
        Some(SrtpContext {
            profile,
            rtp: Keys::new(
                profile,
                key,
                salt,
                [LABEL_RTP_KEY, LABEL_RTP_AUTH, LABEL_RTP_SALT],
            )?,
            rtcp: Keys::new(
                profile,
                key,
                salt,
                [LABEL_RTCP_KEY, LABEL_RTCP_AUTH, LABEL_RTCP_SALT],
            )?,
            srtcp_index: 0,
        })
    }

    /// Checks and decrypts the SRTP packet `pkt` (header of `header_len` bytes, then
    /// payload and tag) in place; returns the length of the plain packet (header and
    /// payload, the tag cut off). `index` is the 48-bit SRTP index, `ROC << 16 | SEQ`.
    pub fn unprotect_rtp(&self, pkt: &mut [u8], header_len: usize, index: u64) -> Option<usize> {
        let tag_len = self.profile.tag_len();
        if pkt.len() < header_len + tag_len || header_len < 12 {
            return None;
        }
        let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
        match &self.rtp.cipher {
            Cipher::Gcm(key) => {
                let iv = self.rtp.gcm_iv(ssrc, index);
                let (hdr, body) = pkt.split_at_mut(header_len);
                let n = key
                    .open_in_place(Nonce::assume_unique_for_key(iv), Aad::from(&*hdr), body)
                    .ok()?
                    .len();
                Some(header_len + n)
            }
            Cipher::Cm(cm) => {
                let end = pkt.len() - tag_len;
                let mut ctx = hmac::Context::with_key(&cm.auth);
                ctx.update(&pkt[..end]);
                ctx.update(&((index >> 16) as u32).to_be_bytes());
                if !ct_eq(&ctx.sign().as_ref()[..10], &pkt[end..]) {
                    return None;
                }
                let iv = self.rtp.cm_iv(ssrc, index);
                let ctx = DecryptionContext::Iv128(FixedLength::from(iv));
                cm.dec.decrypt(&mut pkt[header_len..end], ctx).ok()?;
                Some(end)
            }
        }
    }

    /// Protects the compound RTCP packet in `buf` in place with the next SRTCP index
    /// (encrypted, E bit set) and appends tag and index as the profile orders them.
    pub fn protect_rtcp(&mut self, buf: &mut Vec<u8>) -> Option<()> {
        if buf.len() < 8 {
            return None;
        }
        let index = self.srtcp_index;
        self.srtcp_index = (index + 1) & 0x7fff_ffff;
        let e_index = (0x8000_0000 | index).to_be_bytes();
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        match &self.rtcp.cipher {
            Cipher::Gcm(key) => {
                // RFC 7714 §9: AAD = first 8 octets | E | index; trailer = tag, E | index.
                let iv = self.rtcp.gcm_iv(ssrc, u64::from(index));
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&e_index);
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(iv),
                        Aad::from(aad),
                        &mut buf[8..],
                    )
                    .ok()?;
                buf.extend_from_slice(tag.as_ref());
                buf.extend_from_slice(&e_index);
            }
            Cipher::Cm(cm) => {
                let iv = self.rtcp.cm_iv(ssrc, u64::from(index));
                cm.enc
                    .less_safe_encrypt(
                        &mut buf[8..],
                        EncryptionContext::Iv128(FixedLength::from(iv)),
                    )
                    .ok()?;
                buf.extend_from_slice(&e_index);
                let tag = hmac::sign(&cm.auth, buf);
                buf.extend_from_slice(&tag.as_ref()[..10]);
            }
        }
        Some(())
    }

    /// Checks and decrypts an SRTCP packet into `out` (replaced); returns its SRTCP index.
    /// Packets sent unencrypted (E bit clear) are refused: neither servers nor browsers send
    /// them.
    pub fn unprotect_rtcp(&self, buf: &[u8], out: &mut Vec<u8>) -> Option<u32> {
        let tag_len = self.profile.tag_len();
        let n = buf.len();
        if n < 8 + tag_len + 4 {
            return None;
        }
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        match &self.rtcp.cipher {
            Cipher::Gcm(key) => {
                let e_index: [u8; 4] = buf[n - 4..].try_into().ok()?;
                let word = u32::from_be_bytes(e_index);
                if word & 0x8000_0000 == 0 {
                    return None;
                }
                let index = word & 0x7fff_ffff;
                let iv = self.rtcp.gcm_iv(ssrc, u64::from(index));
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&e_index);
                out.clear();
                out.extend_from_slice(&buf[..n - 4]);
                let plain = key
                    .open_in_place(
                        Nonce::assume_unique_for_key(iv),
                        Aad::from(aad),
                        &mut out[8..],
                    )
                    .ok()?
                    .len();
                out.truncate(8 + plain);
                Some(index)
            }
            Cipher::Cm(cm) => {
                let tag = hmac::sign(&cm.auth, &buf[..n - 10]);
                if !ct_eq(&tag.as_ref()[..10], &buf[n - 10..]) {
                    return None;
                }
                let word = u32::from_be_bytes(buf[n - 14..n - 10].try_into().ok()?);
                if word & 0x8000_0000 == 0 {
                    return None;
                }
                let index = word & 0x7fff_ffff;
                out.clear();
                out.extend_from_slice(&buf[..n - 14]);
                let iv = self.rtcp.cm_iv(ssrc, u64::from(index));
                let ctx = DecryptionContext::Iv128(FixedLength::from(iv));
                cm.dec.decrypt(&mut out[8..], ctx).ok()?;
                Some(index)
            }
        }
    }

    /// Protects an RTP packet in place (what a sender does): the tests' counterpart of
    /// [`SrtpContext::unprotect_rtp`].
    #[cfg(test)]
    pub fn protect_rtp(&self, buf: &mut Vec<u8>, header_len: usize, index: u64) -> Option<()> {
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        match &self.rtp.cipher {
            Cipher::Gcm(key) => {
                let iv = self.rtp.gcm_iv(ssrc, index);
                let (hdr, body) = buf.split_at_mut(header_len);
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(iv),
                        Aad::from(&*hdr),
                        body,
                    )
                    .ok()?;
                buf.extend_from_slice(tag.as_ref());
            }
            Cipher::Cm(cm) => {
                let iv = self.rtp.cm_iv(ssrc, index);
                cm.enc
                    .less_safe_encrypt(
                        &mut buf[header_len..],
                        EncryptionContext::Iv128(FixedLength::from(iv)),
                    )
                    .ok()?;
                let mut ctx = hmac::Context::with_key(&cm.auth);
                ctx.update(buf);
                ctx.update(&((index >> 16) as u32).to_be_bytes());
                let tag = ctx.sign();
                buf.extend_from_slice(&tag.as_ref()[..10]);
            }
        }
        Some(())
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// RFC 3711 appendix B.3: the key derivation's test vectors (AES-128).
    #[test]
    fn key_derivation_matches_rfc_3711_b3() {
        let key = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let mut k = [0u8; 16];
        derive(&key, &salt, LABEL_RTP_KEY, &mut k).expect("derive");
        assert_eq!(k.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut s = [0u8; 14];
        derive(&key, &salt, LABEL_RTP_SALT, &mut s).expect("derive");
        assert_eq!(s.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        let mut a = [0u8; 20];
        derive(&key, &salt, LABEL_RTP_AUTH, &mut a).expect("derive");
        assert_eq!(a.to_vec(), hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"));
    }

    fn rtp(seq: u16, len: usize) -> Vec<u8> {
        let mut v = vec![0x80, 96];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&1234u32.to_be_bytes());
        v.extend_from_slice(&0xcafe_f00du32.to_be_bytes());
        v.extend((0..len).map(|i| i as u8));
        v
    }

    /// Each profile: what one side protects, the other reads back; the wrong index, the
    /// other direction's keys or a flipped bit are refused.
    #[test]
    fn every_profile_round_trips_and_rejects_tampering() {
        for profile in [
            Profile::Aes128CmSha1_80,
            Profile::AeadAes128Gcm,
            Profile::AeadAes256Gcm,
        ] {
            let material: Vec<u8> = (0..profile.material_len() as u8).collect();
            let mut tx = SrtpContext::from_dtls(profile, &material, false).expect("tx");
            let rx = SrtpContext::from_dtls(profile, &material, false).expect("rx");
            let other = SrtpContext::from_dtls(profile, &material, true).expect("other");
            let plain = rtp(7, 1200);
            let mut p = plain.clone();
            tx.protect_rtp(&mut p, 12, (3 << 16) | 7).expect("protect");
            assert_eq!(p.len(), plain.len() + profile.tag_len());
            let mut q = p.clone();
            let n = rx.unprotect_rtp(&mut q, 12, (3 << 16) | 7).expect("open");
            assert_eq!(&q[..n], &plain[..], "{profile:?}");
            assert!(rx.unprotect_rtp(&mut p.clone(), 12, 7).is_none());
            assert!(other
                .unprotect_rtp(&mut p.clone(), 12, (3 << 16) | 7)
                .is_none());
            let mut bad = p.clone();
            bad[40] ^= 1;
            assert!(rx.unprotect_rtp(&mut bad, 12, (3 << 16) | 7).is_none());

            let rr = hex("81C90007 11111111 22222222 00000001 00000002 00000003 00000004 00000005");
            for expected in 0..3u32 {
                let mut c = rr.clone();
                tx.protect_rtcp(&mut c).expect("protect rtcp");
                assert_eq!(c.len(), rr.len() + profile.tag_len() + 4);
                let mut out = vec![];
                assert_eq!(rx.unprotect_rtcp(&c, &mut out), Some(expected));
                assert_eq!(out, rr, "{profile:?}");
                c[10] ^= 1;
                assert_eq!(rx.unprotect_rtcp(&c, &mut out), None);
            }
        }
    }
}
