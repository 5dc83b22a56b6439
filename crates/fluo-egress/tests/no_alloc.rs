//! The egress path allocates nothing per packet per viewer once its buffers are warm:
//! forwarding (rewrite, header with extensions, protect, queue), answering a NACK from the
//! shared cache, and sending the batch with `sendmmsg`.

use fluo_egress::{
    Batch, Clock, ExtPlan, Path, Profile, Rtx, Sender, SocketId, Source, SourcePacket, SrtpContext,
    StreamOut, Transport, Viewer,
};
use fluo_sfu::rtcp::write_nack;
use fluo_sfu::MediaKind;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::UdpSocket;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; only counts calls in a const-initialised
// thread-local (which itself never allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

const VIDEO: MediaKind = MediaKind::Video;

struct Loopback(UdpSocket);

impl Transport for Loopback {
    fn udp(&self, _: SocketId) -> Option<BorrowedFd<'_>> {
        Some(self.0.as_fd())
    }

    fn send_other(&mut self, _: &Path, _: &[u8]) {
        panic!("every path is the UDP socket");
    }
}

#[test]
fn forwarding_and_nack_answers_allocate_nothing_after_warm_up() {
    let p = Profile::AeadAes256Gcm;
    let material: Vec<u8> = (0..p.material_len() as u8).collect();
    let clock = Clock::new();
    let mut viewers: Vec<Viewer> = (0..50)
        .map(|i| {
            let path = Path {
                socket: SocketId(0),
                to: format!("127.0.0.2:{}", 5000 + i).parse().unwrap(),
                tos: 0xb8,
            };
            let mut v = Viewer::new(
                SrtpContext::from_dtls(p, &material, false).unwrap(),
                SrtpContext::from_dtls(p, &material, true).unwrap(),
                path,
                clock,
            );
            let mut plan = ExtPlan {
                mid: Some((4, b"1".to_vec())),
                abs_send_time: Some(3),
                ..ExtPlan::default()
            };
            plan.copy_extension(1, 5);
            if i % 2 == 0 {
                // Half of them with a transport-wide sequence number, each packet recorded
                // for a bandwidth estimate (`SentLog`, made here, once).
                plan.transport_cc = Some(6);
                v.log_sent(Instant::now());
            }
            let mut s = StreamOut::new(0x100 + i, 96, 90_000, Some(Rtx::new(0x900 + i, 97)), plan);
            // Every NACK answered: the bound on resends is tested elsewhere.
            s.rtx_ratio_cap = None;
            v.set_stream(VIDEO, Some(s));
            v
        })
        .collect();
    // The viewer's side, to write NACKs it would send.
    let mut viewer_side = SrtpContext::from_dtls(p, &material, true).unwrap();
    let mut source = Source::new();
    let mut batch = Batch::new();
    let mut pkt = Vec::with_capacity(1500);
    let mut nack = Vec::with_capacity(256);
    let mut for_str0m = Vec::with_capacity(256);
    let mut sender = Sender::new();
    let mut transport = Loopback(UdpSocket::bind("127.0.0.1:0").unwrap());
    let payload = vec![0x10u8; 1100];
    let t0 = Instant::now();
    let mut measured_from = None;
    for i in 0..3000u32 {
        if i == 1000 {
            measured_from = Some(allocs());
        }
        let now = t0 + Duration::from_millis(u64::from(i) * 9);
        let seq = 60_000u16.wrapping_add(i as u16);
        // RTP with a one-byte extension block: an element (id 1) the viewers copy.
        pkt.clear();
        pkt.extend_from_slice(&[0x90, 0x80 | 96]);
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(&(i * 3000).to_be_bytes());
        pkt.extend_from_slice(&0xabcdu32.to_be_bytes());
        pkt.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0x85, 0, 0]);
        pkt.extend_from_slice(&payload);
        source.insert(now, seq, &pkt);
        let sp = SourcePacket::parse(&pkt).unwrap();
        for v in viewers.iter_mut() {
            assert!(v.forward(now, VIDEO, &sp, &mut batch));
        }
        if i % 10 == 5 {
            // Viewer 0 loses the packet before last: a NACK, answered from the cache.
            let v = &mut viewers[0];
            let s = v.stream(VIDEO).unwrap();
            let lost = (s.ext_seq().unwrap() as u16).wrapping_sub(1);
            nack.clear();
            write_nack(&mut nack, 1, s.ssrc, &[lost]);
            // With the viewer's SDES (its own SSRC, CNAME "abcd"), which str0m does not get.
            nack.extend_from_slice(&[
                0x81, 202, 0, 3, 0, 0, 0, 1, 1, 4, b'a', b'b', b'c', b'd', 0, 0,
            ]);
            viewer_side.protect_rtcp(&mut nack).unwrap();
            let no_stream = &mut |_: u32| false;
            let source = Some(&mut source);
            let seen = v
                .read_viewer_rtcp_for(now, &nack, source, &mut batch, &mut for_str0m, no_stream)
                .unwrap();
            assert_eq!(seen.resent, 1);
            assert_eq!(for_str0m.len(), nack.len() - 16, "the SDES left out");
        }
        // Out through sendmmsg, TOS-marked, to loopback addresses nobody listens on.
        let r = sender.send(&batch, &mut transport);
        assert_eq!(r.sent + r.dropped, batch.len());
        batch.clear();
    }
    let used = allocs() - measured_from.unwrap();
    assert_eq!(
        used, 0,
        "allocations in 2000 packets x 50 viewers and 200 NACKs"
    );
}
