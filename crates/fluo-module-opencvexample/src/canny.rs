//! Canny's edge detector on a grey picture, as OpenCV's `Canny` with its defaults (a 3x3
//! Sobel aperture, the L1 gradient |dx| + |dy|, replicated borders, no smoothing first):
//! the gradient's magnitude thinned to its local maxima across the edge, the maxima over
//! the high threshold kept, and those over the low one kept where they touch a kept one.

/// tan(22.5°) and tan(67.5°), in 1/32768ths: the bounds between the four directions.
const TAN_22: i64 = 13_573;
const TAN_67: i64 = 79_109;
const ONE: i64 = 32_768;

/// The edges of `gray` (`w` x `h`, rows packed): 255 on an edge, 0 elsewhere. The two
/// thresholds are taken in either order. A `gray` shorter than its size gives no edges.
pub fn canny(gray: &[u8], w: usize, h: usize, threshold1: i32, threshold2: i32) -> Vec<u8> {
    let mut out = vec![0u8; w * h];
    if w == 0 || h == 0 || gray.len() < w * h {
        return out;
    }
    let (low, high) = (threshold1.min(threshold2), threshold1.max(threshold2));
    let (gx, gy, mag) = sobel(gray, w, h);
    let at = |x: isize, y: isize| -> i32 {
        if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
            0
        } else {
            mag[y as usize * w + x as usize]
        }
    };
    // 1: a local maximum over the low threshold; 2: one that is an edge.
    let mut state = vec![0u8; w * h];
    let mut edges = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let v = mag[i];
            if v <= low {
                continue;
            }
            let (ax, ay) = (i64::from(gx[i].abs()), i64::from(gy[i].abs()));
            let (x, y) = (x as isize, y as isize);
            // The neighbours along the gradient: a maximum is greater than the one before
            // it and not less than the one after it (one pixel of a two-pixel ridge).
            let peak = if ay * ONE < ax * TAN_22 {
                v > at(x - 1, y) && v >= at(x + 1, y)
            } else if ay * ONE > ax * TAN_67 {
                v > at(x, y - 1) && v >= at(x, y + 1)
            } else if (gx[i] < 0) != (gy[i] < 0) {
                v > at(x + 1, y - 1) && v > at(x - 1, y + 1)
            } else {
                v > at(x - 1, y - 1) && v > at(x + 1, y + 1)
            };
            if !peak {
                continue;
            }
            if v > high {
                state[i] = 2;
                edges.push(i);
            } else {
                state[i] = 1;
            }
        }
    }
    // Hysteresis: the weak maxima that touch an edge (of 8 neighbours) become edges.
    while let Some(i) = edges.pop() {
        out[i] = 255;
        let (x, y) = (i % w, i / w);
        for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
            for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                let j = ny * w + nx;
                if state[j] == 1 {
                    state[j] = 2;
                    edges.push(j);
                }
            }
        }
    }
    out
}

/// The 3x3 Sobel gradients (x, y) of `gray` with replicated borders, and their L1
/// magnitudes.
fn sobel(gray: &[u8], w: usize, h: usize) -> (Vec<i32>, Vec<i32>, Vec<i32>) {
    let n = w * h;
    let (mut gx, mut gy, mut mag) = (vec![0; n], vec![0; n], vec![0; n]);
    let p = |x: usize, y: usize| i32::from(gray[y * w + x]);
    for y in 0..h {
        let (up, down) = (y.saturating_sub(1), (y + 1).min(h - 1));
        for x in 0..w {
            let (left, right) = (x.saturating_sub(1), (x + 1).min(w - 1));
            let dx = p(right, up) + 2 * p(right, y) + p(right, down)
                - p(left, up)
                - 2 * p(left, y)
                - p(left, down);
            let dy = p(left, down) + 2 * p(x, down) + p(right, down)
                - p(left, up)
                - 2 * p(x, up)
                - p(right, up);
            let i = y * w + x;
            gx[i] = dx;
            gy[i] = dy;
            mag[i] = dx.abs() + dy.abs();
        }
    }
    (gx, gy, mag)
}
