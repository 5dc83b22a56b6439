//! Canny's edge detector on a grey picture, as OpenCV's `Canny` with its defaults (a 3x3
//! Sobel aperture, the L1 gradient |dx| + |dy|, replicated borders, no smoothing first):
//! the gradient's magnitude thinned to its local maxima across the edge, the maxima over
//! the high threshold kept, and those over the low one kept where they touch a kept one.
//!
//! [`Canny`] keeps its working buffers from one frame to the next (they grow when the
//! picture does): 3 bytes a pixel (the magnitude as `i16`, a byte of direction then state),
//! plus a stack of the edge pixels; the picture itself is replaced by its edges in place.
//! A row's gradient is thinned as soon as the next row's is known, while the rows are warm.

/// tan(22.5°) and tan(67.5°), in 1/32768ths: the bounds between the four directions.
/// (|dx|, |dy| <= 1020 for 8-bit pixels: every product fits an `i32`.)
const TAN_22: i32 = 13_573;
const TAN_67: i32 = 79_109;
const ONE: i32 = 32_768;

/// A pixel's mark: the direction of its gradient (set with the magnitude), then, once
/// thinned, what it is.
const ACROSS_X: u8 = 0;
const ACROSS_Y: u8 = 1;
/// The gradient points up-right (or down-left).
const RISING: u8 = 2;
/// The gradient points down-right (or up-left).
const FALLING: u8 = 3;
/// Thinned: not a local maximum over the low threshold.
const NONE: u8 = 0;
/// A local maximum over the low threshold only: an edge where it touches one.
const WEAK: u8 = 1;
/// An edge.
const EDGE: u8 = 2;

/// Canny's working buffers. The magnitudes and marks have a border of one pixel all round
/// (zero magnitude, never an edge), so that no neighbour is out of bounds.
#[derive(Debug, Default)]
pub struct Canny {
    /// Width and height the buffers are laid out for.
    size: (usize, usize),
    mag: Vec<i16>,
    marks: Vec<u8>,
    /// Edges whose neighbours are still to be looked at (indices into `mag`/`marks`).
    stack: Vec<u32>,
}

impl Canny {
    /// Replaces `gray` (`w` x `h`, rows packed) by its edges: 255 on an edge, 0 elsewhere.
    /// The two thresholds are taken in either order, any values (a high one over the
    /// largest gradient, 2040, finds no edge). A `gray` shorter than its size is left as it
    /// is.
    pub fn run(&mut self, gray: &mut [u8], w: usize, h: usize, threshold1: i32, threshold2: i32) {
        let n = w * h;
        if n == 0 || gray.len() < n {
            return;
        }
        let gray = &mut gray[..n];
        let (low, high) = (threshold1.min(threshold2), threshold1.max(threshold2));
        let pw = w + 2;
        if self.size != (w, h) {
            // Every cell written again below, but the border: zero it.
            self.size = (w, h);
            self.mag.clear();
            self.mag.resize(pw * (h + 2), 0);
            self.marks.clear();
            self.marks.resize(pw * (h + 2), NONE);
        }
        self.stack.clear();
        for y in 0..h {
            self.gradient_row(gray, w, h, y, low);
            if y > 0 {
                self.thin_row(gray, w, y - 1, low, high);
            }
        }
        self.thin_row(gray, w, h - 1, low, high);
        // Hysteresis: the weak maxima that touch an edge (of 8 neighbours) become edges.
        while let Some(p) = self.stack.pop() {
            let p = p as usize;
            let (y, x) = (p / pw - 1, p % pw - 1);
            gray[y * w + x] = 255;
            for q in [
                p - pw - 1,
                p - pw,
                p - pw + 1,
                p - 1,
                p + 1,
                p + pw - 1,
                p + pw,
                p + pw + 1,
            ] {
                if self.marks[q] == WEAK {
                    self.marks[q] = EDGE;
                    self.stack.push(q as u32);
                }
            }
        }
    }

    /// Row `y`'s Sobel gradients (replicated borders): their L1 magnitude, and the direction
    /// where it is over `low`.
    fn gradient_row(&mut self, gray: &[u8], w: usize, h: usize, y: usize, low: i32) {
        let row = |r: usize| &gray[r * w..r * w + w];
        let (up, mid, down) = (row(y.saturating_sub(1)), row(y), row((y + 1).min(h - 1)));
        let at = (y + 1) * (w + 2) + 1;
        let mag = &mut self.mag[at..at + w];
        let marks = &mut self.marks[at..at + w];
        for x in 0..w {
            let (l, r) = (x.saturating_sub(1), (x + 1).min(w - 1));
            let p = |s: &[u8], i: usize| i32::from(s[i]);
            let dx = p(up, r) + 2 * p(mid, r) + p(down, r) - p(up, l) - 2 * p(mid, l) - p(down, l);
            let dy = p(down, l) + 2 * p(down, x) + p(down, r) - p(up, l) - 2 * p(up, x) - p(up, r);
            let (ax, ay) = (dx.abs(), dy.abs());
            let m = ax + ay;
            mag[x] = m as i16;
            if m > low {
                marks[x] = if ay * ONE < ax * TAN_22 {
                    ACROSS_X
                } else if ay * ONE > ax * TAN_67 {
                    ACROSS_Y
                } else if (dx < 0) != (dy < 0) {
                    RISING
                } else {
                    FALLING
                };
            }
        }
    }

    /// Row `y` thinned (its neighbours' magnitudes known): each pixel's mark becomes what it
    /// is, its grey level 0, and the edges go on the stack.
    fn thin_row(&mut self, gray: &mut [u8], w: usize, y: usize, low: i32, high: i32) {
        let pw = w + 2;
        let at = (y + 1) * pw + 1;
        gray[y * w..y * w + w].fill(0);
        for p in at..at + w {
            let v = i32::from(self.mag[p]);
            if v <= low {
                self.marks[p] = NONE;
                continue;
            }
            let m = |q: usize| i32::from(self.mag[q]);
            // The neighbours along the gradient: a maximum is greater than the one before
            // it and not less than the one after it (one pixel of a two-pixel ridge).
            let peak = match self.marks[p] {
                ACROSS_X => v > m(p - 1) && v >= m(p + 1),
                ACROSS_Y => v > m(p - pw) && v >= m(p + pw),
                RISING => v > m(p - pw + 1) && v > m(p + pw - 1),
                _ => v > m(p - pw - 1) && v > m(p + pw + 1),
            };
            self.marks[p] = if !peak {
                NONE
            } else if v > high {
                self.stack.push(p as u32);
                EDGE
            } else {
                WEAK
            };
        }
    }
}

/// The edges of `gray` (`w` x `h`, rows packed) in a new picture: 255 on an edge, 0
/// elsewhere (see [`Canny::run`]; a `gray` shorter than its size gives no edges).
pub fn canny(gray: &[u8], w: usize, h: usize, threshold1: i32, threshold2: i32) -> Vec<u8> {
    if gray.len() < w * h {
        return vec![0; w * h];
    }
    let mut out = gray[..w * h].to_vec();
    Canny::default().run(&mut out, w, h, threshold1, threshold2);
    out
}
