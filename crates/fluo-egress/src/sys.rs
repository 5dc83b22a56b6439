//! The crate's only unsafe code: `sendmmsg(2)` with one `IP_TOS` / `IPV6_TCLASS` control
//! message per datagram. Neither std nor socket2 has `sendmmsg`; the headers, addresses,
//! I/O vectors and control buffers live in vectors kept between calls, so a warm sender
//! allocates nothing.

#![allow(unsafe_code)]

use crate::batch::Path;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Most datagrams per system call (the kernel's UIO_MAXIOV is 1024).
pub const MAX_PER_CALL: usize = 1024;

/// Room for one control message carrying an `int`, aligned as `cmsghdr` requires
/// (`CMSG_SPACE(sizeof(int))` is 24 bytes on 64-bit Linux, 16 on 32-bit).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control([u8; 32]);

/// What one run sent.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RunReport {
    pub sent: usize,
    pub dropped: usize,
    pub calls: usize,
}

/// `sendmmsg` state, reused between calls.
#[derive(Default)]
pub(crate) struct Mmsg {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    controls: Vec<Control>,
}

impl std::fmt::Debug for Mmsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mmsg")
            .field("capacity", &self.hdrs.capacity())
            .finish()
    }
}

fn write_addr(a: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    // SAFETY: `sockaddr_storage` is large enough and suitably aligned for `sockaddr_in` and
    // `sockaddr_in6` (that is its purpose); `out` is an exclusive reference, so the casts
    // alias nothing else.
    unsafe {
        match a {
            SocketAddr::V4(v4) => {
                let s = &mut *(out as *mut libc::sockaddr_storage as *mut libc::sockaddr_in);
                s.sin_family = libc::AF_INET as libc::sa_family_t;
                s.sin_port = v4.port().to_be();
                s.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(v6) => {
                let s = &mut *(out as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6);
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

/// Fills `ctl` with one control message setting the TOS (IPv4) or traffic class (IPv6) of
/// the datagram to `to`; returns the control length to give the kernel.
fn write_tos(to: SocketAddr, tos: u8, ctl: &mut Control) -> usize {
    let (level, kind) = if to.is_ipv6() {
        (libc::IPPROTO_IPV6, libc::IPV6_TCLASS)
    } else {
        (libc::IPPROTO_IP, libc::IP_TOS)
    };
    let value = libc::c_int::from(tos);
    // SAFETY: CMSG_SPACE / CMSG_LEN only compute sizes. The header is written through a
    // `msghdr` whose control buffer is `ctl` (32 bytes, 8-aligned, at least CMSG_SPACE of an
    // int on every Linux target), so CMSG_FIRSTHDR returns a pointer into `ctl` with room for
    // the header and CMSG_DATA one with room for the int (written unaligned to be safe).
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as libc::c_uint) as usize;
        if space > std::mem::size_of::<Control>() {
            return 0;
        }
        let mut m: libc::msghdr = std::mem::zeroed();
        m.msg_control = ctl.0.as_mut_ptr().cast();
        m.msg_controllen = space as _;
        let c = libc::CMSG_FIRSTHDR(&m);
        if c.is_null() {
            return 0;
        }
        (*c).cmsg_level = level;
        (*c).cmsg_type = kind;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as libc::c_uint) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>(), value);
        space
    }
}

impl Mmsg {
    /// Sends `bufs[i]` to `paths[i].to` on `fd`, TOS-marked where `paths[i].tos` is set.
    pub(crate) fn send(
        &mut self,
        fd: BorrowedFd<'_>,
        paths: &[Path],
        bufs: &[Vec<u8>],
    ) -> RunReport {
        let n = self.prepare(paths, bufs);
        self.submit(fd, paths, n)
    }

    /// Fills the headers for the first `n` datagrams (as many as both slices hold): their
    /// addresses, TOS control messages and buffers; returns `n`.
    fn prepare(&mut self, paths: &[Path], bufs: &[Vec<u8>]) -> usize {
        let n = paths.len().min(bufs.len());
        // SAFETY: all-zero is a valid value of these plain C structs.
        let (zero_hdr, zero_addr): (libc::mmsghdr, libc::sockaddr_storage) =
            unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        self.hdrs.resize(n, zero_hdr);
        self.addrs.resize(n, zero_addr);
        self.controls.resize(n, Control([0; 32]));
        self.iovs.resize(
            n,
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
        );
        for i in 0..n {
            let alen = write_addr(paths[i].to, &mut self.addrs[i]);
            let clen = if paths[i].tos != 0 {
                write_tos(paths[i].to, paths[i].tos, &mut self.controls[i])
            } else {
                0
            };
            self.iovs[i] = libc::iovec {
                iov_base: bufs[i].as_ptr() as *mut libc::c_void,
                iov_len: bufs[i].len(),
            };
            let h = &mut self.hdrs[i];
            h.msg_len = 0;
            let m = &mut h.msg_hdr;
            m.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            m.msg_namelen = alen;
            m.msg_iov = &mut self.iovs[i];
            m.msg_iovlen = 1;
            m.msg_control = if clen > 0 {
                self.controls[i].0.as_mut_ptr().cast()
            } else {
                std::ptr::null_mut()
            };
            m.msg_controllen = clen as _;
            m.msg_flags = 0;
        }
        n
    }

    /// Sends the `n` datagrams [`Self::prepare`] laid out, `MAX_PER_CALL` per system call; a
    /// full send buffer drops the rest, a failed destination only its datagram.
    fn submit(&mut self, fd: BorrowedFd<'_>, paths: &[Path], n: usize) -> RunReport {
        let mut report = RunReport::default();
        let mut at = 0;
        while at < n {
            let chunk = (n - at).min(MAX_PER_CALL);
            report.calls += 1;
            // SAFETY: `hdrs[at..at + chunk]` were initialised by `prepare` and point into
            // `addrs`, `iovs`, `controls` (not resized until the next `send`) and the caller's
            // `bufs` (borrowed by `send` for both calls): all outlive the system call, which
            // only reads them (and writes `msg_len`).
            let r = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    self.hdrs[at..].as_mut_ptr(),
                    chunk as libc::c_uint,
                    0,
                )
            };
            if r > 0 {
                report.sent += r as usize;
                at += r as usize;
                continue;
            }
            if r == 0 {
                // Not expected from Linux; never spin on it.
                report.dropped += 1;
                at += 1;
                continue;
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) => {
                    // The send buffer is full: the rest of the run would fail too.
                    tracing::trace!("egress send buffer full, {} datagrams dropped", n - at);
                    report.dropped += n - at;
                    break;
                }
                _ => {
                    // This datagram's destination failed (unreachable, refused): skip it.
                    tracing::trace!(to = %paths[at].to, "egress datagram not sent: {e}");
                    report.dropped += 1;
                    at += 1;
                }
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn tos_control_message_has_the_layout_fluo_rtc_writes() {
        let mut c = Control([0xff; 32]);
        let n = write_tos("127.0.0.1:9".parse().unwrap(), 0xb8, &mut c);
        // CMSG_SPACE(sizeof(int)) = 24, CMSG_LEN(sizeof(int)) = 20 on 64-bit Linux.
        assert_eq!(n, 24);
        assert_eq!(&c.0[..8], &20usize.to_ne_bytes());
        assert_eq!(&c.0[8..12], &libc::IPPROTO_IP.to_ne_bytes());
        assert_eq!(&c.0[12..16], &libc::IP_TOS.to_ne_bytes());
        assert_eq!(&c.0[16..20], &0xb8i32.to_ne_bytes());
        let n = write_tos("[::1]:9".parse().unwrap(), 0x28, &mut c);
        assert_eq!(n, 24);
        assert_eq!(&c.0[8..12], &libc::IPPROTO_IPV6.to_ne_bytes());
        assert_eq!(&c.0[12..16], &libc::IPV6_TCLASS.to_ne_bytes());
        assert_eq!(&c.0[16..20], &0x28i32.to_ne_bytes());
    }
}
