//! A virtual bottleneck in front of some viewers (`--limit FRACTION:KBPS[:QUEUE_MS]`): per
//! limited viewer a link of a fixed rate with a drop-tail queue, as a `tbf` would be. A
//! datagram's virtual arrival is when the link has carried it (the previous one's departure
//! or its own arrival, whichever is later, plus its size at the rate); one that would wait
//! longer than the queue's limit is dropped. The viewer takes each datagram at once but
//! counts it, reports it (TWCC) and times its latency at its virtual arrival.

/// IPv4 and UDP headers, counted with each datagram's payload.
const OVERHEAD: u64 = 28;

/// Which viewers are limited, and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// The share of the viewers behind a link, 0-1.
    pub fraction: f64,
    pub kbps: u32,
    /// Longest wait in the queue; a datagram that would wait more is dropped.
    pub queue_ms: u32,
}

impl Limit {
    /// `FRACTION:KBPS` or `FRACTION:KBPS:QUEUE_MS` (queue 60 ms by default).
    pub fn parse(s: &str) -> Result<Limit, String> {
        let bad = || format!("bad --limit {s} (FRACTION:KBPS[:QUEUE_MS], e.g. 0.33:300)");
        let mut it = s.split(':');
        let fraction: f64 = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let kbps: u32 = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let queue_ms: u32 = match it.next() {
            Some(q) => q.parse().map_err(|_| bad())?,
            None => 60,
        };
        let ok = (0.0..=1.0).contains(&fraction)
            && (10..=1_000_000).contains(&kbps)
            && (1..=10_000).contains(&queue_ms)
            && it.next().is_none();
        ok.then_some(Limit {
            fraction,
            kbps,
            queue_ms,
        })
        .ok_or_else(bad)
    }

    /// Whether viewer `id` is behind a link: `fraction` of the ids, spread evenly (with
    /// 0.33, ids 2, 5, 8, ...).
    pub fn applies(&self, id: usize) -> bool {
        let f = self.fraction;
        ((id + 1) as f64 * f).floor() > (id as f64 * f).floor()
    }
}

/// One viewer's link.
#[derive(Debug, Clone)]
pub struct Link {
    bps: u64,
    max_wait_ns: u64,
    /// When the link is done with what it carries (ns, the arrival times' clock).
    free_at_ns: u64,
    pub dropped: u64,
}

impl Link {
    pub fn new(limit: &Limit) -> Link {
        Link {
            bps: u64::from(limit.kbps) * 1000,
            max_wait_ns: u64::from(limit.queue_ms) * 1_000_000,
            free_at_ns: 0,
            dropped: 0,
        }
    }

    /// A datagram of `len` bytes arriving at `at_ns`: its virtual arrival, or `None` when
    /// the queue is full (dropped).
    pub fn pass(&mut self, at_ns: u64, len: usize) -> Option<u64> {
        let start = self.free_at_ns.max(at_ns);
        if start - at_ns > self.max_wait_ns {
            self.dropped += 1;
            return None;
        }
        let bits = (len as u64 + OVERHEAD) * 8;
        self.free_at_ns = start + bits * 1_000_000_000 / self.bps;
        Some(self.free_at_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_parses_and_spreads() {
        let l = Limit::parse("0.33:300").expect("parses");
        assert_eq!((l.kbps, l.queue_ms), (300, 60));
        assert_eq!(Limit::parse("0.5:300:20").map(|l| l.queue_ms), Ok(20));
        for bad in [
            "",
            "0.3",
            "1.5:300",
            "0.3:0",
            "0.3:300:0",
            "0.3:300:5:1",
            "x:300",
        ] {
            assert!(Limit::parse(bad).is_err(), "{bad}");
        }
        let n = (0..300).filter(|i| l.applies(*i)).count();
        assert_eq!(n, 99, "a third of 300, rounded down");
        let half = Limit::parse("0.5:300").expect("parses");
        assert!(!half.applies(0) && half.applies(1) && !half.applies(2));
        assert!(!(0..100).any(|i| Limit::parse("0:300").expect("parses").applies(i)));
        assert!((0..100).all(|i| Limit::parse("1:300").expect("parses").applies(i)));
    }

    /// 1 000-byte datagrams every ms (8.2 Mbit/s with headers) into 1 Mbit/s with a 60 ms
    /// queue: each leaves 8.2 ms after the one before, waiting more and more, until a wait
    /// would pass 60 ms: then about 7 in 8 are dropped and the rate out is the link's.
    #[test]
    fn a_link_queues_then_drops_at_its_rate() {
        let mut l = Link::new(&Limit::parse("1:1000").expect("parses"));
        let ms = 1_000_000u64;
        let out: Vec<Option<u64>> = (0..1000).map(|i| l.pass(i * ms, 1000)).collect();
        let per = (1000 + OVERHEAD) * 8 * 1000;
        assert_eq!(out[0], Some(per));
        assert_eq!(out[1], Some(2 * per), "queued behind the first");
        let carried: Vec<u64> = out.iter().flatten().copied().collect();
        // Busy from the first arrival to the last departure.
        let secs = *carried.last().expect("some carried") as f64 / 1e9;
        let rate = carried.len() as f64 * (1000 + OVERHEAD) as f64 * 8.0 / secs;
        assert!((rate - 1e6).abs() < 0.02e6, "{rate}");
        assert_eq!(l.dropped as usize, 1000 - carried.len());
        for (i, at) in out.iter().enumerate() {
            if let Some(at) = at {
                assert!(
                    *at - i as u64 * ms <= 60 * ms + per,
                    "waited at most the queue"
                );
            }
        }
        // Idle, the link forgets its queue.
        assert_eq!(l.pass(10_000 * ms, 100), Some(10_000 * ms + 128 * 8 * 1000));
    }
}
