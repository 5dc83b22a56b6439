//! Fluo's SDES SRTP against libsrtp, through GStreamer's srtpenc / srtpdec configured as
//! fluo-gst's RtpEndpoint configures them today (and as Kurento does: the suite's cipher and
//! tag for RTP and RTCP alike), for each of Kurento's four suites and both ways: what Fluo
//! protects srtpdec accepts and decrypts to the same bytes, what srtpenc protects Fluo accepts
//! and decrypts to the same bytes. 40 RTP packets across a sequence number rollover, and
//! RTCP.

use fluo_egress::{Profile, SdesReceiver, SdesSender};
use fluo_sfu::rtp::write_rtp;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// GStreamer's names of a suite's cipher and authentication.
fn gst_names(p: Profile) -> (&'static str, &'static str) {
    match p {
        Profile::Aes128CmSha1_80 => ("aes-128-icm", "hmac-sha1-80"),
        Profile::Aes128CmSha1_32 => ("aes-128-icm", "hmac-sha1-32"),
        Profile::Aes256CmSha1_80 => ("aes-256-icm", "hmac-sha1-80"),
        Profile::Aes256CmSha1_32 => ("aes-256-icm", "hmac-sha1-32"),
        other => panic!("not an SDES suite: {other:?}"),
    }
}

/// GStreamer with the srtp plugin, or the test cannot run here (a failure under CI).
fn gstreamer_srtp() -> bool {
    if let Err(e) = gst::init() {
        fluo_testkit::skip::or_fail("SDES against libsrtp", &format!("GStreamer: {e}"));
        return false;
    }
    for f in ["srtpenc", "srtpdec", "appsrc", "appsink"] {
        if gst::ElementFactory::find(f).is_none() {
            fluo_testkit::skip::or_fail(
                "SDES against libsrtp",
                &format!("no GStreamer element {f} (gstreamer1.0-plugins-bad)"),
            );
            return false;
        }
    }
    true
}

fn key(p: Profile) -> Vec<u8> {
    (0..p.inline_len())
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(3))
        .collect()
}

fn rtp_packets() -> Vec<Vec<u8>> {
    (0..40u16)
        .map(|i| {
            let mut p = vec![];
            let payload: Vec<u8> = (0..100 + usize::from(i) * 7).map(|b| b as u8).collect();
            write_rtp(
                &mut p,
                96,
                i % 5 == 0,
                65_520u16.wrapping_add(i),
                u32::from(i) * 3000,
                0x1234_5678,
                &payload,
            );
            p
        })
        .collect()
}

fn rtcp_packets() -> Vec<Vec<u8>> {
    // An RR with one block, then a BYE, each from the sender's SSRC.
    let mut rr = vec![0x81, 201, 0, 7, 0x12, 0x34, 0x56, 0x78];
    rr.extend_from_slice(&[0xab; 24]);
    let bye = vec![0x81, 203, 0, 1, 0x12, 0x34, 0x56, 0x78];
    vec![rr, bye]
}

struct Transform {
    pipeline: gst::Pipeline,
    rtp_in: gst_app::AppSrc,
    rtcp_in: gst_app::AppSrc,
    rtp_out: gst_app::AppSink,
    rtcp_out: gst_app::AppSink,
}

impl Transform {
    fn launch(desc: &str) -> Transform {
        let pipeline = gst::parse::launch(desc)
            .expect("a pipeline")
            .downcast::<gst::Pipeline>()
            .expect("a pipeline");
        let get = |name: &str| pipeline.by_name(name).expect(name);
        Transform {
            rtp_in: get("rtp").downcast().expect("appsrc"),
            rtcp_in: get("rtcp").downcast().expect("appsrc"),
            rtp_out: get("rtpout").downcast().expect("appsink"),
            rtcp_out: get("rtcpout").downcast().expect("appsink"),
            pipeline,
        }
    }

    fn play(&self) {
        self.pipeline
            .set_state(gst::State::Playing)
            .expect("playing");
    }

    /// Pushes each packet into `src` and pulls what comes out of `sink`.
    fn through(
        src: &gst_app::AppSrc,
        sink: &gst_app::AppSink,
        packets: &[Vec<u8>],
    ) -> Vec<Vec<u8>> {
        for p in packets {
            src.push_buffer(gst::Buffer::from_mut_slice(p.clone()))
                .expect("pushed");
        }
        (0..packets.len())
            .map_while(|_| {
                let sample = sink.try_pull_sample(gst::ClockTime::from_seconds(5))?;
                let buffer = sample.buffer()?;
                let map = buffer.map_readable().ok()?;
                Some(map.as_slice().to_vec())
            })
            .collect()
    }
}

impl Drop for Transform {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[test]
fn what_fluo_protects_libsrtp_decrypts_for_every_sdes_suite() {
    if !gstreamer_srtp() {
        return;
    }
    for profile in Profile::SDES {
        let (c, a) = gst_names(profile);
        let t = Transform::launch(
            "srtpdec name=dec \
             appsrc name=rtp format=time is-live=true caps=application/x-srtp ! dec.rtp_sink \
             dec.rtp_src ! appsink name=rtpout sync=false async=false \
             appsrc name=rtcp format=time is-live=true caps=application/x-srtcp ! dec.rtcp_sink \
             dec.rtcp_src ! appsink name=rtcpout sync=false async=false",
        );
        let dec = t.pipeline.by_name("dec").expect("srtpdec");
        let k = gst::Buffer::from_mut_slice(key(profile));
        dec.connect("request-key", false, move |_| {
            let caps = gst::Caps::builder("application/x-srtp")
                .field("srtp-key", &k)
                .field("srtp-cipher", c)
                .field("srtp-auth", a)
                .field("srtcp-cipher", c)
                .field("srtcp-auth", a)
                .build();
            Some(caps.to_value())
        });
        t.play();
        let mut fluo = SdesSender::new(profile, &key(profile)).expect("a key");
        let plain = rtp_packets();
        let protected: Vec<Vec<u8>> = plain
            .iter()
            .map(|p| {
                let mut q = p.clone();
                fluo.protect_rtp(&mut q).expect("protected");
                q
            })
            .collect();
        let got = Transform::through(&t.rtp_in, &t.rtp_out, &protected);
        assert_eq!(
            got.len(),
            plain.len(),
            "{profile:?}: srtpdec passed them all"
        );
        assert_eq!(got, plain, "{profile:?}");
        let rtcp = rtcp_packets();
        let protected: Vec<Vec<u8>> = rtcp
            .iter()
            .map(|p| {
                let mut q = p.clone();
                fluo.protect_rtcp(&mut q).expect("protected");
                q
            })
            .collect();
        let got = Transform::through(&t.rtcp_in, &t.rtcp_out, &protected);
        assert_eq!(got, rtcp, "{profile:?}: SRTCP");
    }
}

#[test]
fn what_libsrtp_protects_fluo_decrypts_for_every_sdes_suite() {
    if !gstreamer_srtp() {
        return;
    }
    for profile in Profile::SDES {
        let (c, a) = gst_names(profile);
        let hex: String = key(profile).iter().map(|b| format!("{b:02x}")).collect();
        let t = Transform::launch(&format!(
            "srtpenc name=enc key={hex} rtp-cipher={c} rtp-auth={a} rtcp-cipher={c} \
             rtcp-auth={a} \
             appsrc name=rtp format=time is-live=true caps=application/x-rtp ! enc.rtp_sink_0 \
             enc.rtp_src_0 ! appsink name=rtpout sync=false async=false \
             appsrc name=rtcp format=time is-live=true caps=application/x-rtcp ! enc.rtcp_sink_0 \
             enc.rtcp_src_0 ! appsink name=rtcpout sync=false async=false"
        ));
        t.play();
        let mut fluo = SdesReceiver::new(profile, &key(profile)).expect("a key");
        let plain = rtp_packets();
        let protected = Transform::through(&t.rtp_in, &t.rtp_out, &plain);
        assert_eq!(
            protected.len(),
            plain.len(),
            "{profile:?}: srtpenc passed them all"
        );
        for (p, s) in plain.iter().zip(&protected) {
            assert_eq!(s.len(), p.len() + profile.rtp_overhead(), "{profile:?}");
            let mut q = s.clone();
            fluo.unprotect_rtp(&mut q)
                .expect("Fluo accepts libsrtp's SRTP");
            assert_eq!(&q, p, "{profile:?}");
        }
        let rtcp = rtcp_packets();
        let protected = Transform::through(&t.rtcp_in, &t.rtcp_out, &rtcp);
        assert_eq!(protected.len(), rtcp.len());
        for (p, s) in rtcp.iter().zip(&protected) {
            let mut out = vec![];
            fluo.unprotect_rtcp(s, &mut out)
                .expect("Fluo accepts libsrtp's SRTCP");
            assert_eq!(&out, p, "{profile:?}");
        }
    }
}
