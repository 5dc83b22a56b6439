//! What a measured round of a media bench must show before its figures count: the video came
//! back at its rate and size, the flashes the latency is read from were seen, the work was
//! in the frames received, and the server raised no Error. A round short of it ends the bench
//! with the row's name and the figure (a row that silently measured nothing is worse than no
//! row).

/// The bounds.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    /// Frames per second received, at least.
    pub fps: f64,
    /// Flashes not seen in a round, at most.
    pub missed: usize,
    /// The frames' size.
    pub size: (u32, u32),
    /// The share of frames that must show the work, where it can be seen.
    pub shown: f64,
}

/// The filters part's (640x360 at 30 fps): 27 fps, one flash missed, 95 % of the frames.
pub const FILTERS: Floor = Floor {
    fps: 27.0,
    missed: 1,
    size: (640, 360),
    shown: 0.95,
};

/// One round's figures the floor is checked on.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub fps: f64,
    pub missed: usize,
    pub size: (u32, u32),
    /// (frames showing the work, frames that could), where the work can be seen, with what
    /// it is (e.g. "overlay on the face").
    pub shown: Option<(usize, usize, &'static str)>,
    /// Error events the server raised.
    pub errors: Vec<String>,
}

impl Floor {
    /// `Err` naming `row` and every figure short of the floor.
    pub fn check(&self, row: &str, s: &Seen) -> Result<(), String> {
        let mut short = vec![];
        if s.fps.is_nan() || s.fps < self.fps {
            short.push(format!("{:.1} fps received (at least {})", s.fps, self.fps));
        }
        if s.missed > self.missed {
            short.push(format!(
                "{} flashes missed (at most {})",
                s.missed, self.missed
            ));
        }
        if s.size != self.size {
            short.push(format!(
                "frames {}x{} (not {}x{})",
                s.size.0, s.size.1, self.size.0, self.size.1
            ));
        }
        if let Some((o, n, what)) = s.shown {
            if n == 0 || (o as f64) < self.shown * n as f64 {
                short.push(format!(
                    "{what} in {o} of {n} frames (at least {:.0} %)",
                    self.shown * 100.0
                ));
            }
        }
        if !s.errors.is_empty() {
            short.push(format!("Error events: {}", s.errors.join("; ")));
        }
        match short.is_empty() {
            true => Ok(()),
            false => Err(format!("{row}: {}", short.join(", "))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Seen {
        Seen {
            fps: 30.0,
            missed: 0,
            size: (640, 360),
            shown: Some((405, 405, "overlay on the face")),
            errors: vec![],
        }
    }

    #[test]
    fn a_round_that_measured_what_it_says_passes() {
        assert_eq!(FILTERS.check("row", &good()), Ok(()));
        let mut s = good();
        (s.fps, s.missed, s.shown) = (27.0, 1, Some((385, 405, "x")));
        assert_eq!(FILTERS.check("row", &s), Ok(()));
    }

    #[test]
    fn each_shortfall_fails_with_the_row_and_the_figure() {
        let fail = |f: &dyn Fn(&mut Seen)| {
            let mut s = good();
            f(&mut s);
            FILTERS
                .check("ChromaFilter / fluo round 2", &s)
                .unwrap_err()
        };
        let e = fail(&|s| s.fps = 0.0);
        assert!(e.starts_with("ChromaFilter / fluo round 2: 0.0 fps"), "{e}");
        assert!(fail(&|s| s.fps = f64::NAN).contains("NaN fps"));
        assert!(fail(&|s| s.missed = 2).contains("2 flashes missed"));
        assert!(fail(&|s| s.size = (0, 0)).contains("frames 0x0"));
        assert!(fail(&|s| s.size = (320, 180)).contains("frames 320x180"));
        let e = fail(&|s| s.shown = Some((380, 405, "background in the band")));
        assert!(
            e.contains("background in the band in 380 of 405 frames"),
            "{e}"
        );
        assert!(fail(&|s| s.shown = Some((0, 0, "overlay"))).contains("in 0 of 0"));
        let e = fail(&|s| s.errors = vec!["FaceOverlayFilter: the image cannot be read".into()]);
        assert!(
            e.contains("Error events: FaceOverlayFilter: the image"),
            "{e}"
        );
        // Every figure short is named.
        let e = fail(&|s| (s.fps, s.missed) = (3.0, 14));
        assert!(e.contains("3.0 fps") && e.contains("14 flashes"), "{e}");
    }
}
