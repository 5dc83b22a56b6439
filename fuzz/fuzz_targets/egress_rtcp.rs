//! The egress's readers of what peers send: SRTCP unprotect (the viewer's keys, str0m's keys,
//! an SDES receiver), SDES SRTP unprotect, and the viewer-RTCP reader behind authentication
//! (NACK answers from the shared cache, report blocks taken out for str0m, PLI/FIR counts,
//! transport-wide feedback matched against the sent-packet log) and
//! str0m's RTCP re-indexed.
//!
//! The input is `[flags] [bytes]`. The bytes go to every reader as they came (they must be
//! refused: no key), then, by `flags`, protected first with the right keys so that the
//! readers see them as authentic plaintext: bit 0 as the viewer's SRTCP, bit 1 as str0m's
//! SRTCP, bit 2 as SDES RTP and RTCP. The viewer has forwarded video and audio before, so
//! NACKs find packets; its state is kept between inputs (rebuilt every 50 000).
#![no_main]

use fluo_egress::{
    Batch, Clock, ExtPlan, Path, Profile, Rtx, SdesReceiver, SdesSender, SocketId, Source,
    SourcePacket, SrtpContext, StreamOut, Viewer,
};
use fluo_sfu::MediaKind;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::time::{Duration, Instant};

const P: Profile = Profile::AeadAes256Gcm;
const SDES: Profile = Profile::Aes128CmSha1_32;

struct State {
    viewer: Viewer,
    source: Source,
    batch: Batch,
    out: Vec<u8>,
    viewer_side: SrtpContext,
    str0m_side: SrtpContext,
    sdes_tx: SdesSender,
    sdes_rx: SdesReceiver,
    t0: Instant,
    runs: u32,
}

fn build() -> State {
    let material: Vec<u8> = (0..P.material_len() as u8).collect();
    let ctx = |client| SrtpContext::from_dtls(P, &material, client).expect("keys");
    let path = Path {
        socket: SocketId(0),
        to: "127.0.0.1:9".parse().expect("an address"),
        tos: 0xb8,
    };
    let mut viewer = Viewer::new(ctx(false), ctx(true), path, Clock::new());
    let mut plan = ExtPlan {
        mid: Some((4, b"1".to_vec())),
        abs_send_time: Some(3),
        two_byte: true,
        ..ExtPlan::default()
    };
    plan.copy_extension(1, 5);
    // Transport-wide sequence numbers written and recorded: the viewer's feedback is read
    // against the record (`SentLog`).
    plan.transport_cc = Some(6);
    let video = StreamOut::new(0x100, 96, 90_000, Some(Rtx::new(0x900, 97)), plan.clone());
    viewer.set_stream(MediaKind::Video, Some(video));
    viewer.set_stream(
        MediaKind::Audio,
        Some(StreamOut::new(0x200, 111, 48_000, None, plan)),
    );
    let mut source = Source::new();
    let mut batch = Batch::new();
    let t0 = Instant::now();
    viewer.log_sent(t0);
    let mut pkt = vec![];
    for i in 0..300u16 {
        let now = t0 + Duration::from_millis(u64::from(i) * 10);
        fluo_sfu::rtp::write_rtp(
            &mut pkt,
            96,
            i % 3 == 0,
            100 + i,
            u32::from(i) * 3000,
            7,
            &[9; 700],
        );
        source.insert(now, 100 + i, &pkt);
        if let Some(sp) = SourcePacket::parse(&pkt) {
            viewer.forward(now, MediaKind::Video, &sp, &mut batch);
            viewer.forward(now, MediaKind::Audio, &sp, &mut batch);
        }
        batch.clear();
    }
    let inline: Vec<u8> = (0..SDES.inline_len() as u8).collect();
    State {
        viewer,
        source,
        batch,
        out: Vec::with_capacity(1500),
        viewer_side: ctx(true),
        str0m_side: ctx(false),
        sdes_tx: SdesSender::new(SDES, &inline).expect("a key"),
        sdes_rx: SdesReceiver::new(SDES, &inline).expect("a key"),
        t0,
        runs: 0,
    }
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    STATE.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|s| s.runs >= 50_000) {
            *cell = Some(build());
        }
        let Some(s) = cell.as_mut() else {
            return;
        };
        s.runs += 1;
        let now = s.t0 + Duration::from_millis(3000 + u64::from(s.runs));
        // As it came: no reader may accept it.
        let r =
            s.viewer
                .read_viewer_rtcp(now, bytes, Some(&mut s.source), &mut s.batch, &mut s.out);
        assert!(r.is_err(), "unauthenticated viewer RTCP accepted");
        assert!(s.viewer.reindex_str0m_rtcp(bytes, &mut s.batch).is_err());
        assert!(s.sdes_rx.unprotect_rtcp(bytes, &mut s.out).is_err());
        assert!(s.sdes_rx.unprotect_rtp(&mut bytes.to_vec()).is_err());
        if flags & 1 != 0 && bytes.len() >= 8 {
            let mut c = bytes.to_vec();
            if s.viewer_side.protect_rtcp(&mut c).is_ok() {
                let _ = s.viewer.read_viewer_rtcp(
                    now,
                    &c,
                    Some(&mut s.source),
                    &mut s.batch,
                    &mut s.out,
                );
            }
        }
        if flags & 2 != 0 && bytes.len() >= 8 {
            let mut c = bytes.to_vec();
            if s.str0m_side.protect_rtcp(&mut c).is_ok() {
                let _ = s.viewer.reindex_str0m_rtcp(&c, &mut s.batch);
            }
        }
        if flags & 4 != 0 {
            let mut c = bytes.to_vec();
            if s.sdes_tx.protect_rtp(&mut c).is_ok() {
                let _ = s.sdes_rx.unprotect_rtp(&mut c);
            }
            let mut c = bytes.to_vec();
            if bytes.len() >= 8 && s.sdes_tx.protect_rtcp(&mut c).is_ok() {
                let _ = s.sdes_rx.unprotect_rtcp(&c, &mut s.out);
            }
        }
        s.batch.clear();
    });
});
