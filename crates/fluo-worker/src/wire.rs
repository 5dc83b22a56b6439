//! The byte encoding shared by the control protocol and the jobs' own parameters: fixed-width
//! little-endian integers, length-prefixed byte strings, one tag byte per enum variant.
//!
//! Both sides of a worker's sockets decode what the other wrote, and the server must assume a
//! worker may be compromised (it runs the C decoders): decoding never panics, never allocates
//! more than the input holds, and refuses lengths over [`MAX_FRAME`].

use std::path::PathBuf;

/// The largest control frame either side accepts (16 MiB).
pub const MAX_FRAME: usize = 16 << 20;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input ended inside a value.
    #[error("truncated message")]
    Truncated,
    /// A length over [`MAX_FRAME`].
    #[error("length {0} over the limit")]
    TooLong(u64),
    /// An enum tag this side does not know.
    #[error("unknown tag {0}")]
    BadTag(u8),
    /// A string that is not UTF-8.
    #[error("string is not UTF-8")]
    BadUtf8,
    /// Bytes left after the value.
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

/// Appends encoded values to a buffer.
pub struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    /// A writer appending to `buf`.
    pub fn new(buf: &'a mut Vec<u8>) -> Writer<'a> {
        Writer { buf }
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// A little-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A little-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A little-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A boolean as one byte.
    pub fn bool(&mut self, v: bool) {
        self.u8(v as u8);
    }

    /// A u32 length, then the bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }

    /// A string as [`Writer::bytes`].
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    /// Any [`Wire`] value.
    pub fn put<T: Wire>(&mut self, v: &T) {
        v.put(self);
    }
}

/// Reads encoded values from a byte slice.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A boolean (any byte but 0 and 1 is refused).
    pub fn bool(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            t => Err(WireError::BadTag(t)),
        }
    }

    /// Length-prefixed bytes, borrowed from the input.
    pub fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u32()? as usize;
        if n > MAX_FRAME {
            return Err(WireError::TooLong(n as u64));
        }
        self.take(n)
    }

    /// A length-prefixed UTF-8 string, borrowed from the input.
    pub fn str(&mut self) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| WireError::BadUtf8)
    }

    /// Any [`Wire`] value.
    pub fn get<T: Wire>(&mut self) -> Result<T, WireError> {
        T::get(self)
    }

    /// What is left unread.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Fails when bytes are left.
    pub fn finish(&self) -> Result<(), WireError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}

/// A value with a byte encoding.
pub trait Wire: Sized {
    /// Appends the value.
    fn put(&self, w: &mut Writer<'_>);
    /// Reads one value.
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError>;
}

/// Encodes a value into a new buffer.
pub fn encode<T: Wire>(v: &T) -> Vec<u8> {
    let mut buf = Vec::new();
    v.put(&mut Writer::new(&mut buf));
    buf
}

/// Decodes a value that must fill `bytes` exactly.
pub fn decode<T: Wire>(bytes: &[u8]) -> Result<T, WireError> {
    let mut r = Reader::new(bytes);
    let v = T::get(&mut r)?;
    r.finish()?;
    Ok(v)
}

macro_rules! int_wire {
    ($($t:ident),*) => {$(
        impl Wire for $t {
            fn put(&self, w: &mut Writer<'_>) {
                w.$t(*self)
            }
            fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
                r.$t()
            }
        }
    )*};
}
int_wire!(u8, u16, u32, u64, bool);

impl Wire for String {
    fn put(&self, w: &mut Writer<'_>) {
        w.str(self)
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.str().map(str::to_owned)
    }
}

impl Wire for PathBuf {
    fn put(&self, w: &mut Writer<'_>) {
        use std::os::unix::ffi::OsStrExt;
        w.bytes(self.as_os_str().as_bytes())
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(r.bytes()?)))
    }
}

impl<T: Wire> Wire for Option<T> {
    fn put(&self, w: &mut Writer<'_>) {
        match self {
            None => w.u8(0),
            Some(v) => {
                w.u8(1);
                v.put(w)
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        match r.u8()? {
            0 => Ok(None),
            1 => Ok(Some(T::get(r)?)),
            t => Err(WireError::BadTag(t)),
        }
    }
}

/// A list: a u32 count, then the items (for `Vec<u8>` the same bytes as [`Writer::bytes`]).
/// Each item takes at least one byte, so a count larger than the bytes left is refused before
/// anything is allocated.
impl<T: Wire> Wire for Vec<T> {
    fn put(&self, w: &mut Writer<'_>) {
        w.u32(self.len() as u32);
        for v in self {
            v.put(w)
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let n = r.u32()? as usize;
        if n > r.rest().len() {
            return Err(WireError::Truncated);
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(T::get(r)?);
        }
        Ok(out)
    }
}

impl<T: Wire, E: Wire> Wire for Result<T, E> {
    fn put(&self, w: &mut Writer<'_>) {
        match self {
            Ok(v) => {
                w.u8(0);
                v.put(w)
            }
            Err(e) => {
                w.u8(1);
                e.put(w)
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, WireError> {
        match r.u8()? {
            0 => Ok(Ok(T::get(r)?)),
            1 => Ok(Err(E::get(r)?)),
            t => Err(WireError::BadTag(t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let v: Vec<Option<String>> = vec![Some("a".into()), None, Some(String::new())];
        assert_eq!(decode::<Vec<Option<String>>>(&encode(&v)).unwrap(), v);
        let r: Result<Vec<u8>, String> = Err("no".into());
        assert_eq!(decode::<Result<Vec<u8>, String>>(&encode(&r)).unwrap(), r);
        let p = PathBuf::from("/srv/media/a b.webm");
        assert_eq!(decode::<PathBuf>(&encode(&p)).unwrap(), p);
    }

    #[test]
    fn hostile_bytes_are_refused_without_panic_or_allocation() {
        // A list claiming 4 billion items in 4 bytes.
        assert_eq!(
            decode::<Vec<u64>>(&[0xff, 0xff, 0xff, 0xff]),
            Err(WireError::Truncated)
        );
        // A byte string longer than the limit.
        assert!(matches!(
            Reader::new(&[0xff, 0xff, 0xff, 0x7f]).bytes(),
            Err(WireError::TooLong(_))
        ));
        assert_eq!(
            decode::<Vec<u8>>(&[0xff, 0xff, 0xff, 0x7f]),
            Err(WireError::Truncated)
        );
        // Vec<u8> and Writer::bytes agree.
        let mut raw = Vec::new();
        Writer::new(&mut raw).bytes(b"abc");
        assert_eq!(raw, encode(&b"abc".to_vec()));
        assert_eq!(decode::<bool>(&[2]), Err(WireError::BadTag(2)));
        assert_eq!(
            decode::<String>(&[1, 0, 0, 0, 0xff]),
            Err(WireError::BadUtf8)
        );
        assert_eq!(decode::<u8>(&[1, 2]), Err(WireError::Trailing(1)));
        // Every prefix of a valid encoding is refused, never read past.
        let full = encode(&vec![Some("abc".to_string()), None]);
        for n in 0..full.len() {
            assert!(
                decode::<Vec<Option<String>>>(&full[..n]).is_err(),
                "prefix {n}"
            );
        }
    }
}
