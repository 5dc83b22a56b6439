//! Known answers (RFC 3711 appendix B, RFC 6188 §7, packets written by libsrtp) and round
//! trips of every profile. GCM against str0m's receiver: tests/viewer.rs; every SDES suite
//! against libsrtp through GStreamer: tests/sdes_gst.rs.

use super::cipher::Keys;
use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn derived(key: &str, salt: &str, label: u8, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    derive(&hex(key), &hex(salt), label, &mut out).unwrap();
    out
}

/// RFC 3711 appendix B.3 (RTP labels) and the same master key with the SRTCP labels.
#[test]
fn key_derivation_matches_rfc_3711_b3() {
    let (k, s) = (
        "E1F97A0D3E018BE0D64FA32C06DE4139",
        "0EC675AD498AFEEBB6960B3AABE6",
    );
    assert_eq!(
        derived(k, s, 0, 16),
        hex("C61E7A93744F39EE10734AFE3FF7A087")
    );
    assert_eq!(derived(k, s, 2, 14), hex("30CBBC08863D8C85D49DB34A9AE1"));
    assert_eq!(
        derived(k, s, 1, 20),
        hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
    );
    assert_eq!(
        derived(k, s, 3, 16),
        hex("4c1aa45a81f73d61c800bbb00fbb1eaa")
    );
    assert_eq!(
        derived(k, s, 4, 20),
        hex("8d54534feb49ae8e7993a6bd0b844fc323a93dfd")
    );
    assert_eq!(derived(k, s, 5, 14), hex("9581c7ad87b3e530bf3e4454a8b3"));
}

/// RFC 6188 §7.2: AES_256_CM_PRF.
#[test]
fn key_derivation_matches_rfc_6188_aes_256_cm_prf() {
    let (k, s) = (
        "f0f04914b513f2763a1b1fa130f10e2998f6f6e43e4309d1e622a0e332b9f1b6",
        "3b04803de51ee7c96423ab5b78d2",
    );
    assert_eq!(
        derived(k, s, 0, 32),
        hex("5ba1064e30ec51613cad926c5a28ef731ec7fb397f70a960653caf06554cd8c4")
    );
    assert_eq!(derived(k, s, 2, 14), hex("fa31791685ca444a9e07c6c64e93"));
    assert_eq!(
        derived(k, s, 1, 20),
        hex("fd9c32d39ed5fbb5a9dc96b30818454d1313dc05")
    );
}

/// The AES-CM keystream of RFC 3711 B.2 (AES-128) and RFC 6188 §7.1 (AES-256): session key
/// and salt given, SSRC 0, index 0, three blocks; through the IV and cipher Fluo encrypts
/// payloads with.
#[test]
fn keystream_matches_rfc_3711_b2_and_rfc_6188_7_1() {
    let salt = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD");
    for (profile, key, stream) in [
        (
            Profile::Aes128CmSha1_80,
            "2B7E151628AED2A6ABF7158809CF4F3C",
            "E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB \
             41E95B3BB0A2E8DD477901E4FCA894C0",
        ),
        (
            Profile::Aes256CmSha1_80,
            "57f82fe3613fd170a85ec93c40b1f0922ec4cb0dc025b58272147cc438944a98",
            "92bdd28a93c3f52511c677d08b5515a4 9da71b2378a854f67050756ded165bac \
             63c4868b7096d88421b563b8c94c9a31",
        ),
    ] {
        let keys = Keys::from_session(profile, &hex(key), &salt, &[0; 20]).unwrap();
        let iv = keys.cm_iv(0, 0);
        assert_eq!(iv.to_vec(), hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000"));
        let Cipher::Cm(cm) = &keys.cipher else {
            panic!("AES-CM keys")
        };
        let mut data = [0u8; 48];
        cm.encrypt(iv, &mut data).unwrap();
        assert_eq!(data.to_vec(), hex(stream), "{profile:?}");
    }
}

fn kat_context(profile: Profile) -> SrtpContext {
    let mut inline = vec![0x22u8; profile.key_len()];
    inline.extend_from_slice(&[0x44; 14]);
    SrtpContext::from_inline(profile, &inline).unwrap()
}

/// An SRTP packet as libsrtp protects it (AES_CM_128_HMAC_SHA1_80, master key 0x22..,
/// salt 0x44.., SSRC 0x01020304, sequence 1, twenty 0xa5 bytes), and back.
#[test]
fn rtp_matches_a_packet_written_by_libsrtp() {
    let ctx = kat_context(Profile::Aes128CmSha1_80);
    let mut pkt = hex("800000010000000001020304");
    pkt.extend_from_slice(&[0xa5; 20]);
    let plain = pkt.clone();
    ctx.protect_rtp(&mut pkt, 12, 1).unwrap();
    let expected = hex(
        "800000010000000001020304 f5b44b7e3ad4eb057bc6480c45df6547bb70bcc2 \
         7b136e1f3d3a62821b15",
    );
    assert_eq!(pkt, expected);
    ctx.unprotect_rtp(&mut pkt, 12, 1).unwrap();
    assert_eq!(pkt, plain);
}

/// An SRTCP BYE as libsrtp protects it with AES_CM_128_HMAC_SHA1_32 and a 32-bit SRTCP tag
/// (what Kurento's srtpenc writes), SRTCP index 1, and back.
#[test]
fn rtcp_matches_a_packet_written_by_libsrtp_with_a_32_bit_tag() {
    let mut ctx = kat_context(Profile::Aes128CmSha1_32);
    let plain = hex("81cb0002 01020304 01620000");
    let mut pkt = plain.clone();
    ctx.seal_rtcp_at(&mut pkt, 1).unwrap();
    assert_eq!(pkt, hex("81cb0002 01020304 87c9fcdb 80000001 e9442fcc"));
    let mut out = vec![];
    assert_eq!(ctx.unprotect_rtcp(&pkt, &mut out), Ok(1));
    assert_eq!(out, plain);
    // The RFC's 80-bit SRTCP tag from a `_32` peer is read too.
    let rfc = SrtpContext::from_inline(Profile::Aes128CmSha1_80, &{
        let mut k = vec![0x22u8; 16];
        k.extend_from_slice(&[0x44; 14]);
        k
    })
    .unwrap();
    let mut long = plain.clone();
    rfc.seal_rtcp_at(&mut long, 7).unwrap();
    assert_eq!(long.len(), plain.len() + 14);
    assert_eq!(ctx.unprotect_rtcp(&long, &mut out), Ok(7));
    assert_eq!(out, plain);
    // What Fluo sends starts at index 0 and counts up.
    let mut first = plain.clone();
    ctx.protect_rtcp(&mut first).unwrap();
    assert_eq!(first.len(), plain.len() + 8);
    assert_eq!(ctx.srtcp_index(), Some(1));
}

fn rtp(seq: u16, len: usize) -> Vec<u8> {
    let mut v = vec![0x80, 96];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&1234u32.to_be_bytes());
    v.extend_from_slice(&0xcafe_f00du32.to_be_bytes());
    v.extend((0..len).map(|i| i as u8));
    v
}

const ALL: [Profile; 6] = [
    Profile::Aes128CmSha1_80,
    Profile::Aes128CmSha1_32,
    Profile::Aes256CmSha1_80,
    Profile::Aes256CmSha1_32,
    Profile::AeadAes128Gcm,
    Profile::AeadAes256Gcm,
];

#[test]
fn every_profile_round_trips_rtp_and_rtcp_and_rejects_a_flipped_bit() {
    for profile in ALL {
        let material: Vec<u8> = (0..profile.material_len() as u8).collect();
        let mut tx = SrtpContext::from_dtls(profile, &material, false).unwrap();
        let rx = SrtpContext::from_dtls(profile, &material, false).unwrap();
        let other = SrtpContext::from_dtls(profile, &material, true).unwrap();
        let plain = rtp(7, 1200);
        let mut p = plain.clone();
        tx.protect_rtp(&mut p, 12, (3 << 16) | 7).unwrap();
        assert_eq!(p.len(), plain.len() + profile.rtp_overhead());
        assert_ne!(p[12..plain.len()], plain[12..]);
        let mut q = p.clone();
        rx.unprotect_rtp(&mut q, 12, (3 << 16) | 7).unwrap();
        assert_eq!(q, plain, "{profile:?}");
        // Wrong ROC, other side's keys, or a flipped bit: refused.
        let refused = Err(SrtpError::Auth);
        assert_eq!(rx.unprotect_rtp(&mut p.clone(), 12, 7), refused);
        assert_eq!(
            other.unprotect_rtp(&mut p.clone(), 12, (3 << 16) | 7),
            refused
        );
        let mut bad = p.clone();
        bad[40] ^= 1;
        assert_eq!(rx.unprotect_rtp(&mut bad, 12, (3 << 16) | 7), refused);

        let rr = hex("81C90007 11111111 22222222 00000001 00000002 00000003 00000004 00000005");
        for expected in 0..3u32 {
            let mut c = rr.clone();
            tx.protect_rtcp(&mut c).unwrap();
            assert_eq!(c.len(), rr.len() + profile.rtcp_overhead());
            let mut out = vec![];
            assert_eq!(rx.unprotect_rtcp(&c, &mut out), Ok(expected));
            assert_eq!(out, rr, "{profile:?}");
            c[10] ^= 1;
            assert_eq!(rx.unprotect_rtcp(&c, &mut out), Err(SrtpError::Auth));
        }
    }
}

#[test]
fn indices_past_their_range_are_refused_not_wrapped() {
    let p = Profile::AeadAes128Gcm;
    let mut ctx = SrtpContext::new(p, &[1; 16], &[2; 12]).unwrap();
    let mut pkt = rtp(1, 10);
    assert_eq!(
        ctx.protect_rtp(&mut pkt, 12, 1 << 48),
        Err(SrtpError::Exhausted)
    );
    ctx.srtcp_index = Some(MAX_RTCP_INDEX);
    let mut c = hex("81C90001 11111111");
    ctx.protect_rtcp(&mut c).unwrap();
    assert_eq!(ctx.srtcp_index(), None, "the last index was used");
    let mut c = hex("81C90001 11111111");
    assert_eq!(ctx.protect_rtcp(&mut c), Err(SrtpError::Exhausted));
}

#[test]
fn wrong_lengths_and_unencrypted_srtcp_are_errors() {
    assert_eq!(
        SrtpContext::new(Profile::AeadAes256Gcm, &[0; 16], &[0; 12]).err(),
        Some(SrtpError::KeyLength)
    );
    assert_eq!(
        SrtpContext::from_inline(Profile::Aes256CmSha1_32, &[0; 30]).err(),
        Some(SrtpError::KeyLength)
    );
    let ctx = SrtpContext::from_inline(Profile::Aes128CmSha1_80, &[9; 30]).unwrap();
    let mut out = vec![];
    assert_eq!(
        ctx.unprotect_rtcp(&[0x80, 0xc9], &mut out),
        Err(SrtpError::Malformed)
    );
    // A correctly tagged packet with the E bit clear.
    let mut c = hex("81C90001 11111111");
    ctx.seal_rtcp_at(&mut c, 5).unwrap();
    let n = c.len();
    c[n - 14] &= 0x7f;
    let Cipher::Cm(cm) = &ctx.rtcp.cipher else {
        panic!("AES-CM")
    };
    let tag = cm.mac(&[&c[..n - 10]]);
    c[n - 10..].copy_from_slice(&tag[..10]);
    assert_eq!(
        ctx.unprotect_rtcp(&c, &mut out),
        Err(SrtpError::NotEncrypted)
    );
}

#[test]
fn rtp_header_length_covers_csrcs_and_extensions_and_nothing_else() {
    assert_eq!(rtp_header_len(&rtp(1, 0)), Some(12));
    let mut p = rtp(1, 8);
    p[0] = 0x92; // two CSRCs and an extension
    p.splice(12..12, [0u8; 8]);
    p.splice(20..20, [0xbe, 0xde, 0, 1, 0x10, 1, 0, 0]);
    assert_eq!(rtp_header_len(&p), Some(28));
    assert_eq!(rtp_header_len(&p[..27]), None);
    assert_eq!(rtp_header_len(&[0x40; 20]), None, "version 1");
    assert_eq!(rtp_header_len(&[]), None);
    let iv = Keys::from_session(Profile::AeadAes128Gcm, &[1; 16], &[0; 12], &[0; 20])
        .unwrap()
        .gcm_iv(0x0102_0304, (0x0a0b_0c0d << 16) | 0xeeff);
    assert_eq!(iv, [0, 0, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 0xee, 0xff]);
}
