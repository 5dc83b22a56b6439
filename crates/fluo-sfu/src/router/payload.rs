//! Payload-type mapping from a producer's numbering to a consumer's.

/// Maps the producer's payload types to the consumer's, by codec rather than by number
/// (two peers may number one codec differently). Unmapped types are dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct PayloadMap {
    map: [u8; 128],
}

const UNMAPPED: u8 = 0xff;

impl std::fmt::Debug for PayloadMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries((0u8..128).filter_map(|pt| self.get(pt).map(|to| (pt, to))))
            .finish()
    }
}

impl Default for PayloadMap {
    fn default() -> Self {
        Self::identity()
    }
}

impl PayloadMap {
    /// Every payload type passes unchanged.
    pub fn identity() -> Self {
        let mut map = [0u8; 128];
        for (i, m) in map.iter_mut().enumerate() {
            *m = i as u8;
        }
        PayloadMap { map }
    }

    /// Nothing passes until [`insert`](Self::insert) is called.
    pub fn empty() -> Self {
        PayloadMap {
            map: [UNMAPPED; 128],
        }
    }

    /// Maps producer payload type `from` to consumer payload type `to` (both 0..=127;
    /// out-of-range values are ignored).
    pub fn insert(&mut self, from: u8, to: u8) {
        if from < 128 && to < 128 {
            self.map[usize::from(from)] = to;
        }
    }

    /// Stops forwarding producer payload type `from`.
    pub fn remove(&mut self, from: u8) {
        if from < 128 {
            self.map[usize::from(from)] = UNMAPPED;
        }
    }

    /// The consumer payload type for producer payload type `pt`, if mapped.
    pub fn get(&self, pt: u8) -> Option<u8> {
        match self.map.get(usize::from(pt)) {
            Some(&UNMAPPED) | None => None,
            Some(&to) => Some(to),
        }
    }

    /// Builds the map by matching codec descriptions: each producer payload type maps to
    /// the first consumer payload type whose codec key compares equal (for example
    /// `(name, clock rate, channels, fmtp profile)` chosen by the caller).
    pub fn from_codecs<K: PartialEq>(producer: &[(u8, K)], consumer: &[(u8, K)]) -> Self {
        let mut m = Self::empty();
        for (from, key) in producer {
            if let Some((to, _)) = consumer.iter().find(|(_, k)| k == key) {
                m.insert(*from, *to);
            }
        }
        m
    }
}
