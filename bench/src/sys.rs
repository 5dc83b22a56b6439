//! The two system calls the viewers' threads batch on: `epoll_wait` over all their sockets
//! and `recvmmsg` for up to a batch of datagrams per call.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

pub struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new() -> std::io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative return is a new descriptor
        // that we then own.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Epoll {
            // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
        })
    }

    /// Watches `sock` for reading; `wait` reports it as `token`.
    pub fn add(&self, sock: &UdpSocket, token: u64) -> std::io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open for the duration of the call; `ev` is a valid
        // epoll_event that the kernel only reads.
        let r = unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                sock.as_raw_fd(),
                &mut ev,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn remove(&self, sock: &UdpSocket) {
        // SAFETY: as in `add`; a null event is allowed for EPOLL_CTL_DEL.
        unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                sock.as_raw_fd(),
                std::ptr::null_mut(),
            );
        }
    }

    /// Waits at most `timeout` (rounded up to a millisecond); fills `ready` with the tokens
    /// of the readable sockets.
    pub fn wait(&mut self, ready: &mut Vec<u64>, timeout: Duration) {
        ready.clear();
        let ms = timeout.as_micros().div_ceil(1000).min(1000) as i32;
        // SAFETY: `events` is a live buffer of `len` epoll_events the kernel writes into.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                ms,
            )
        };
        for e in self.events.iter().take(n.max(0) as usize) {
            ready.push(e.u64);
        }
    }
}

/// Buffers for one `recvmmsg` call of IPv4 datagrams.
pub struct RecvBatch {
    bufs: Vec<[u8; 2048]>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_in>,
}

impl RecvBatch {
    pub fn new(n: usize) -> RecvBatch {
        RecvBatch {
            bufs: vec![[0u8; 2048]; n],
            lens: vec![0; n],
            // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
            addrs: vec![unsafe { std::mem::zeroed() }; n],
        }
    }

    pub fn capacity(&self) -> usize {
        self.bufs.len()
    }

    /// Reads what is waiting on `sock` without blocking; `None` when nothing was.
    pub fn recv(&mut self, sock: &UdpSocket) -> Option<usize> {
        let n = self.bufs.len();
        let mut iov: Vec<libc::iovec> = self
            .bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = (0..n)
            .map(|i| {
                // SAFETY: msghdr is plain old data; the fields that matter are set below.
                let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
                h.msg_name = std::ptr::addr_of_mut!(self.addrs[i]).cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                h.msg_iov = std::ptr::addr_of_mut!(iov[i]);
                h.msg_iovlen = 1;
                libc::mmsghdr {
                    msg_hdr: h,
                    msg_len: 0,
                }
            })
            .collect();
        // SAFETY: every msghdr points into `iov`, `self.bufs` and `self.addrs`, which outlive
        // the call and are not otherwise borrowed during it.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r <= 0 {
            return None;
        }
        for (i, m) in msgs.iter().take(r as usize).enumerate() {
            self.lens[i] = m.msg_len as usize;
        }
        Some(r as usize)
    }

    /// The `i`th datagram of the last call: (source, bytes).
    pub fn get(&self, i: usize) -> (SocketAddr, &[u8]) {
        let a = &self.addrs[i];
        let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
        let src = SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port)));
        (src, &self.bufs[i][..self.lens[i]])
    }
}

/// Pins the calling thread (and the threads it starts afterwards) to one CPU.
pub fn pin_to_cpu(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain old data, set with the libc macros, read by the kernel.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Moves the calling thread (and the threads it starts afterwards) into the network
/// namespace `name` (from `ip netns add`).
pub fn enter_netns(name: &str) -> Result<(), String> {
    let f = std::fs::File::open(format!("/var/run/netns/{name}")).map_err(|e| e.to_string())?;
    // SAFETY: `f` is an open namespace file for the duration of the call.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(())
}

/// Clock ticks per second of /proc's CPU times.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf takes no pointers.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}
