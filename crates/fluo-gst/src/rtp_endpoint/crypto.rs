//! SDES-SRTP for RtpEndpoint: keys and suites (Kurento's SDES / CryptoSuite, SDP `a=crypto`).
//! Packets are protected and checked by `fluo_egress::sdes` (see `net` and `port`).

use fluo_api::{ErrorCode, KurentoError};
use fluo_egress::Profile;
use serde_json::Value;
use std::io::Read;

/// A crypto suite (Kurento's CryptoSuite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suite {
    Aes128Sha80,
    Aes128Sha32,
    Aes256Sha80,
    Aes256Sha32,
}

impl Suite {
    fn from_kurento(s: &str) -> Option<Suite> {
        Some(match s {
            "AES_128_CM_HMAC_SHA1_80" => Suite::Aes128Sha80,
            "AES_128_CM_HMAC_SHA1_32" => Suite::Aes128Sha32,
            "AES_256_CM_HMAC_SHA1_80" => Suite::Aes256Sha80,
            "AES_256_CM_HMAC_SHA1_32" => Suite::Aes256Sha32,
            _ => return None,
        })
    }

    /// The name in SDP `a=crypto` (RFC 4568 / RFC 6188).
    pub(crate) fn sdp_name(self) -> &'static str {
        match self {
            Suite::Aes128Sha80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::Aes128Sha32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::Aes256Sha80 => "AES_256_CM_HMAC_SHA1_80",
            Suite::Aes256Sha32 => "AES_256_CM_HMAC_SHA1_32",
        }
    }

    pub(crate) fn from_sdp(s: &str) -> Option<Suite> {
        [
            Suite::Aes128Sha80,
            Suite::Aes128Sha32,
            Suite::Aes256Sha80,
            Suite::Aes256Sha32,
        ]
        .into_iter()
        .find(|x| x.sdp_name() == s)
    }

    /// Master key plus salt, in bytes.
    pub(crate) fn key_len(self) -> usize {
        match self {
            Suite::Aes128Sha80 | Suite::Aes128Sha32 => 30,
            _ => 46,
        }
    }

    /// The SRTP profile of `fluo_egress` for this suite.
    pub(crate) fn profile(self) -> Profile {
        match self {
            Suite::Aes128Sha80 => Profile::Aes128CmSha1_80,
            Suite::Aes128Sha32 => Profile::Aes128CmSha1_32,
            Suite::Aes256Sha80 => Profile::Aes256CmSha1_80,
            Suite::Aes256Sha32 => Profile::Aes256CmSha1_32,
        }
    }
}

/// Our side's SDES settings.
#[derive(Debug, Clone)]
pub(crate) struct Sdes {
    pub suite: Suite,
    pub key: Vec<u8>,
}

/// Reads the `crypto` constructor parameter; `None` when it is absent or empty (plain RTP).
pub(crate) fn from_param(v: Option<&Value>) -> Result<Option<Sdes>, KurentoError> {
    let Some(o) = v.and_then(Value::as_object).filter(|o| !o.is_empty()) else {
        return Ok(None);
    };
    let bad = |m: String| KurentoError::new(ErrorCode::MediaObjectIllegalParamError, m);
    let suite = match o.get("crypto").and_then(Value::as_str) {
        None => Suite::Aes128Sha80,
        Some(s) => {
            Suite::from_kurento(s).ok_or_else(|| bad(format!("Unknown crypto suite {s}")))?
        }
    };
    let key = if let Some(k) = o.get("key").and_then(Value::as_str) {
        k.as_bytes().to_vec()
    } else if let Some(k) = o.get("keyBase64").and_then(Value::as_str) {
        b64_decode(k).ok_or_else(|| bad("'keyBase64' is not valid base64".into()))?
    } else {
        random_key(suite.key_len())?
    };
    if key.len() != suite.key_len() {
        return Err(bad(format!(
            "The SDES key must be {} bytes (master key and salt) for {:?}, not {}",
            suite.key_len(),
            suite,
            key.len()
        )));
    }
    Ok(Some(Sdes { suite, key }))
}

fn random_key(n: usize) -> Result<Vec<u8>, KurentoError> {
    let mut k = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut k))
        .map_err(|e| {
            KurentoError::new(
                ErrorCode::UnexpectedError,
                format!(
                    "No randomness for an SRTP key: {}",
                    fluo_api::text::foreign(&e)
                ),
            )
        })?;
    Ok(k)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub(crate) fn b64_encode(data: &[u8]) -> String {
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

pub(crate) fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().trim_end_matches('=');
    let mut out = vec![];
    let mut acc = 0u32;
    let mut bits = 0;
    for ch in s.bytes() {
        let v = B64.iter().position(|b| *b == ch)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The remote's key from `a=crypto:<tag> <suite> inline:<key>[|...]` lines, for `suite`.
pub(crate) fn remote_key(lines: &[String], suite: Suite) -> Option<Vec<u8>> {
    lines.iter().find_map(|l| {
        let mut it = l.split_whitespace();
        let _tag = it.next()?;
        if Suite::from_sdp(it.next()?)? != suite {
            return None;
        }
        let inline = it.next()?.strip_prefix("inline:")?;
        let key = b64_decode(inline.split('|').next()?)?;
        (key.len() == suite.key_len()).then_some(key)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn base64_round_trips() {
        for n in 0..50 {
            let d: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(b64_decode(&b64_encode(&d)).unwrap(), d);
        }
        assert_eq!(b64_encode(b"Man"), "TWFu");
        assert_eq!(b64_encode(b"Ma"), "TWE=");
        assert!(b64_decode("not base64!").is_none());
    }

    #[test]
    fn sdes_parameters() {
        assert!(from_param(None).unwrap().is_none());
        assert!(from_param(Some(&json!({}))).unwrap().is_none());
        let k = "0123456789012345678901234567890123456789012345";
        let s = from_param(Some(
            &json!({"key": k, "crypto": "AES_256_CM_HMAC_SHA1_80"}),
        ))
        .unwrap()
        .unwrap();
        assert_eq!((s.suite, s.key.len()), (Suite::Aes256Sha80, 46));
        let s = from_param(Some(&json!({"crypto": "AES_128_CM_HMAC_SHA1_32"})))
            .unwrap()
            .unwrap();
        assert_eq!(s.key.len(), 30, "a random key when none is given");
        assert!(from_param(Some(&json!({"key": "short"}))).is_err());
        assert!(from_param(Some(&json!({"crypto": "ROT13"}))).is_err());
        let b = b64_encode(&[7u8; 30]);
        let s = from_param(Some(&json!({"keyBase64": b}))).unwrap().unwrap();
        assert_eq!(s.key, vec![7u8; 30]);
        let lines = vec![format!("1 AES_CM_128_HMAC_SHA1_80 inline:{b}|2^31|1:1")];
        assert_eq!(remote_key(&lines, Suite::Aes128Sha80), Some(vec![7u8; 30]));
        assert_eq!(remote_key(&lines, Suite::Aes128Sha32), None);
        // Every suite's key length is the profile's.
        for s in [
            Suite::Aes128Sha80,
            Suite::Aes128Sha32,
            Suite::Aes256Sha80,
            Suite::Aes256Sha32,
        ] {
            assert_eq!(s.key_len(), s.profile().inline_len(), "{s:?}");
        }
    }
}
