//! The crate's error type for parsing hostile RTP / RTCP bytes.

use std::fmt;

/// Why a buffer could not be read as RTP or RTCP.
///
/// Every parser in this crate returns this instead of panicking, whatever the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// The buffer ends before the structure it announces.
    Truncated {
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// The version field is not 2.
    BadVersion(u8),
    /// The padding count is zero or larger than the room left after the header.
    BadPadding,
    /// An RTCP length field disagrees with the buffer or with the packet's count field.
    BadLength,
    /// A feedback message is too short for the format it claims (e.g. REMB without `REMB`).
    BadFeedback,
    /// The buffer holds RTP where RTCP was expected, or the opposite.
    WrongProtocol,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Truncated { needed, available } => {
                write!(f, "truncated packet: needs {needed} bytes, has {available}")
            }
            ParseError::BadVersion(v) => write!(f, "unsupported RTP/RTCP version {v}"),
            ParseError::BadPadding => f.write_str("invalid padding length"),
            ParseError::BadLength => f.write_str("invalid RTCP length or count"),
            ParseError::BadFeedback => f.write_str("malformed RTCP feedback message"),
            ParseError::WrongProtocol => f.write_str("packet is not of the expected protocol"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Returns `Err(Truncated)` unless `buf` has at least `needed` bytes.
pub(crate) fn need(buf: &[u8], needed: usize) -> Result<(), ParseError> {
    if buf.len() < needed {
        Err(ParseError::Truncated {
            needed,
            available: buf.len(),
        })
    } else {
        Ok(())
    }
}

/// Reads a big-endian u16 at `at`; the caller has checked the bounds.
pub(crate) fn be16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// Reads a big-endian u32 at `at`; the caller has checked the bounds.
pub(crate) fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}
