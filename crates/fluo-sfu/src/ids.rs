//! Small `Copy` identifiers and the generational slab they index.
//!
//! Ids are an index into a `Vec` plus a generation, so a stale id (of a removed and
//! reused slot) is detected instead of silently reaching another object.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name {
            index: u32,
            generation: u32,
        }

        impl $name {
            /// The slot index, dense from 0: usable to index side tables kept by the caller.
            pub fn index(self) -> usize {
                self.index as usize
            }

            /// The id as one number (generation in the high half), for a caller that must
            /// name it in a `u64` key.
            pub fn to_bits(self) -> u64 {
                (u64::from(self.generation) << 32) | u64::from(self.index)
            }

            /// The id [`to_bits`](Self::to_bits) made. Any number makes an id: one that
            /// names no live slot is found nowhere.
            pub fn from_bits(bits: u64) -> Self {
                $name {
                    index: bits as u32,
                    generation: (bits >> 32) as u32,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}v{})", stringify!($name), self.index, self.generation)
            }
        }

        impl SlabKey for $name {
            fn new(index: u32, generation: u32) -> Self {
                $name { index, generation }
            }
            fn parts(self) -> (u32, u32) {
                (self.index, self.generation)
            }
        }
    };
}

id_type!(
    /// Identifies a node (an element's media face) in a [`crate::MediaRouter`].
    NodeId
);

/// The kind of media a stream carries: Fluo's one media kind (str0m's is converted once, where
/// packets enter; Kurento's `AUDIO` / `VIDEO` strings only on the wire).
///
/// Per-kind state is a `[T; 2]` indexed by the kind itself (`flowing[kind]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MediaKind {
    /// Audio: no keyframes, no retransmission cache by default.
    Audio,
    /// Video: keyframe requests and retransmissions.
    Video,
}

impl MediaKind {
    /// Both kinds, audio first (the order of per-kind arrays).
    pub const ALL: [MediaKind; 2] = [MediaKind::Audio, MediaKind::Video];

    /// The kind's place in a per-kind array: 0 for audio, 1 for video.
    pub const fn index(self) -> usize {
        match self {
            MediaKind::Audio => 0,
            MediaKind::Video => 1,
        }
    }

    /// The other kind.
    pub const fn other(self) -> MediaKind {
        match self {
            MediaKind::Audio => MediaKind::Video,
            MediaKind::Video => MediaKind::Audio,
        }
    }

    /// Kurento's name of the kind (its `MediaType`): `AUDIO` or `VIDEO`.
    pub const fn wire_name(self) -> &'static str {
        match self {
            MediaKind::Audio => "AUDIO",
            MediaKind::Video => "VIDEO",
        }
    }

    /// The kind Kurento's `MediaType` names, if it is one (`DATA` is not a media kind).
    pub fn from_wire(name: &str) -> Option<MediaKind> {
        match name {
            "AUDIO" => Some(MediaKind::Audio),
            "VIDEO" => Some(MediaKind::Video),
            _ => None,
        }
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

impl<T> std::ops::Index<MediaKind> for [T; 2] {
    type Output = T;
    fn index(&self, kind: MediaKind) -> &T {
        &self[kind.index()]
    }
}

impl<T> std::ops::IndexMut<MediaKind> for [T; 2] {
    fn index_mut(&mut self, kind: MediaKind) -> &mut T {
        &mut self[kind.index()]
    }
}

pub(crate) trait SlabKey: Copy {
    fn new(index: u32, generation: u32) -> Self;
    fn parts(self) -> (u32, u32);
}

#[derive(Debug)]
struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

/// A `Vec` of slots with a free list; lookups are one bounds check and one compare.
#[derive(Debug)]
pub(crate) struct Slab<K, T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    _key: std::marker::PhantomData<K>,
}

impl<K: SlabKey, T> Slab<K, T> {
    pub(crate) fn new() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            _key: std::marker::PhantomData,
        }
    }

    pub(crate) fn insert(&mut self, value: T) -> K {
        if let Some(index) = self.free.pop() {
            let e = &mut self.entries[index as usize];
            e.value = Some(value);
            K::new(index, e.generation)
        } else {
            let index = u32::try_from(self.entries.len()).expect("fewer than 2^32 slab entries");
            self.entries.push(Entry {
                generation: 0,
                value: Some(value),
            });
            K::new(index, 0)
        }
    }

    /// The key the next [`insert`](Self::insert) returns.
    pub(crate) fn next_key(&self) -> K {
        match self.free.last() {
            Some(&index) => K::new(index, self.entries[index as usize].generation),
            None => K::new(self.entries.len() as u32, 0),
        }
    }

    pub(crate) fn remove(&mut self, key: K) -> Option<T> {
        let (index, generation) = key.parts();
        let e = self.entries.get_mut(index as usize)?;
        if e.generation != generation {
            return None;
        }
        let v = e.value.take()?;
        e.generation = e.generation.wrapping_add(1);
        self.free.push(index);
        Some(v)
    }

    #[inline]
    pub(crate) fn get(&self, key: K) -> Option<&T> {
        let (index, generation) = key.parts();
        let e = self.entries.get(index as usize)?;
        if e.generation != generation {
            return None;
        }
        e.value.as_ref()
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, key: K) -> Option<&mut T> {
        let (index, generation) = key.parts();
        let e = self.entries.get_mut(index as usize)?;
        if e.generation != generation {
            return None;
        }
        e.value.as_mut()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (K, &mut T)> {
        self.entries.iter_mut().enumerate().filter_map(|(i, e)| {
            let generation = e.generation;
            e.value.as_mut().map(|v| (K::new(i as u32, generation), v))
        })
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (K, &T)> {
        self.entries.iter().enumerate().filter_map(|(i, e)| {
            e.value
                .as_ref()
                .map(|v| (K::new(i as u32, e.generation), v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_ids_are_rejected() {
        let mut s: Slab<NodeId, &str> = Slab::new();
        let a = s.insert("a");
        assert_eq!(s.remove(a), Some("a"));
        let next = s.next_key();
        let b = s.insert("b");
        assert_eq!(next, b);
        assert_eq!(a.index(), b.index());
        assert_eq!(s.get(a), None);
        assert_eq!(s.get(b), Some(&"b"));
        assert_eq!(s.remove(a), None);
        assert_eq!(s.iter().count(), 1);
    }

    #[test]
    fn per_kind_arrays_are_indexed_by_the_kind() {
        let mut flowing = [false; 2];
        flowing[MediaKind::Video] = true;
        assert_eq!(flowing, [false, true]);
        assert!(!flowing[MediaKind::Audio]);
        for k in MediaKind::ALL {
            assert_eq!(MediaKind::from_wire(k.wire_name()), Some(k));
            assert_eq!(MediaKind::ALL[k.index()], k);
            assert_ne!(k.other(), k);
        }
        assert_eq!(MediaKind::from_wire("DATA"), None);
        assert_eq!(MediaKind::Video.to_string(), "VIDEO");
    }
}
