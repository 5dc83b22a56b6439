//! SRTP protect cost per 1200-byte RTP packet (20-byte header with extensions), for the
//! candidates of the egress path. Each iteration copies the plain packet into a reused
//! buffer and protects it (every candidate needs the plaintext somewhere first); CPU time of
//! the thread, in ns per packet, over several runs.
//!
//! `cargo bench -p fluo-egress --bench protect [--features libsrtp] [-- RUNS]`

use fluo_egress::{Profile, SrtpContext};
use std::hint::black_box;
use str0m::crypto::{AeadAes128Gcm, AeadAes256Gcm};

const PACKETS: u64 = 200_000;
const LEN: usize = 1200;
const HLEN: usize = 20;

fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn plain_packet() -> Vec<u8> {
    let mut p = vec![0x90, 96, 0, 1, 0, 0, 0x23, 0x28, 0xca, 0xfe, 0xf0, 0x0d];
    p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, b'1', 0x22, 0]);
    p.extend((0..LEN - HLEN).map(|i| i as u8));
    assert_eq!(p.len(), LEN);
    p
}

/// ns per packet of `f` (called once per packet with the packet's index).
fn measure(mut f: impl FnMut(u64)) -> f64 {
    for i in 0..10_000 {
        f(i);
    }
    // Indices go on from the warm-up: libsrtp refuses to protect an index twice.
    let t0 = thread_cpu_ns();
    for i in 10_000..10_000 + PACKETS {
        f(i);
    }
    (thread_cpu_ns() - t0) as f64 / PACKETS as f64
}

fn fluo(profile: Profile) -> impl FnMut(u64) {
    let material: Vec<u8> = (0..profile.material_len() as u8).collect();
    let ctx = SrtpContext::from_dtls(profile, &material, false).unwrap();
    let plain = plain_packet();
    let mut buf = Vec::with_capacity(1500);
    move |i| {
        buf.clear();
        buf.extend_from_slice(&plain);
        buf[2..4].copy_from_slice(&(i as u16).to_be_bytes());
        ctx.protect_rtp(&mut buf, HLEN, i).unwrap();
        black_box(&buf);
    }
}

/// str0m's public cipher trait (what str0m's own protect_rtp calls), Fluo computing the IV
/// with str0m-proto's public `rtp_iv`. `alloc`: a fresh output Vec per packet, as
/// str0m's `SrtpContext::protect_rtp` makes.
fn str0m_trait(gcm256: bool, alloc: bool) -> impl FnMut(u64) {
    let provider = str0m::crypto::from_feature_flags().srtp_provider;
    let mut c256 = provider.aead_aes_256_gcm().create_cipher([7; 32], true);
    let mut c128 = provider.aead_aes_128_gcm().create_cipher([7; 16], true);
    let plain = plain_packet();
    let mut out = Vec::with_capacity(1500);
    move |i| {
        let mut fresh;
        let out: &mut Vec<u8> = if alloc {
            fresh = vec![0u8; LEN + 16];
            &mut fresh
        } else {
            out.clear();
            out.resize(LEN + 16, 0);
            &mut out
        };
        let (roc, seq) = ((i >> 16) as u32, i as u16);
        out[..HLEN].copy_from_slice(&plain[..HLEN]);
        if gcm256 {
            let iv = AeadAes256Gcm::rtp_iv([3; 12], 0xcafe_f00d, roc, seq);
            c256.encrypt(&iv, &plain[..HLEN], &plain[HLEN..], &mut out[HLEN..])
                .unwrap();
        } else {
            let iv = AeadAes128Gcm::rtp_iv([3; 12], 0xcafe_f00d, roc, seq);
            c128.encrypt(&iv, &plain[..HLEN], &plain[HLEN..], &mut out[HLEN..])
                .unwrap();
        }
        black_box(&out);
    }
}

#[cfg(feature = "libsrtp")]
mod libsrtp {
    //! Debian's libsrtp2 (2.5.0, built on OpenSSL), through the few declarations used here.
    use std::os::raw::{c_int, c_uint, c_ulong, c_void};

    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct CryptoPolicy {
        cipher_type: u32,
        cipher_key_len: c_int,
        auth_type: u32,
        auth_key_len: c_int,
        auth_tag_len: c_int,
        sec_serv: c_int,
    }

    #[repr(C)]
    pub struct Policy {
        ssrc_type: c_int,
        ssrc_value: c_uint,
        rtp: CryptoPolicy,
        rtcp: CryptoPolicy,
        key: *mut u8,
        keys: *mut c_void,
        num_master_keys: c_ulong,
        deprecated_ekt: *mut c_void,
        window_size: c_ulong,
        allow_repeat_tx: c_int,
        enc_xtn_hdr: *mut c_int,
        enc_xtn_hdr_count: c_int,
        next: *mut Policy,
    }

    #[link(name = "srtp2")]
    extern "C" {
        fn srtp_init() -> c_int;
        fn srtp_create(session: *mut *mut c_void, policy: *const Policy) -> c_int;
        fn srtp_protect(ctx: *mut c_void, hdr: *mut c_void, len: *mut c_int) -> c_int;
        fn srtp_crypto_policy_set_aes_gcm_256_16_auth(p: *mut CryptoPolicy);
        fn srtp_crypto_policy_set_aes_gcm_128_16_auth(p: *mut CryptoPolicy);
        fn srtp_crypto_policy_set_rtp_default(p: *mut CryptoPolicy);
    }

    pub struct Session(*mut c_void);

    impl Session {
        /// `which`: 256, 128 (GCM) or 80 (AES_CM_128_HMAC_SHA1_80).
        pub fn new(which: u32) -> Session {
            // SAFETY: plain C calls with valid pointers; the key outlives srtp_create, which
            // copies it.
            unsafe {
                static INIT: std::sync::Once = std::sync::Once::new();
                INIT.call_once(|| {
                    let r = srtp_init();
                    assert_eq!(r, 0, "srtp_init: error {r}");
                });
                let mut p: Policy = std::mem::zeroed();
                match which {
                    256 => {
                        srtp_crypto_policy_set_aes_gcm_256_16_auth(&mut p.rtp);
                        srtp_crypto_policy_set_aes_gcm_256_16_auth(&mut p.rtcp);
                    }
                    128 => {
                        srtp_crypto_policy_set_aes_gcm_128_16_auth(&mut p.rtp);
                        srtp_crypto_policy_set_aes_gcm_128_16_auth(&mut p.rtcp);
                    }
                    _ => {
                        srtp_crypto_policy_set_rtp_default(&mut p.rtp);
                        srtp_crypto_policy_set_rtp_default(&mut p.rtcp);
                    }
                }
                let mut key = [5u8; 46];
                p.ssrc_type = 3; // ssrc_any_outbound
                p.key = key.as_mut_ptr();
                p.window_size = 1024;
                let mut s = std::ptr::null_mut();
                assert_eq!(srtp_create(&mut s, &p), 0);
                Session(s)
            }
        }

        pub fn protect(&mut self, buf: &mut Vec<u8>) {
            let mut len = buf.len() as c_int;
            buf.reserve(16 + 128);
            // SAFETY: buf has room for the tag (SRTP_MAX_TRAILER_LEN is 16 + MKI here).
            let r = unsafe { srtp_protect(self.0, buf.as_mut_ptr() as *mut c_void, &mut len) };
            assert_eq!(r, 0, "srtp_protect: error {r}");
            // SAFETY: libsrtp wrote `len` bytes.
            unsafe { buf.set_len(len as usize) };
        }
    }
}

#[cfg(feature = "libsrtp")]
fn libsrtp(which: u32) -> impl FnMut(u64) {
    let mut s = libsrtp::Session::new(which);
    let plain = plain_packet();
    let mut buf = Vec::with_capacity(1500);
    move |i| {
        buf.clear();
        buf.extend_from_slice(&plain);
        buf[2..4].copy_from_slice(&(i as u16).to_be_bytes());
        s.protect(&mut buf);
        black_box(&buf);
    }
}

/// An RR with one report block and a NACK (what a viewer sends), 48 bytes.
fn viewer_rtcp() -> Vec<u8> {
    let mut v = vec![0x81, 201, 0, 7, 0, 0, 0, 1];
    v.extend_from_slice(&[0xca, 0xfe, 0xf0, 0x0d]);
    v.extend_from_slice(&[0; 20]);
    v.extend_from_slice(&[
        0x81, 205, 0, 3, 0, 0, 0, 1, 0xca, 0xfe, 0xf0, 0x0d, 0, 7, 0, 0,
    ]);
    v
}

/// The viewer's RTCP read by the egress before str0m reads it too: one more decrypt.
fn rtcp_read() -> impl FnMut(u64) {
    let p = Profile::AeadAes256Gcm;
    let material: Vec<u8> = (0..p.material_len() as u8).collect();
    let mut viewer = SrtpContext::from_dtls(p, &material, true).unwrap();
    let reader = SrtpContext::from_dtls(p, &material, true).unwrap();
    let mut sealed = viewer_rtcp();
    viewer.protect_rtcp(&mut sealed).unwrap();
    let mut out = Vec::with_capacity(1500);
    move |_| {
        let _ = black_box(reader.unprotect_rtcp(&sealed, &mut out));
    }
}

/// str0m's SR + SDES (56 bytes) re-indexed: decrypt, patch, encrypt.
fn rtcp_reindex() -> impl FnMut(u64) {
    let p = Profile::AeadAes256Gcm;
    let material: Vec<u8> = (0..p.material_len() as u8).collect();
    let mut str0m = SrtpContext::from_dtls(p, &material, false).unwrap();
    let mut fluo = SrtpContext::from_dtls(p, &material, false).unwrap();
    let mut sr = vec![0x80, 200, 0, 6, 0xca, 0xfe, 0xf0, 0x0d];
    sr.extend_from_slice(&[0; 20]);
    sr.extend_from_slice(&[0x81, 202, 0, 6, 0xca, 0xfe, 0xf0, 0x0d, 1, 16]);
    sr.extend_from_slice(b"0123456789abcdef");
    sr.extend_from_slice(&[0, 0]);
    str0m.protect_rtcp(&mut sr).unwrap();
    let mut out = Vec::with_capacity(1500);
    move |_| {
        fluo.unprotect_rtcp(&sr, &mut out).unwrap();
        out[20..24].copy_from_slice(&[1, 2, 3, 4]);
        fluo.protect_rtcp(&mut out).unwrap();
        black_box(&out);
    }
}

fn copy_only() -> impl FnMut(u64) {
    let plain = plain_packet();
    let mut buf = Vec::with_capacity(1500);
    move |i| {
        buf.clear();
        buf.extend_from_slice(&plain);
        buf[2..4].copy_from_slice(&(i as u16).to_be_bytes());
        black_box(&buf);
    }
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    type Case = (&'static str, Box<dyn Fn() -> Box<dyn FnMut(u64)>>);
    let mut cases: Vec<Case> = vec![
        (
            "copy only (the buffer fill every candidate has)",
            Box::new(|| Box::new(copy_only())),
        ),
        (
            "fluo-egress aws-lc-rs in place, AEAD_AES_256_GCM",
            Box::new(|| Box::new(fluo(Profile::AeadAes256Gcm))),
        ),
        (
            "fluo-egress aws-lc-rs in place, AEAD_AES_128_GCM",
            Box::new(|| Box::new(fluo(Profile::AeadAes128Gcm))),
        ),
        (
            "fluo-egress aws-lc-rs in place, AES_CM_128_HMAC_SHA1_80",
            Box::new(|| Box::new(fluo(Profile::Aes128CmSha1_80))),
        ),
        (
            "fluo-egress aws-lc-rs in place, AES_CM_128_HMAC_SHA1_32 (SDES)",
            Box::new(|| Box::new(fluo(Profile::Aes128CmSha1_32))),
        ),
        (
            "fluo-egress aws-lc-rs in place, AES_256_CM_HMAC_SHA1_80 (SDES)",
            Box::new(|| Box::new(fluo(Profile::Aes256CmSha1_80))),
        ),
        (
            "str0m cipher trait, reused output, AEAD_AES_256_GCM",
            Box::new(|| Box::new(str0m_trait(true, false))),
        ),
        (
            "str0m cipher trait, new Vec per packet (as str0m), AEAD_AES_256_GCM",
            Box::new(|| Box::new(str0m_trait(true, true))),
        ),
        (
            "str0m cipher trait, reused output, AEAD_AES_128_GCM",
            Box::new(|| Box::new(str0m_trait(false, false))),
        ),
    ];
    cases.push((
        "RTCP: a viewer's RR + NACK (48 B) decrypted by the egress, GCM-256",
        Box::new(|| Box::new(rtcp_read())),
    ));
    cases.push((
        "RTCP: str0m's SR + SDES (56 B) decrypted, patched, encrypted, GCM-256",
        Box::new(|| Box::new(rtcp_reindex())),
    ));
    #[cfg(feature = "libsrtp")]
    {
        cases.push((
            "libsrtp2 2.5.0 (Debian, OpenSSL), AEAD_AES_256_GCM",
            Box::new(|| Box::new(libsrtp(256))),
        ));
        cases.push((
            "libsrtp2 2.5.0 (Debian, OpenSSL), AEAD_AES_128_GCM",
            Box::new(|| Box::new(libsrtp(128))),
        ));
        cases.push((
            "libsrtp2 2.5.0 (Debian, OpenSSL), AES_CM_128_HMAC_SHA1_80",
            Box::new(|| Box::new(libsrtp(80))),
        ));
    }
    cases.shrink_to_fit();
    println!("SRTP protect, {LEN}-byte RTP packet, thread CPU ns per packet, {PACKETS} packets per run, {runs} runs");
    println!(
        "{:<70} | {:>7} | {:>7} | {:>7}",
        "candidate", "min", "median", "max"
    );
    for (name, make) in &cases {
        let mut v: Vec<f64> = (0..runs).map(|_| measure(make())).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{name:<70} | {:>7.1} | {:>7.1} | {:>7.1}",
            v[0],
            v[v.len() / 2],
            v[v.len() - 1]
        );
    }
}
