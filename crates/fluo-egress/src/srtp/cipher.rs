//! The session keys of one direction and their transforms: the RFC 3711 key derivation
//! (AES-CM PRF, key derivation rate 0; RFC 6188's AES_256_CM_PRF for 256-bit master keys),
//! AES-CM with HMAC-SHA1 (RFC 3711 §4.1.1, §4.2) and AES-GCM (RFC 7714) on aws-lc-rs.

use super::{Profile, SrtpError};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use aws_lc_rs::cipher::{
    DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128,
    AES_256,
};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

pub(super) const LABEL_RTP_KEY: u8 = 0;
pub(super) const LABEL_RTP_AUTH: u8 = 1;
pub(super) const LABEL_RTP_SALT: u8 = 2;
pub(super) const LABEL_RTCP_KEY: u8 = 3;
pub(super) const LABEL_RTCP_AUTH: u8 = 4;
pub(super) const LABEL_RTCP_SALT: u8 = 5;

/// RFC 3711 §4.3.1 with a key derivation rate of 0: `out` is filled with the AES-CM keystream
/// under the master key with IV `(master_salt XOR label << 48) << 16` (AES-256 for a 32-byte
/// master key, RFC 6188 §2; a 96-bit GCM salt is padded with zeros, RFC 7714 §11 and its
/// erratum 4938).
pub fn derive(
    master_key: &[u8],
    master_salt: &[u8],
    label: u8,
    out: &mut [u8],
) -> Result<(), SrtpError> {
    let alg = match master_key.len() {
        16 => &AES_128,
        32 => &AES_256,
        _ => return Err(SrtpError::KeyLength),
    };
    if master_salt.len() > 14 {
        return Err(SrtpError::KeyLength);
    }
    let mut iv = [0u8; 16];
    iv[..master_salt.len()].copy_from_slice(master_salt);
    iv[7] ^= label;
    let key = UnboundCipherKey::new(alg, master_key)
        .and_then(EncryptingKey::ctr)
        .map_err(|_| SrtpError::Crypto)?;
    out.fill(0);
    key.less_safe_encrypt(out, EncryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| SrtpError::Crypto)?;
    Ok(())
}

pub(super) enum Cipher {
    Gcm(LessSafeKey),
    /// Boxed: an HMAC key is 1.2 KB inline, and GCM (what browsers and str0m pick) needs none.
    Cm(Box<CmKeys>),
}

pub(super) struct CmKeys {
    enc: EncryptingKey,
    dec: DecryptingKey,
    auth: hmac::Key,
}

/// One derived key set (RTP or RTCP) of a direction.
pub(super) struct Keys {
    pub(super) cipher: Cipher,
    pub(super) salt: [u8; 14],
}

impl Keys {
    /// Derives the keys of `labels` (encryption, authentication, salt) from a master key.
    pub(super) fn derive(
        profile: Profile,
        key: &[u8],
        salt: &[u8],
        labels: [u8; 3],
    ) -> Result<Keys, SrtpError> {
        let mut k = [0u8; 32];
        let k = &mut k[..profile.key_len()];
        derive(key, salt, labels[0], k)?;
        let mut s = [0u8; 14];
        derive(key, salt, labels[2], &mut s[..profile.salt_len()])?;
        let mut a = [0u8; 20];
        if !profile.is_gcm() {
            derive(key, salt, labels[1], &mut a)?;
        }
        Keys::from_session(profile, k, &s, &a)
    }

    /// Keys from session keys already derived (the known-answer tests start here).
    pub(super) fn from_session(
        profile: Profile,
        key: &[u8],
        salt: &[u8],
        auth: &[u8; 20],
    ) -> Result<Keys, SrtpError> {
        if key.len() != profile.key_len() || salt.len() > 14 {
            return Err(SrtpError::KeyLength);
        }
        let crypto = |_| SrtpError::Crypto;
        let cipher = if profile.is_gcm() {
            let alg = if key.len() == 32 {
                &AES_256_GCM
            } else {
                &AES_128_GCM
            };
            Cipher::Gcm(LessSafeKey::new(UnboundKey::new(alg, key).map_err(crypto)?))
        } else {
            let alg = if key.len() == 32 { &AES_256 } else { &AES_128 };
            let unbound = || UnboundCipherKey::new(alg, key).map_err(crypto);
            Cipher::Cm(Box::new(CmKeys {
                enc: EncryptingKey::ctr(unbound()?).map_err(crypto)?,
                dec: DecryptingKey::ctr(unbound()?).map_err(crypto)?,
                auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth),
            }))
        };
        let mut s = [0u8; 14];
        s[..salt.len()].copy_from_slice(salt);
        Ok(Keys { cipher, salt: s })
    }

    /// RFC 7714 §8.1 / §9.1: `0x0000 | SSRC | ROC | SEQ` for RTP (the 48-bit packet index),
    /// `0x0000 | SSRC | 0x0000 | SRTCP index` for RTCP; XOR the salt.
    pub(super) fn gcm_iv(&self, ssrc: u32, index: u64) -> [u8; 12] {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..12].copy_from_slice(&index.to_be_bytes()[2..]);
        for (a, b) in iv.iter_mut().zip(&self.salt[..12]) {
            *a ^= b;
        }
        iv
    }

    /// RFC 3711 §4.1.1: `(salt << 16) XOR (SSRC << 64) XOR (index << 16)`.
    pub(super) fn cm_iv(&self, ssrc: u32, index: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[4..8].copy_from_slice(&ssrc.to_be_bytes());
        let idx = (index & 0xffff_ffff_ffff).to_be_bytes();
        for (a, b) in iv[8..14].iter_mut().zip(&idx[2..]) {
            *a ^= b;
        }
        for (a, b) in iv.iter_mut().zip(&self.salt) {
            *a ^= b;
        }
        iv
    }

    /// AES-GCM in place: seals `body` with `aad`, returns the 16-byte tag.
    pub(super) fn gcm_seal(
        key: &LessSafeKey,
        iv: [u8; 12],
        aad: &[u8],
        body: &mut [u8],
    ) -> Result<[u8; 16], SrtpError> {
        let tag = key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(aad), body)
            .map_err(|_| SrtpError::Crypto)?;
        let mut out = [0u8; 16];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// AES-GCM open in place (`body` ends with the tag); returns the plaintext length.
    pub(super) fn gcm_open(
        key: &LessSafeKey,
        iv: [u8; 12],
        aad: &[u8],
        body: &mut [u8],
    ) -> Result<usize, SrtpError> {
        key.open_in_place(Nonce::assume_unique_for_key(iv), Aad::from(aad), body)
            .map(|p| p.len())
            .map_err(|_| SrtpError::Auth)
    }
}

impl CmKeys {
    /// AES-CM encryption (or decryption: the same keystream) of `data` in place.
    pub(super) fn encrypt(&self, iv: [u8; 16], data: &mut [u8]) -> Result<(), SrtpError> {
        self.enc
            .less_safe_encrypt(data, EncryptionContext::Iv128(FixedLength::from(iv)))
            .map(|_| ())
            .map_err(|_| SrtpError::Crypto)
    }

    /// AES-CM decryption of `data` in place.
    pub(super) fn decrypt(&self, iv: [u8; 16], data: &mut [u8]) -> Result<(), SrtpError> {
        self.dec
            .decrypt(data, DecryptionContext::Iv128(FixedLength::from(iv)))
            .map(|_| ())
            .map_err(|_| SrtpError::Crypto)
    }

    /// HMAC-SHA1 over `parts` (full 20 bytes; callers truncate).
    pub(super) fn mac(&self, parts: &[&[u8]]) -> [u8; 20] {
        let mut ctx = hmac::Context::with_key(&self.auth);
        for p in parts {
            ctx.update(p);
        }
        let mut out = [0u8; 20];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }
}

/// Constant-time comparison of two tags.
pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
