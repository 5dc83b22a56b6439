//! The system calls the viewers' threads batch on: `epoll_wait` over all their sockets and
//! `recvmmsg` for up to a batch of datagrams per call, with the kernel's receive times.

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

/// Buffers for one `recvmmsg` call of IPv4 datagrams, with the kernel's receive time of
/// each (`SO_TIMESTAMPNS`, see [`enable_timestamps`]). The message headers point into the
/// buffers, which never move (each is a heap allocation made once), so a call allocates
/// nothing.
pub struct RecvBatch {
    bufs: Vec<[u8; 2048]>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_in>,
    /// Room for one control message with a timespec, aligned for `cmsghdr`.
    ctrl: Vec<[u64; 8]>,
    stamps: Vec<u64>,
    iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    pub fn new(n: usize) -> RecvBatch {
        let mut b = RecvBatch {
            bufs: vec![[0u8; 2048]; n],
            lens: vec![0; n],
            // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
            addrs: vec![unsafe { std::mem::zeroed() }; n],
            ctrl: vec![[0u64; 8]; n],
            stamps: vec![0; n],
            iov: Vec::with_capacity(n),
            msgs: Vec::with_capacity(n),
        };
        for i in 0..n {
            b.iov.push(libc::iovec {
                iov_base: b.bufs[i].as_mut_ptr().cast(),
                iov_len: 2048,
            });
        }
        for i in 0..n {
            // SAFETY: msghdr is plain old data; the fields that matter are set below and
            // before each call.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_name = std::ptr::addr_of_mut!(b.addrs[i]).cast();
            h.msg_iov = std::ptr::addr_of_mut!(b.iov[i]);
            h.msg_iovlen = 1;
            h.msg_control = b.ctrl[i].as_mut_ptr().cast();
            b.msgs.push(libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            });
        }
        b
    }

    pub fn capacity(&self) -> usize {
        self.bufs.len()
    }

    /// Reads what is waiting on `sock` without blocking; `None` when nothing was.
    pub fn recv(&mut self, sock: &UdpSocket) -> Option<usize> {
        let n = self.bufs.len();
        for m in &mut self.msgs {
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            m.msg_hdr.msg_controllen = std::mem::size_of::<[u64; 8]>();
            m.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every msghdr points into `self.iov`, `self.bufs`, `self.addrs` and
        // `self.ctrl`, heap buffers that outlive the call and are not otherwise borrowed
        // during it; the lengths given are theirs.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r <= 0 {
            return None;
        }
        for i in 0..r as usize {
            self.lens[i] = self.msgs[i].msg_len as usize;
            self.stamps[i] = self.stamp_of(i);
        }
        Some(r as usize)
    }

    /// The SCM_TIMESTAMPNS of message `i` of the last call, in ns since the epoch; 0
    /// without one.
    fn stamp_of(&self, i: usize) -> u64 {
        let h = &self.msgs[i].msg_hdr;
        // SAFETY: `h` is a msghdr the kernel filled, its control buffer `self.ctrl[i]`
        // holds `msg_controllen` bytes; the CMSG macros stay within them, and the timespec
        // is read unaligned from inside a control message of the right type.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts: libc::timespec =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                    return ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        0
    }

    /// The `i`th datagram of the last call, writable (decrypted in place): (source, bytes,
    /// kernel receive time in ns since the epoch, or the time now without one).
    pub fn get_mut(&mut self, i: usize) -> (SocketAddr, &mut [u8], u64) {
        let src = self.source(i);
        let at = match self.stamps[i] {
            0 => wall_ns(),
            t => t,
        };
        (src, &mut self.bufs[i][..self.lens[i]], at)
    }

    fn source(&self, i: usize) -> SocketAddr {
        let a = &self.addrs[i];
        let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
        SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port)))
    }
}

/// Asks the kernel to stamp each datagram `sock` receives with its arrival time.
pub fn enable_timestamps(sock: &UdpSocket) -> std::io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` is a live c_int whose size is passed; the descriptor is open.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            std::ptr::addr_of!(on).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The wall clock in ns since the epoch: the clock of the kernel's receive timestamps, and
/// of the publisher's send log.
pub fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
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
