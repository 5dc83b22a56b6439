//! Media between the server and a worker: a `SOCK_SEQPACKET` Unix socket pair, each datagram a
//! batch of records (an RTP packet for a job, a keyframe request, an end of stream), in order.
//!
//! A datagram is one version byte then records; a record is a tag, the job id and, for a
//! packet, a fixed 25-byte header (kind, codec, sequence number, timestamp, SSRC, marker,
//! payload length) then the payload. A batch holds up to [`MAX_DATAGRAM`] bytes: the router
//! flushes it once per input burst (a video frame's packets, a tick's audio), so one system
//! call carries many packets where that pays.

use crate::proto::JobId;
use crate::wire::WireError;
use fluo_sfu::{Codec, CodecName, MediaKind, MediaPacket};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// The largest datagram either side sends or accepts.
pub const MAX_DATAGRAM: usize = 64 * 1024;

const VERSION: u8 = 1;
const TAG_PACKET: u8 = 1;
const TAG_KEYFRAME: u8 = 2;
const TAG_EOS: u8 = 3;
const PACKET_HEADER: usize = 25;

/// The codecs the media records can name, by index.
const CODECS: [CodecName; 11] = [
    CodecName::Vp8,
    CodecName::Vp9,
    CodecName::H264,
    CodecName::Av1,
    CodecName::Opus,
    CodecName::Pcmu,
    CodecName::Pcma,
    CodecName::G722,
    CodecName::H263,
    CodecName::Amr,
    CodecName::Speex,
];

/// An RTP packet as it crosses the boundary, its payload borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketRef<'a> {
    /// Audio or video.
    pub kind: MediaKind,
    /// The payload's codec.
    pub codec: Codec,
    /// RTP sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// RTP SSRC.
    pub ssrc: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// The payload.
    pub payload: &'a [u8],
}

impl<'a> From<&'a MediaPacket> for PacketRef<'a> {
    fn from(p: &'a MediaPacket) -> PacketRef<'a> {
        PacketRef {
            kind: p.kind,
            codec: p.codec,
            seq: p.seq,
            timestamp: p.timestamp,
            ssrc: p.ssrc,
            marker: p.marker,
            payload: &p.payload,
        }
    }
}

impl PacketRef<'_> {
    /// An owned copy, as the router's ports take it.
    pub fn to_packet(&self) -> MediaPacket {
        MediaPacket {
            kind: self.kind,
            codec: self.codec,
            seq: self.seq,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            marker: self.marker,
            payload: self.payload.to_vec(),
        }
    }
}

/// One record of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// A packet to (or from) a job.
    Packet(JobId, PacketRef<'a>),
    /// A keyframe request: to a job (its sinks want one) or from it (it wants one upstream).
    Keyframe(JobId),
    /// The stream of or to a job ended.
    EndOfStream(JobId),
}

/// Why a record could not be added to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The batch has no room left: send it and push again.
    #[error("batch full")]
    Full,
    /// The packet can never fit a datagram, or its codec has no code here.
    #[error("packet cannot be carried")]
    Unsupported,
}

/// A datagram being filled.
#[derive(Debug)]
pub struct Batch {
    buf: Vec<u8>,
    records: usize,
}

impl Default for Batch {
    fn default() -> Batch {
        Batch::new()
    }
}

impl Batch {
    /// An empty batch (allocates [`MAX_DATAGRAM`] once).
    pub fn new() -> Batch {
        let mut buf = Vec::with_capacity(MAX_DATAGRAM);
        buf.push(VERSION);
        Batch { buf, records: 0 }
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.records
    }

    /// The datagram's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Empties the batch, keeping its buffer.
    pub fn clear(&mut self) {
        self.buf.truncate(1);
        self.records = 0;
    }

    fn room(&self, n: usize) -> Result<(), BatchError> {
        if 1 + n > MAX_DATAGRAM {
            Err(BatchError::Unsupported)
        } else if self.buf.len() + n > MAX_DATAGRAM {
            Err(BatchError::Full)
        } else {
            Ok(())
        }
    }

    /// Adds a packet for (or from) `job`.
    pub fn push_packet(&mut self, job: JobId, p: &PacketRef<'_>) -> Result<(), BatchError> {
        let code = CODECS
            .iter()
            .position(|c| *c == p.codec.name)
            .ok_or(BatchError::Unsupported)? as u8;
        let len = u16::try_from(p.payload.len()).map_err(|_| BatchError::Unsupported)?;
        self.room(9 + PACKET_HEADER + p.payload.len())?;
        let b = &mut self.buf;
        b.push(TAG_PACKET);
        b.extend_from_slice(&job.to_le_bytes());
        b.push(matches!(p.kind, MediaKind::Video) as u8);
        b.push(code);
        b.extend_from_slice(&p.codec.clock_rate.to_le_bytes());
        b.push(p.codec.channels);
        b.extend_from_slice(&p.codec.profile_level_id.unwrap_or(u32::MAX).to_le_bytes());
        b.push(p.codec.packetization_mode.unwrap_or(u8::MAX));
        b.extend_from_slice(&p.seq.to_le_bytes());
        b.extend_from_slice(&p.timestamp.to_le_bytes());
        b.extend_from_slice(&p.ssrc.to_le_bytes());
        b.push(p.marker as u8);
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(p.payload);
        self.records += 1;
        Ok(())
    }

    fn push_signal(&mut self, tag: u8, job: JobId) -> Result<(), BatchError> {
        self.room(9)?;
        self.buf.push(tag);
        self.buf.extend_from_slice(&job.to_le_bytes());
        self.records += 1;
        Ok(())
    }

    /// Adds a keyframe request for (or from) `job`.
    pub fn push_keyframe(&mut self, job: JobId) -> Result<(), BatchError> {
        self.push_signal(TAG_KEYFRAME, job)
    }

    /// Adds an end of stream for (or from) `job`.
    pub fn push_end_of_stream(&mut self, job: JobId) -> Result<(), BatchError> {
        self.push_signal(TAG_EOS, job)
    }
}

/// The records of a datagram, in order. Stops at the first malformed record (the rest of that
/// datagram is dropped; the receiver counts it).
pub fn records(datagram: &[u8]) -> Records<'_> {
    match datagram.split_first() {
        Some((&VERSION, rest)) => Records { rest, bad: false },
        _ => Records {
            rest: &[],
            bad: !datagram.is_empty(),
        },
    }
}

/// Iterator over a datagram's records (see [`records`]).
pub struct Records<'a> {
    rest: &'a [u8],
    bad: bool,
}

impl<'a> Records<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated);
        }
        let (h, t) = self.rest.split_at(n);
        self.rest = t;
        Ok(h)
    }

    fn next_record(&mut self) -> Result<Record<'a>, WireError> {
        let head = self.take(9)?;
        let tag = head[0];
        let job = u64::from_le_bytes(head[1..9].try_into().map_err(|_| WireError::Truncated)?);
        match tag {
            TAG_KEYFRAME => Ok(Record::Keyframe(job)),
            TAG_EOS => Ok(Record::EndOfStream(job)),
            TAG_PACKET => {
                let h = self.take(PACKET_HEADER)?;
                let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
                let kind = match h[0] {
                    0 => MediaKind::Audio,
                    1 => MediaKind::Video,
                    t => return Err(WireError::BadTag(t)),
                };
                let name = *CODECS.get(h[1] as usize).ok_or(WireError::BadTag(h[1]))?;
                let plid = u32_at(7);
                let codec = Codec {
                    name,
                    clock_rate: u32_at(2),
                    channels: h[6],
                    profile_level_id: (plid != u32::MAX).then_some(plid),
                    packetization_mode: (h[11] != u8::MAX).then_some(h[11]),
                };
                let len = u16::from_le_bytes([h[23], h[24]]) as usize;
                let payload = self.take(len)?;
                Ok(Record::Packet(
                    job,
                    PacketRef {
                        kind,
                        codec,
                        seq: u16::from_le_bytes([h[12], h[13]]),
                        timestamp: u32_at(14),
                        ssrc: u32_at(18),
                        marker: match h[22] {
                            0 => false,
                            1 => true,
                            t => return Err(WireError::BadTag(t)),
                        },
                        payload,
                    },
                ))
            }
            t => Err(WireError::BadTag(t)),
        }
    }

    /// Whether the datagram was malformed (checked after iterating).
    pub fn malformed(&self) -> bool {
        self.bad
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        if self.rest.is_empty() || self.bad {
            return None;
        }
        match self.next_record() {
            Ok(r) => Some(r),
            Err(_) => {
                self.bad = true;
                self.rest = &[];
                None
            }
        }
    }
}

/// One end of a worker's media socket pair.
#[derive(Debug)]
pub struct MediaSocket {
    fd: OwnedFd,
}

impl MediaSocket {
    /// Wraps a connected `SOCK_SEQPACKET` socket.
    pub fn from_fd(fd: OwnedFd) -> MediaSocket {
        MediaSocket { fd }
    }

    /// A connected pair, both ends close-on-exec.
    pub fn pair() -> io::Result<(MediaSocket, MediaSocket)> {
        let (a, b) = socket2::Socket::pair(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None)?;
        for s in [&a, &b] {
            // Room for a burst of full batches in flight (the kernel caps it at wmem_max).
            let _ = s.set_send_buffer_size(4 * MAX_DATAGRAM);
            let _ = s.set_recv_buffer_size(4 * MAX_DATAGRAM);
        }
        Ok((
            MediaSocket::from_fd(OwnedFd::from(a)),
            MediaSocket::from_fd(OwnedFd::from(b)),
        ))
    }

    /// Sends one datagram. With `wait` false it never blocks: a full socket gives
    /// [`io::ErrorKind::WouldBlock`] (the caller drops and counts).
    pub fn send(&self, datagram: &[u8], wait: bool) -> io::Result<()> {
        let flags = libc::MSG_NOSIGNAL | if wait { 0 } else { libc::MSG_DONTWAIT };
        loop {
            // SAFETY: the pointer and length describe `datagram`, alive for the call.
            let n = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    datagram.as_ptr().cast(),
                    datagram.len(),
                    flags,
                )
            };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receives one datagram into `buf` (at least [`MAX_DATAGRAM`] long); `Ok(0)` when the peer
    /// closed. A datagram longer than `buf` is an error (`InvalidData`).
    pub fn recv(&self, buf: &mut [u8], wait: bool) -> io::Result<usize> {
        let flags = libc::MSG_TRUNC | if wait { 0 } else { libc::MSG_DONTWAIT };
        loop {
            // SAFETY: the pointer and length describe `buf`, alive and writable for the call.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    flags,
                )
            };
            if n >= 0 {
                let n = n as usize;
                if n > buf.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "media datagram over the limit",
                    ));
                }
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Ends both directions (wakes a thread blocked in [`MediaSocket::recv`]).
    pub fn shutdown(&self) {
        // SAFETY: plain system call on a descriptor this value owns.
        unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_RDWR) };
    }

    /// Switches the socket to non-blocking mode (for the server's reactor).
    pub fn set_nonblocking(&self) -> io::Result<()> {
        let s = socket2::SockRef::from(&self.fd);
        s.set_nonblocking(true)
    }
}

impl AsRawFd for MediaSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl std::os::fd::AsFd for MediaSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(payload: &[u8]) -> PacketRef<'_> {
        let mut codec = Codec::new(CodecName::H264);
        codec.profile_level_id = Some(0x640c1f);
        PacketRef {
            kind: MediaKind::Video,
            codec,
            seq: 65535,
            timestamp: 0xdead_beef,
            ssrc: 0x1234_5678,
            marker: true,
            payload,
        }
    }

    #[test]
    fn a_batch_carries_packets_and_signals_in_order() {
        let mut b = Batch::new();
        let opus = PacketRef {
            kind: MediaKind::Audio,
            codec: Codec::new(CodecName::Opus),
            seq: 1,
            timestamp: 2,
            ssrc: 3,
            marker: false,
            payload: &[],
        };
        b.push_packet(7, &pkt(&[1, 2, 3])).unwrap();
        b.push_keyframe(8).unwrap();
        b.push_packet(9, &opus).unwrap();
        b.push_end_of_stream(7).unwrap();
        assert_eq!(b.len(), 4);
        let got: Vec<_> = records(b.bytes()).collect();
        assert_eq!(
            got,
            vec![
                Record::Packet(7, pkt(&[1, 2, 3])),
                Record::Keyframe(8),
                Record::Packet(9, opus),
                Record::EndOfStream(7),
            ]
        );
        b.clear();
        assert!(b.is_empty());
        assert_eq!(records(b.bytes()).count(), 0);
    }

    #[test]
    fn a_full_batch_says_so_and_an_oversized_packet_is_refused() {
        let mut b = Batch::new();
        let big = vec![0u8; 1200];
        let mut n = 0;
        while b.push_packet(1, &pkt(&big)).is_ok() {
            n += 1;
        }
        assert_eq!(n, (MAX_DATAGRAM - 1) / (9 + PACKET_HEADER + 1200));
        assert_eq!(b.push_packet(1, &pkt(&big)), Err(BatchError::Full));
        assert!(b.bytes().len() <= MAX_DATAGRAM);
        let huge = vec![0u8; 65_535];
        assert_eq!(
            Batch::new().push_packet(1, &pkt(&huge)),
            Err(BatchError::Unsupported)
        );
    }

    #[test]
    fn malformed_datagrams_stop_without_panic() {
        let mut b = Batch::new();
        b.push_packet(1, &pkt(&[9; 50])).unwrap();
        let full = b.bytes().to_vec();
        for n in 0..full.len() {
            let mut it = records(&full[..n]);
            assert_eq!(it.by_ref().count(), 0, "prefix {n}");
        }
        let mut bad = full.clone();
        bad[0] = 99;
        let mut it = records(&bad);
        assert_eq!(it.by_ref().count(), 0);
        assert!(it.malformed());
        let mut bad = full.clone();
        bad[1 + 9 + 1] = 200; // codec index
        let mut it = records(&bad);
        assert_eq!(it.by_ref().count(), 0);
        assert!(it.malformed());
    }

    #[test]
    fn sockets_carry_datagrams_whole_and_report_the_peer_closing() {
        let (a, b) = MediaSocket::pair().unwrap();
        let mut batch = Batch::new();
        batch.push_packet(3, &pkt(&[5; 1000])).unwrap();
        a.send(batch.bytes(), false).unwrap();
        a.send(&[VERSION], false).unwrap();
        let mut buf = vec![0; MAX_DATAGRAM];
        let n = b.recv(&mut buf, true).unwrap();
        assert_eq!(&buf[..n], batch.bytes());
        assert_eq!(b.recv(&mut buf, true).unwrap(), 1);
        drop(a);
        assert_eq!(b.recv(&mut buf, true).unwrap(), 0);
    }
}
