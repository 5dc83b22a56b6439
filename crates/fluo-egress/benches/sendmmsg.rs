//! `sendto` (one system call per datagram, as Fluo's media thread sends today) against
//! `sendmmsg` (one call per batch) on loopback, for a fan-out: one sender socket, N receiver
//! sockets, each round sends one 1216-byte datagram to every receiver. The sender thread's CPU
//! time per datagram (user + system: on loopback the sender also runs the receiver's softirq
//! delivery, as in production on loopback). Receivers are drained between rounds, outside the
//! measurement.
//!
//! `cargo bench -p fluo-egress --bench sendmmsg [-- RUNS N...]`

use fluo_egress::{Batch, Path, Sender, SocketId, Transport};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};

struct One<'a>(&'a UdpSocket);

impl Transport for One<'_> {
    fn udp(&self, _: SocketId) -> Option<BorrowedFd<'_>> {
        Some(self.0.as_fd())
    }

    fn send_other(&mut self, _: &Path, _: &[u8]) {
        unreachable!("one UDP socket")
    }
}

fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

const ROUNDS: usize = 200;
const SIZE: usize = 1216;

fn drain(rx: &[UdpSocket]) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    for s in rx {
        while s.recv(&mut buf).is_ok() {
            n += 1;
        }
    }
    n
}

/// (sendto ns per datagram, sendmmsg ns per datagram) for one run.
fn run(n: usize) -> (f64, f64) {
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rx: Vec<UdpSocket> = (0..n)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let dests: Vec<SocketAddr> = rx.iter().map(|s| s.local_addr().unwrap()).collect();
    let payload = vec![0x55u8; SIZE];
    let mut batch = Batch::new();
    let mut sender = Sender::new();
    // TOS_MARK=184 marks every datagram (DSCP 46, as qosDscp EF does) with a control message.
    let tos = std::env::var("TOS_MARK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0u8);
    let (mut t_sendto, mut t_mmsg) = (0u64, 0u64);
    let (mut got_a, mut got_b) = (0, 0);
    for round in 0..ROUNDS + 10 {
        let t0 = thread_cpu_ns();
        for d in &dests {
            tx.send_to(&payload, d).unwrap();
        }
        let t1 = thread_cpu_ns();
        got_a += drain(&rx);
        batch.clear();
        for d in &dests {
            let path = Path {
                socket: SocketId(0),
                to: *d,
                tos,
            };
            batch.next(path).extend_from_slice(&payload);
        }
        let t2 = thread_cpu_ns();
        let report = sender.send(&batch, &mut One(&tx));
        let t3 = thread_cpu_ns();
        assert_eq!(report.sent, n);
        got_b += drain(&rx);
        if round >= 10 {
            t_sendto += t1 - t0;
            t_mmsg += t3 - t2;
        }
    }
    assert!(
        got_a + got_b >= 2 * n * ROUNDS * 95 / 100,
        "loopback lost datagrams"
    );
    let per = (ROUNDS * n) as f64;
    (t_sendto as f64 / per, t_mmsg as f64 / per)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let runs = args.first().copied().unwrap_or(5);
    let ns = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        vec![100, 200]
    };
    println!("loopback fan-out, {SIZE}-byte datagrams, sender thread CPU ns per datagram, {ROUNDS} rounds per run, {runs} runs (median [min-max])");
    println!("{:>5} | {:>24} | {:>24}", "N", "sendto", "sendmmsg");
    for n in ns {
        let mut a = vec![];
        let mut b = vec![];
        for _ in 0..runs {
            let (x, y) = run(n);
            a.push(x);
            b.push(y);
        }
        a.sort_by(|x, y| x.total_cmp(y));
        b.sort_by(|x, y| x.total_cmp(y));
        let f = |v: &[f64]| format!("{:.0} [{:.0}-{:.0}]", v[v.len() / 2], v[0], v[v.len() - 1]);
        println!("{n:>5} | {:>24} | {:>24}", f(&a), f(&b));
    }
}
