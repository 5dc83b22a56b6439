//! What the OpenCVFilter base raises of a process's errors. KMS raises one Error event per
//! failed frame (its `process` throws, the GStreamer element posts an error message, every
//! frame); at 30 frames a second that is 30 events a second of the same text. The base
//! raises each distinct text at once, then at most once a second of stream time while it
//! repeats, and keeps, per text:
//!
//! - the stream time (pts) it was last raised at;
//! - how many times it failed since without being raised: the next time it is raised, its
//!   description ends with `(and N more times since)`, so that a client learns how often it
//!   failed, not only that it did.
//!
//! At most [`TEXTS`] texts are kept: a new one forgets the one raised longest ago (its
//! uncounted repeats with it). A frame whose pts goes back (the pipeline restarted, a player
//! seeked back) resets the times: each text is raised again at its next failure, with its
//! count. Frames without a pts have no stream time: a text repeats at most once every
//! [`REPEAT_FRAMES`] failures then. The host's limit per element ([`crate::Host::error`])
//! applies after this one.

/// How long the same text waits before it is raised again (stream time).
pub(super) const REPEAT_NS: u64 = 1_000_000_000;

/// Without frame times: the failures of a text between two raises of it.
pub(super) const REPEAT_FRAMES: u32 = 30;

/// The distinct texts kept.
pub(super) const TEXTS: usize = 8;

/// A text's description is cut to this many characters when a count follows it (the host
/// keeps 300).
const CUT: usize = 240;

/// When a text was last raised.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Raised {
    /// At this pts.
    At(u64),
    /// At a frame without a pts: counted in failures.
    Untimed,
    /// Before the pts went back: raise at the next failure.
    Reset,
}

#[derive(Debug)]
struct Text {
    text: String,
    raised: Raised,
    /// Failures since it was last raised, not raised.
    repeats: u32,
    /// When it was last raised, in raises of this throttle (which one to forget).
    order: u64,
}

/// The errors of one element (see the module's doc).
#[derive(Debug, Default)]
pub(super) struct Throttle {
    texts: Vec<Text>,
    /// The last frame's pts.
    last_pts: Option<u64>,
    raises: u64,
}

impl Throttle {
    /// A frame comes, at `pts`: a pts before the last one resets the texts' times.
    pub(super) fn frame(&mut self, pts: Option<u64>) {
        let Some(now) = pts else { return };
        if self.last_pts.is_some_and(|last| now < last) {
            for t in &mut self.texts {
                t.raised = Raised::Reset;
            }
        }
        self.last_pts = Some(now);
    }

    /// The frame at `pts` failed with `text`: the description to raise, if any.
    pub(super) fn failed(&mut self, text: &str, pts: Option<u64>) -> Option<String> {
        let raised = pts.map_or(Raised::Untimed, Raised::At);
        let order = self.raises + 1;
        let Some(t) = self.texts.iter_mut().find(|t| t.text == text) else {
            if self.texts.len() == TEXTS {
                let oldest = (0..TEXTS).min_by_key(|&i| self.texts[i].order);
                self.texts.swap_remove(oldest.unwrap_or(0));
            }
            self.texts.push(Text {
                text: text.to_string(),
                raised,
                repeats: 0,
                order,
            });
            self.raises = order;
            return Some(text.to_string());
        };
        let due = match (t.raised, pts) {
            (Raised::Reset, _) => true,
            (Raised::At(at), Some(now)) => now.saturating_sub(at) >= REPEAT_NS,
            // A pts now and none before, or none now: counted in failures.
            _ => t.repeats + 1 >= REPEAT_FRAMES,
        };
        if !due {
            t.repeats = t.repeats.saturating_add(1);
            return None;
        }
        let description = match t.repeats {
            0 => text.to_string(),
            n => {
                let cut: String = text.chars().take(CUT).collect();
                let more = if cut.len() < text.len() { "..." } else { "" };
                let s = if n == 1 { "" } else { "s" };
                format!("{cut}{more} (and {n} more time{s} since)")
            }
        };
        t.raised = raised;
        t.repeats = 0;
        t.order = order;
        self.raises = order;
        Some(description)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// Feeds (pts, text) failures, a frame each; the descriptions raised.
    fn run(t: &mut Throttle, failures: &[(Option<u64>, &str)]) -> Vec<String> {
        failures
            .iter()
            .filter_map(|&(pts, text)| {
                t.frame(pts);
                t.failed(text, pts)
            })
            .collect()
    }

    #[test]
    fn a_repeating_text_once_a_second_with_its_count() {
        let mut t = Throttle::default();
        let frames: Vec<_> = (0..61).map(|i| (Some(i * S / 30), "boom")).collect();
        // 0 s, 1 s (29 in between), 2 s (29 again).
        assert_eq!(
            run(&mut t, &frames),
            [
                "boom",
                "boom (and 29 more times since)",
                "boom (and 29 more times since)"
            ]
        );
    }

    #[test]
    fn each_text_has_its_own_second() {
        let mut t = Throttle::default();
        // Alternating texts: each raised once, not every frame.
        let frames: Vec<_> = (0..30)
            .map(|i| (Some(i * S / 30), if i % 2 == 0 { "a" } else { "b" }))
            .collect();
        assert_eq!(run(&mut t, &frames), ["a", "b"]);
        assert_eq!(
            run(&mut t, &[(Some(S), "a"), (Some(S + S / 30), "b")]),
            ["a (and 14 more times since)", "b (and 14 more times since)"]
        );
    }

    #[test]
    fn a_pts_going_back_resets_the_times() {
        let mut t = Throttle::default();
        assert_eq!(
            run(&mut t, &[(Some(3600 * S), "x"), (Some(3600 * S + 1), "x")]),
            ["x"]
        );
        // A restart at 0: raised at once (an hour before the old time would allow), then
        // a second of the new times.
        assert_eq!(
            run(
                &mut t,
                &[(Some(0), "x"), (Some(S / 2), "x"), (Some(S), "x")]
            ),
            ["x (and 1 more time since)", "x (and 1 more time since)"]
        );
        // A frame that went back without failing resets too.
        t.frame(Some(S / 10));
        assert_eq!(t.failed("x", Some(S / 10 + 1)), Some("x".into()));
    }

    #[test]
    fn without_frame_times_once_every_30_failures() {
        let mut t = Throttle::default();
        let frames: Vec<_> = (0..61).map(|_| (None, "u")).collect();
        assert_eq!(
            run(&mut t, &frames),
            [
                "u",
                "u (and 29 more times since)",
                "u (and 29 more times since)"
            ]
        );
    }

    #[test]
    fn at_most_eight_texts_the_one_raised_longest_ago_forgotten() {
        let mut t = Throttle::default();
        let names: Vec<String> = (0..=TEXTS).map(|i| format!("e{i}")).collect();
        for (i, n) in names.iter().enumerate() {
            assert_eq!(t.failed(n, Some(i as u64)), Some(n.clone()));
        }
        assert_eq!(t.texts.len(), TEXTS);
        // e0 was forgotten: raised again at once; e1..e8 are still within their second.
        assert_eq!(t.failed("e0", Some(20)), Some("e0".into()));
        assert_eq!(t.failed("e8", Some(21)), None);
        assert!(t.texts.iter().all(|x| x.text != "e1"), "e1 forgotten now");
    }

    #[test]
    fn a_long_text_is_cut_before_its_count() {
        let mut t = Throttle::default();
        let long = "é".repeat(400);
        assert_eq!(t.failed(&long, Some(0)), Some(long.clone()));
        assert_eq!(t.failed(&long, Some(1)), None);
        let d = t.failed(&long, Some(S)).expect("raised");
        assert_eq!(d, format!("{}... (and 1 more time since)", "é".repeat(CUT)));
    }
}
