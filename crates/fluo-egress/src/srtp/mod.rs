//! SRTP and SRTCP of one direction, protected and checked in place in the caller's buffer (no
//! allocation once the buffer has room for the tag), on aws-lc-rs:
//!
//! - the DTLS-SRTP profiles str0m negotiates: AEAD_AES_256_GCM, AEAD_AES_128_GCM (RFC 7714)
//!   and AES_CM_128_HMAC_SHA1_80 (RFC 3711), keys from the DTLS keying material
//!   ([`SrtpContext::from_dtls`]);
//! - Kurento's SDES suites for RtpEndpoint: AES_CM_128_HMAC_SHA1_80 / _32 (RFC 4568) and
//!   AES_256_CM_HMAC_SHA1_80 / _32 (RFC 6188), keys from the SDES inline key
//!   ([`SrtpContext::from_inline`]); [`crate::sdes`] adds the per-SSRC state a receiver needs.
//!
//! The DTLS-SRTP keying material (RFC 5764 §4.2) is `client key | server key | client salt |
//! server salt`; the side that was DTLS client writes with the client half.
//!
//! SRTCP authentication tags of the `_32` suites: Kurento configures GStreamer's srtpenc with
//! the suite's RTP tag length for RTCP too (a 4-byte tag), where RFC 4568 §6.2.2 and RFC 6188
//! ask for 10 bytes. Fluo writes what Kurento writes and reads both.

mod cipher;
#[cfg(test)]
mod tests;

pub use cipher::derive;
use cipher::{ct_eq, Cipher, Keys};

/// An SRTP protection profile (DTLS-SRTP) or crypto suite (SDES).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// AES_CM_128_HMAC_SHA1_80 (DTLS-SRTP and SDES).
    Aes128CmSha1_80,
    /// AES_CM_128_HMAC_SHA1_32 (SDES).
    Aes128CmSha1_32,
    /// AES_256_CM_HMAC_SHA1_80 (SDES, RFC 6188).
    Aes256CmSha1_80,
    /// AES_256_CM_HMAC_SHA1_32 (SDES, RFC 6188).
    Aes256CmSha1_32,
    /// SRTP_AEAD_AES_128_GCM (DTLS-SRTP, RFC 7714).
    AeadAes128Gcm,
    /// SRTP_AEAD_AES_256_GCM (DTLS-SRTP, RFC 7714): what str0m's DTLS server picks first.
    AeadAes256Gcm,
}

/// Why a packet was not protected or not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpError {
    /// A master key or salt of the wrong length for the profile.
    KeyLength,
    /// Too short, or not an RTP / RTCP packet.
    Malformed,
    /// The authentication tag does not match: not from the peer, or altered.
    Auth,
    /// An SRTCP packet sent unencrypted (E bit clear): neither str0m, browsers nor KMS send
    /// them.
    NotEncrypted,
    /// A packet index already seen or older than the replay window.
    Replayed,
    /// The key has protected as many packets as its index allows (2^48 RTP, 2^31 RTCP).
    Exhausted,
    /// A sender asked to protect more SSRCs than it keeps state for.
    TooManySsrcs,
    /// The crypto library refused (a buffer too large for one call).
    Crypto,
}

impl std::fmt::Display for SrtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SrtpError::KeyLength => "SRTP master key or salt of the wrong length",
            SrtpError::Malformed => "not an RTP or RTCP packet",
            SrtpError::Auth => "SRTP authentication failed",
            SrtpError::NotEncrypted => "unencrypted SRTCP is not accepted",
            SrtpError::Replayed => "SRTP packet replayed or too old",
            SrtpError::Exhausted => "SRTP key exhausted",
            SrtpError::TooManySsrcs => "too many SSRCs on one SRTP session",
            SrtpError::Crypto => "SRTP transform failed",
        })
    }
}

impl std::error::Error for SrtpError {}

impl Profile {
    /// The profile of a DTLS handshake's export, if it is one str0m negotiates.
    pub fn from_dtls(p: str0m::crypto::dtls::SrtpProfile) -> Option<Profile> {
        use str0m::crypto::dtls::SrtpProfile as P;
        match p {
            P::AES128_CM_SHA1_80 => Some(Profile::Aes128CmSha1_80),
            P::AEAD_AES_128_GCM => Some(Profile::AeadAes128Gcm),
            P::AEAD_AES_256_GCM => Some(Profile::AeadAes256Gcm),
            _ => None,
        }
    }

    /// The suite of an SDP `a=crypto` line (RFC 4568 §6.2, RFC 6188 §6), for SDES.
    pub fn from_sdes_name(name: &str) -> Option<Profile> {
        Self::SDES.into_iter().find(|p| p.sdes_name() == Some(name))
    }

    /// The SDES suites, Kurento's four.
    pub const SDES: [Profile; 4] = [
        Profile::Aes128CmSha1_80,
        Profile::Aes128CmSha1_32,
        Profile::Aes256CmSha1_80,
        Profile::Aes256CmSha1_32,
    ];

    /// The suite's name in SDP `a=crypto`; `None` for the GCM profiles (DTLS-SRTP only here).
    pub fn sdes_name(self) -> Option<&'static str> {
        Some(match self {
            Profile::Aes128CmSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Profile::Aes128CmSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Profile::Aes256CmSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            Profile::Aes256CmSha1_32 => "AES_256_CM_HMAC_SHA1_32",
            Profile::AeadAes128Gcm | Profile::AeadAes256Gcm => return None,
        })
    }

    /// Whether this is an AEAD (AES-GCM) profile.
    pub fn is_gcm(self) -> bool {
        matches!(self, Profile::AeadAes128Gcm | Profile::AeadAes256Gcm)
    }

    /// Master (and session) key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Profile::AeadAes256Gcm | Profile::Aes256CmSha1_80 | Profile::Aes256CmSha1_32 => 32,
            _ => 16,
        }
    }

    /// Master (and session) salt length in bytes.
    pub fn salt_len(self) -> usize {
        if self.is_gcm() {
            12
        } else {
            14
        }
    }

    /// Bytes an SRTP packet grows by: the authentication tag.
    pub fn rtp_overhead(self) -> usize {
        match self {
            Profile::Aes128CmSha1_32 | Profile::Aes256CmSha1_32 => 4,
            Profile::Aes128CmSha1_80 | Profile::Aes256CmSha1_80 => 10,
            Profile::AeadAes128Gcm | Profile::AeadAes256Gcm => 16,
        }
    }

    /// Bytes an SRTCP packet grows by (tag and E+index word), as Fluo writes it.
    pub fn rtcp_overhead(self) -> usize {
        self.rtp_overhead() + 4
    }

    /// Length of the DTLS-SRTP keying material for this profile.
    pub fn material_len(self) -> usize {
        2 * (self.key_len() + self.salt_len())
    }

    /// Length of an SDES inline key (master key then master salt).
    pub fn inline_len(self) -> usize {
        self.key_len() + self.salt_len()
    }
}

/// The (key, salt) one side writes with, from DTLS-SRTP keying material; `client` is whether
/// that side was the DTLS client. `None` if the material has the wrong length.
pub fn master_for(profile: Profile, material: &[u8], client: bool) -> Option<(&[u8], &[u8])> {
    if material.len() != profile.material_len() {
        return None;
    }
    let (k, s) = (profile.key_len(), profile.salt_len());
    let (ko, so) = if client { (0, 2 * k) } else { (k, 2 * k + s) };
    Some((&material[ko..ko + k], &material[so..so + s]))
}

/// Largest SRTP packet index (48 bits).
const MAX_RTP_INDEX: u64 = (1 << 48) - 1;
/// Largest SRTCP index (31 bits).
const MAX_RTCP_INDEX: u32 = 0x7fff_ffff;

/// SRTP and SRTCP of one direction (what one side writes, or what a receiver checks).
pub struct SrtpContext {
    profile: Profile,
    rtp: Keys,
    rtcp: Keys,
    /// The SRTCP index of the next packet protected; `None` once all are used.
    srtcp_index: Option<u32>,
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("SrtpContext")
            .field("profile", &self.profile)
            .field("srtcp_index", &self.srtcp_index)
            .finish_non_exhaustive()
    }
}

impl SrtpContext {
    /// Session keys from a master key and salt of `profile`'s lengths.
    pub fn new(
        profile: Profile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<SrtpContext, SrtpError> {
        if master_key.len() != profile.key_len() || master_salt.len() != profile.salt_len() {
            return Err(SrtpError::KeyLength);
        }
        use cipher::{LABEL_RTCP_AUTH, LABEL_RTCP_KEY, LABEL_RTCP_SALT};
        use cipher::{LABEL_RTP_AUTH, LABEL_RTP_KEY, LABEL_RTP_SALT};
        let rtp = [LABEL_RTP_KEY, LABEL_RTP_AUTH, LABEL_RTP_SALT];
        let rtcp = [LABEL_RTCP_KEY, LABEL_RTCP_AUTH, LABEL_RTCP_SALT];
        Ok(SrtpContext {
            profile,
            rtp: Keys::derive(profile, master_key, master_salt, rtp)?,
            rtcp: Keys::derive(profile, master_key, master_salt, rtcp)?,
            srtcp_index: Some(0),
        })
    }

    /// The context one side writes with, from DTLS-SRTP keying material.
    pub fn from_dtls(
        profile: Profile,
        material: &[u8],
        client: bool,
    ) -> Result<SrtpContext, SrtpError> {
        let (k, s) = master_for(profile, material, client).ok_or(SrtpError::KeyLength)?;
        Self::new(profile, k, s)
    }

    /// The context of an SDES inline key (RFC 4568 §6.1: master key, then master salt;
    /// decoded from base64 by the caller).
    pub fn from_inline(profile: Profile, inline: &[u8]) -> Result<SrtpContext, SrtpError> {
        if inline.len() != profile.inline_len() {
            return Err(SrtpError::KeyLength);
        }
        let (k, s) = inline.split_at(profile.key_len());
        Self::new(profile, k, s)
    }

    /// The profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The SRTCP index the next protected RTCP packet gets (`None`: the key is used up).
    pub fn srtcp_index(&self) -> Option<u32> {
        self.srtcp_index
    }

    /// Protects the RTP packet in `buf` (its header is `header_len` bytes) in place and
    /// appends the tag. `index` is the packet's 48-bit SRTP index, `ROC << 16 | SEQ`; the
    /// caller never protects one index twice (keystream reuse). Nothing is allocated when
    /// `buf` has room for the tag.
    pub fn protect_rtp(
        &self,
        buf: &mut Vec<u8>,
        header_len: usize,
        index: u64,
    ) -> Result<(), SrtpError> {
        if buf.len() < header_len || header_len < 12 {
            return Err(SrtpError::Malformed);
        }
        if index > MAX_RTP_INDEX {
            return Err(SrtpError::Exhausted);
        }
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        match &self.rtp.cipher {
            Cipher::Gcm(key) => {
                let iv = self.rtp.gcm_iv(ssrc, index);
                let (hdr, body) = buf.split_at_mut(header_len);
                let tag = Keys::gcm_seal(key, iv, hdr, body)?;
                buf.extend_from_slice(&tag);
            }
            Cipher::Cm(cm) => {
                cm.encrypt(self.rtp.cm_iv(ssrc, index), &mut buf[header_len..])?;
                let roc = ((index >> 16) as u32).to_be_bytes();
                let tag = cm.mac(&[buf.as_slice(), &roc]);
                buf.extend_from_slice(&tag[..self.profile.rtp_overhead()]);
            }
        }
        Ok(())
    }

    /// Checks and decrypts an SRTP packet in place; the tag is removed. `index` as for
    /// [`SrtpContext::protect_rtp`] (a receiver estimates it: see [`crate::sdes`]).
    pub fn unprotect_rtp(
        &self,
        buf: &mut Vec<u8>,
        header_len: usize,
        index: u64,
    ) -> Result<(), SrtpError> {
        let n = self.unprotect_rtp_in(buf, header_len, index)?;
        buf.truncate(n);
        Ok(())
    }

    /// [`SrtpContext::unprotect_rtp`] on a slice (a receive buffer): returns the length of the
    /// plain packet (header and payload, without the tag).
    pub fn unprotect_rtp_in(
        &self,
        buf: &mut [u8],
        header_len: usize,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let tag_len = self.profile.rtp_overhead();
        if buf.len() < header_len + tag_len || header_len < 12 {
            return Err(SrtpError::Malformed);
        }
        if index > MAX_RTP_INDEX {
            return Err(SrtpError::Exhausted);
        }
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        match &self.rtp.cipher {
            Cipher::Gcm(key) => {
                let iv = self.rtp.gcm_iv(ssrc, index);
                let (hdr, body) = buf.split_at_mut(header_len);
                let n = Keys::gcm_open(key, iv, hdr, body)?;
                Ok(header_len + n)
            }
            Cipher::Cm(cm) => {
                let end = buf.len() - tag_len;
                let roc = ((index >> 16) as u32).to_be_bytes();
                let tag = cm.mac(&[&buf[..end], &roc]);
                if !ct_eq(&tag[..tag_len], &buf[end..]) {
                    return Err(SrtpError::Auth);
                }
                cm.decrypt(self.rtp.cm_iv(ssrc, index), &mut buf[header_len..end])?;
                Ok(end)
            }
        }
    }

    /// Protects the compound RTCP packet in `buf` in place with the next SRTCP index
    /// (encrypted, E bit set) and appends tag and index as the profile orders them.
    pub fn protect_rtcp(&mut self, buf: &mut Vec<u8>) -> Result<(), SrtpError> {
        let index = self.srtcp_index.ok_or(SrtpError::Exhausted)?;
        self.seal_rtcp_at(buf, index)?;
        self.srtcp_index = index.checked_add(1).filter(|i| *i <= MAX_RTCP_INDEX);
        Ok(())
    }

    /// Protects `buf` as SRTCP under a given `index`, without touching the context's counter.
    /// Only for a packet that never leaves the process (the viewer's RTCP handed to str0m with
    /// report blocks removed): sent on the wire, it would reuse a nonce.
    pub(crate) fn seal_rtcp_at(&self, buf: &mut Vec<u8>, index: u32) -> Result<(), SrtpError> {
        if buf.len() < 8 {
            return Err(SrtpError::Malformed);
        }
        if index > MAX_RTCP_INDEX {
            return Err(SrtpError::Exhausted);
        }
        let e_index = (0x8000_0000 | index).to_be_bytes();
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        match &self.rtcp.cipher {
            Cipher::Gcm(key) => {
                // RFC 7714 §9: AAD = first 8 octets | E | index; trailer = tag, then E | index.
                let iv = self.rtcp.gcm_iv(ssrc, u64::from(index));
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&e_index);
                let tag = Keys::gcm_seal(key, iv, &aad, &mut buf[8..])?;
                buf.extend_from_slice(&tag);
                buf.extend_from_slice(&e_index);
            }
            Cipher::Cm(cm) => {
                cm.encrypt(self.rtcp.cm_iv(ssrc, u64::from(index)), &mut buf[8..])?;
                buf.extend_from_slice(&e_index);
                let tag = cm.mac(&[buf.as_slice()]);
                buf.extend_from_slice(&tag[..self.profile.rtp_overhead()]);
            }
        }
        Ok(())
    }

    /// Checks and decrypts an SRTCP packet into `out` (replaced); returns its SRTCP index.
    /// Packets sent unencrypted (E bit clear) are refused. Replay is the caller's to check
    /// (see [`crate::ReplayWindow`]).
    pub fn unprotect_rtcp(&self, buf: &[u8], out: &mut Vec<u8>) -> Result<u32, SrtpError> {
        let ssrc = match buf {
            [_, _, _, _, a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
            _ => return Err(SrtpError::Malformed),
        };
        match &self.rtcp.cipher {
            Cipher::Gcm(key) => {
                let n = buf.len();
                if n < 8 + 16 + 4 {
                    return Err(SrtpError::Malformed);
                }
                let e_index = [buf[n - 4], buf[n - 3], buf[n - 2], buf[n - 1]];
                let index = index_of(e_index)?;
                let iv = self.rtcp.gcm_iv(ssrc, u64::from(index));
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&e_index);
                out.clear();
                out.extend_from_slice(&buf[..n - 4]);
                let plain = Keys::gcm_open(key, iv, &aad, &mut out[8..])?;
                out.truncate(8 + plain);
                Ok(index)
            }
            Cipher::Cm(cm) => {
                // The suite's own tag length first, then the other one a `_32` peer may use.
                let own = self.profile.rtp_overhead();
                let mut result = self.open_cm_rtcp(cm, ssrc, buf, own, out);
                if result == Err(SrtpError::Auth) && own == 4 {
                    result = self.open_cm_rtcp(cm, ssrc, buf, 10, out);
                }
                result
            }
        }
    }

    fn open_cm_rtcp(
        &self,
        cm: &cipher::CmKeys,
        ssrc: u32,
        buf: &[u8],
        tag_len: usize,
        out: &mut Vec<u8>,
    ) -> Result<u32, SrtpError> {
        let n = buf.len();
        if n < 8 + 4 + tag_len {
            return Err(SrtpError::Malformed);
        }
        let signed = &buf[..n - tag_len];
        let tag = cm.mac(&[signed]);
        if !ct_eq(&tag[..tag_len], &buf[n - tag_len..]) {
            return Err(SrtpError::Auth);
        }
        let w = n - tag_len - 4;
        let index = index_of([buf[w], buf[w + 1], buf[w + 2], buf[w + 3]])?;
        out.clear();
        out.extend_from_slice(&buf[..w]);
        cm.decrypt(self.rtcp.cm_iv(ssrc, u64::from(index)), &mut out[8..])?;
        Ok(index)
    }
}

/// The SRTCP index of an `E | index` word; unencrypted packets are refused.
fn index_of(e_index: [u8; 4]) -> Result<u32, SrtpError> {
    let word = u32::from_be_bytes(e_index);
    if word & 0x8000_0000 == 0 {
        return Err(SrtpError::NotEncrypted);
    }
    Ok(word & MAX_RTCP_INDEX)
}

/// The length of an RTP header (fixed part, CSRCs, extension) in `buf`, read without
/// touching the payload (which SRTP encrypts, padding count included); `None` if `buf` is not
/// RTP version 2 or is shorter than its header says.
pub fn rtp_header_len(buf: &[u8]) -> Option<usize> {
    let (&b0, _) = buf.split_first()?;
    if b0 >> 6 != 2 || buf.len() < 12 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(b0 & 0x0f);
    if b0 & 0x10 != 0 {
        let ext = buf.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    (len <= buf.len()).then_some(len)
}
