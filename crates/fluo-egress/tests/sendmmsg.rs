//! The batched send on real loopback sockets: each datagram reaches its own destination with
//! its own TOS byte (read back with IP_RECVTOS), an undone entry is not sent, and datagrams on
//! a path that is not a UDP socket (TURN, ICE-TCP) go to the shell in order.

use fluo_egress::{Batch, Path, SendReport, Sender, SocketId, Transport};
use socket2::{MaybeUninitSlice, MsgHdrMut, SockRef};
use std::mem::MaybeUninit;
use std::net::UdpSocket;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

const UDP: SocketId = SocketId(0);
const TURN: SocketId = SocketId(7);

struct Shell {
    udp: UdpSocket,
    others: Vec<(Path, Vec<u8>)>,
}

impl Transport for Shell {
    fn udp(&self, socket: SocketId) -> Option<BorrowedFd<'_>> {
        (socket == UDP).then(|| self.udp.as_fd())
    }

    fn send_other(&mut self, path: &Path, datagram: &[u8]) {
        self.others.push((*path, datagram.to_vec()));
    }
}

/// One datagram and the IPv4 TOS byte it arrived with.
fn recv_with_tos(s: &UdpSocket) -> (Vec<u8>, Option<u8>) {
    let mut data = [MaybeUninit::<u8>::uninit(); 2048];
    let mut control = [MaybeUninit::<u8>::uninit(); 64];
    let (n, clen) = {
        let mut bufs = [MaybeUninitSlice::new(&mut data)];
        let mut msg = MsgHdrMut::new()
            .with_buffers(&mut bufs)
            .with_control(&mut control);
        let n = SockRef::from(s).recvmsg(&mut msg, 0).expect("a datagram");
        (n, msg.control_len())
    };
    let bytes = |b: &[MaybeUninit<u8>], len: usize| -> Vec<u8> {
        b[..len]
            .iter()
            // SAFETY: recvmsg wrote the first `n` data and `clen` control bytes.
            .map(|x| unsafe { x.assume_init() })
            .collect()
    };
    let payload = bytes(&data, n);
    let ctl = bytes(&control, clen);
    // Linux's cmsghdr on 64-bit: a usize length, level and type as i32, data from byte 16.
    let mut tos = None;
    let mut at = 0;
    while at + 16 <= ctl.len() {
        let len = usize::from_ne_bytes(ctl[at..at + 8].try_into().unwrap());
        let level = i32::from_ne_bytes(ctl[at + 8..at + 12].try_into().unwrap());
        let kind = i32::from_ne_bytes(ctl[at + 12..at + 16].try_into().unwrap());
        if level == libc::IPPROTO_IP && kind == libc::IP_TOS && len > 16 {
            tos = Some(ctl[at + 16]);
        }
        at += len.div_ceil(8) * 8;
        if len == 0 {
            break;
        }
    }
    (payload, tos)
}

#[test]
#[cfg(target_pointer_width = "64")]
fn each_datagram_carries_its_own_tos_and_other_paths_go_to_the_shell() {
    let rx: Vec<UdpSocket> = (0..2)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            SockRef::from(&s).set_recv_tos_v4(true).unwrap();
            s
        })
        .collect();
    let to = |i: usize, tos: u8| Path {
        socket: UDP,
        to: rx[i].local_addr().unwrap(),
        tos,
    };
    let mut batch = Batch::new();
    batch.next(to(0, 0xb8)).extend_from_slice(b"first, EF");
    batch.next(to(1, 0)).extend_from_slice(b"second, unmarked");
    let relayed = Path {
        socket: TURN,
        to: "192.0.2.7:3478".parse().unwrap(),
        tos: 0x28,
    };
    batch.next(relayed).extend_from_slice(b"relayed");
    batch.next(to(0, 0x28)).extend_from_slice(b"third, AF11");
    batch.next(to(1, 0)).extend_from_slice(b"undone");
    batch.undo();
    let mut shell = Shell {
        udp: UdpSocket::bind("127.0.0.1:0").unwrap(),
        others: vec![],
    };
    let report = Sender::new().send(&batch, &mut shell);
    assert_eq!(
        report,
        SendReport {
            sent: 3,
            dropped: 0,
            other: 1,
            calls: 2
        }
    );
    assert_eq!(shell.others, vec![(relayed, b"relayed".to_vec())]);
    assert_eq!(recv_with_tos(&rx[0]), (b"first, EF".to_vec(), Some(0xb8)));
    assert_eq!(recv_with_tos(&rx[0]), (b"third, AF11".to_vec(), Some(0x28)));
    assert_eq!(
        recv_with_tos(&rx[1]),
        (b"second, unmarked".to_vec(), Some(0))
    );
    rx[1].set_nonblocking(true).unwrap();
    assert!(
        rx[1].recv(&mut [0u8; 100]).is_err(),
        "the undone datagram was not sent"
    );
}
