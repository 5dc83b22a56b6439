//! Datagrams queued for one batched send: buffers reused from batch to batch (no allocation
//! once each has held a full packet), sent with `sendmmsg(2)` in one system call per batch.

use std::net::SocketAddr;

/// Room reserved per datagram: an MTU-sized packet plus the SRTP tag.
const SLOT: usize = 1500;

/// Datagrams to send, each with its destination.
#[derive(Debug, Default)]
pub struct Batch {
    bufs: Vec<Vec<u8>>,
    dests: Vec<SocketAddr>,
    len: usize,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// A cleared buffer for the next datagram, to `dest`.
    pub fn next(&mut self, dest: SocketAddr) -> &mut Vec<u8> {
        if self.len == self.bufs.len() {
            self.bufs.push(Vec::with_capacity(SLOT));
            self.dests.push(dest);
        }
        self.dests[self.len] = dest;
        let b = &mut self.bufs[self.len];
        b.clear();
        self.len += 1;
        b
    }

    /// Drops the datagram last taken with [`Batch::next`].
    pub fn undo(&mut self) {
        self.len = self.len.saturating_sub(1);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The queued datagrams.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.dests[..self.len]
            .iter()
            .copied()
            .zip(self.bufs[..self.len].iter().map(Vec::as_slice))
    }
}

/// Sends batches on one UDP socket with `sendmmsg`, its headers kept between calls.
#[cfg(target_os = "linux")]
pub mod mmsg {
    use super::Batch;
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;

    /// Most datagrams per system call (the kernel's UIO_MAXIOV is 1024).
    pub const MAX: usize = 1024;

    #[derive(Default)]
    pub struct Sender {
        hdrs: Vec<libc::mmsghdr>,
        iovs: Vec<libc::iovec>,
        addrs: Vec<libc::sockaddr_storage>,
    }

    fn write_addr(a: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
        // SAFETY: sockaddr_storage is large enough and aligned for both address families.
        unsafe {
            match a {
                SocketAddr::V4(v4) => {
                    let s = &mut *(out as *mut _ as *mut libc::sockaddr_in);
                    s.sin_family = libc::AF_INET as libc::sa_family_t;
                    s.sin_port = v4.port().to_be();
                    s.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
                }
                SocketAddr::V6(v6) => {
                    let s = &mut *(out as *mut _ as *mut libc::sockaddr_in6);
                    s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                    s.sin6_port = v6.port().to_be();
                    s.sin6_addr.s6_addr = v6.ip().octets();
                    s.sin6_flowinfo = v6.flowinfo();
                    s.sin6_scope_id = v6.scope_id();
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
                }
            }
        }
    }

    impl Sender {
        /// Sends every datagram of `batch` (in calls of at most [`MAX`]); returns how many the
        /// kernel took. Stops at the first error that is not a partial send.
        pub fn send(&mut self, sock: &impl AsRawFd, batch: &Batch) -> std::io::Result<usize> {
            let n = batch.len();
            // SAFETY: all-zero is a valid value of these plain C structs.
            let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
            let zero_addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            self.hdrs.resize(n, zero_hdr);
            self.addrs.resize(n, zero_addr);
            self.iovs.resize(
                n,
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
            );
            for (i, (dest, data)) in batch.iter().enumerate() {
                let alen = write_addr(dest, &mut self.addrs[i]);
                self.iovs[i] = libc::iovec {
                    iov_base: data.as_ptr() as *mut _,
                    iov_len: data.len(),
                };
                let h = &mut self.hdrs[i].msg_hdr;
                h.msg_name = &mut self.addrs[i] as *mut _ as *mut libc::c_void;
                h.msg_namelen = alen;
                h.msg_iov = &mut self.iovs[i];
                h.msg_iovlen = 1;
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
                h.msg_flags = 0;
            }
            let mut sent = 0;
            while sent < n {
                let chunk = (n - sent).min(MAX);
                // SAFETY: hdrs[sent..sent + chunk] point into buffers that outlive the call.
                let r = unsafe {
                    libc::sendmmsg(
                        sock.as_raw_fd(),
                        self.hdrs[sent..].as_mut_ptr(),
                        chunk as libc::c_uint,
                        0,
                    )
                };
                if r < 0 {
                    let e = std::io::Error::last_os_error();
                    if sent > 0 {
                        return Ok(sent);
                    }
                    return Err(e);
                }
                sent += r as usize;
                if (r as usize) < chunk {
                    break;
                }
            }
            Ok(sent)
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    #[test]
    fn one_sendmmsg_delivers_each_datagram_to_its_own_destination() {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx: Vec<UdpSocket> = (0..2)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for s in &rx {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        }
        let mut batch = Batch::new();
        for (i, d) in [0usize, 1, 0].iter().enumerate() {
            batch
                .next(rx[*d].local_addr().unwrap())
                .extend_from_slice(&[i as u8; 100]);
        }
        batch.next(rx[1].local_addr().unwrap());
        batch.undo();
        let mut sender = mmsg::Sender::default();
        assert_eq!(sender.send(&tx, &batch).unwrap(), 3);
        let mut buf = [0u8; 200];
        let mut got = |s: &UdpSocket| {
            let n = s.recv(&mut buf).unwrap();
            buf[..n].to_vec()
        };
        assert_eq!(got(&rx[0]), vec![0u8; 100]);
        assert_eq!(got(&rx[0]), vec![2u8; 100]);
        assert_eq!(got(&rx[1]), vec![1u8; 100]);
        rx[1].set_nonblocking(true).unwrap();
        assert!(
            rx[1].recv(&mut buf).is_err(),
            "the undone datagram was not sent"
        );
    }
}
