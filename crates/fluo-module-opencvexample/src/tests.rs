use super::*;
use fluo_module::testing::{RgbaFrame, TestHost};

const BLACK: [u8; 4] = [0, 0, 0, 255];
const WHITE: [u8; 4] = [255, 255, 255, 255];

fn example(host: &mut TestHost) -> Box<dyn Instance> {
    OpenCvExample
        .create(host, "OpenCVExample", &Map::new())
        .expect("an OpenCVExample")
}

fn call(
    f: &mut dyn Instance,
    host: &mut TestHost,
    method: &str,
    name: &str,
    n: i64,
) -> Result<Value, KurentoError> {
    let params = Map::from_iter([(name.to_string(), Value::from(n))]);
    f.invoke(host, method, &params)
}

/// The columns of row `y` that are white (an edge) in `frame`; every other pixel of the row
/// must be black.
fn edge_columns(frame: &RgbaFrame, y: u32) -> Vec<u32> {
    (0..frame.width)
        .filter(|&x| match frame.pixel(x, y) {
            WHITE => true,
            BLACK => false,
            other => panic!("({x}, {y}) is neither an edge nor black: {other:?}"),
        })
        .collect()
}

#[test]
fn edges_by_default_one_pixel_wide_white_on_black() {
    let mut host = TestHost::default();
    let mut f = example(&mut host);
    let mut frame = RgbaFrame::filled(32, 8, BLACK);
    frame.fill_rect((16, 0, 16, 8), [200, 40, 40, 255]);
    frame.process(&mut *f, &mut host, 0);
    for y in 0..8 {
        assert_eq!(edge_columns(&frame, y), [15], "row {y}");
    }
    assert!(host.errors.is_empty());
}

/// A 32x8 frame: columns 16.. are grey 50 on black in rows 0..4 (a step of 50: a gradient of
/// 200) and white in rows 4..8 (a gradient of 1020).
fn steps() -> RgbaFrame {
    let mut frame = RgbaFrame::filled(32, 8, BLACK);
    frame.fill_rect((16, 0, 16, 4), [50, 50, 50, 255]);
    frame.fill_rect((16, 4, 16, 4), WHITE);
    frame
}

#[test]
fn the_edge_threshold_is_cannys_other_threshold() {
    let mut host = TestHost::default();
    // Both thresholds 125: both steps are edges.
    let mut f = example(&mut host);
    let mut frame = steps();
    frame.process(&mut *f, &mut host, 0);
    assert_eq!(edge_columns(&frame, 1), [15]);
    assert_eq!(edge_columns(&frame, 6), [15]);
    // 125 and 255: the weak step is an edge where it touches the strong one (hysteresis)...
    call(&mut *f, &mut host, "setEdgeThreshold", "edgeValue", 255).expect("set");
    let mut frame = steps();
    frame.process(&mut *f, &mut host, 1);
    assert_eq!(edge_columns(&frame, 1), [15]);
    // ...and not where it stands alone.
    let mut alone = RgbaFrame::filled(32, 8, BLACK);
    alone.fill_rect((16, 0, 16, 8), [50, 50, 50, 255]);
    alone.process(&mut *f, &mut host, 2);
    assert!(edge_columns(&alone, 3).is_empty());
    // 190 and 125: the lone step's 200 is over the high threshold, 190: an edge again.
    call(&mut *f, &mut host, "setEdgeThreshold", "edgeValue", 190).expect("set");
    let mut alone2 = RgbaFrame::filled(32, 8, BLACK);
    alone2.fill_rect((16, 0, 16, 8), [50, 50, 50, 255]);
    alone2.process(&mut *f, &mut host, 3);
    assert_eq!(edge_columns(&alone2, 3), [15]);
}

#[test]
fn filter_type_1_shows_the_grey_picture() {
    let mut host = TestHost::default();
    let mut f = example(&mut host);
    assert_eq!(
        call(&mut *f, &mut host, "setFilterType", "filterType", 1),
        Ok(Value::Null)
    );
    let mut frame = RgbaFrame::filled(4, 2, [255, 0, 0, 255]);
    frame.fill_rect((2, 0, 2, 2), [0, 0, 255, 128]);
    frame.process(&mut *f, &mut host, 0);
    assert_eq!(frame.pixel(0, 0), [76, 76, 76, 255], "red's luma");
    assert_eq!(frame.pixel(3, 1), [29, 29, 29, 255], "blue's luma, opaque");
    // Back to edges.
    call(&mut *f, &mut host, "setFilterType", "filterType", 0).expect("set");
    let mut frame = RgbaFrame::filled(4, 2, [255, 0, 0, 255]);
    frame.process(&mut *f, &mut host, 1);
    assert_eq!(frame.pixel(0, 0), BLACK, "no edge in one colour");
}

#[test]
fn any_int_is_taken_as_kms_takes_it() {
    let mut host = TestHost::default();
    let mut f = example(&mut host);
    // A filter type other than 0 shows the grey picture (KMS's `filterType == 0` test).
    for n in [2, -1, i64::from(i32::MAX)] {
        assert_eq!(
            call(&mut *f, &mut host, "setFilterType", "filterType", n),
            Ok(Value::Null),
            "setFilterType({n})"
        );
        let mut frame = RgbaFrame::filled(4, 2, [255, 0, 0, 255]);
        frame.process(&mut *f, &mut host, 0);
        assert_eq!(frame.pixel(0, 0), [76, 76, 76, 255], "grey with type {n}");
    }
    call(&mut *f, &mut host, "setFilterType", "filterType", 0).expect("set");
    // A lone step of 70 (a gradient of 280): an edge under a high threshold of 255, none
    // under 300 (the threshold is not cut to 255), none over the largest gradient (2040),
    // an edge again with a negative one (125 is then the high threshold).
    let step = |f: &mut dyn Instance, host: &mut TestHost| {
        let mut frame = RgbaFrame::filled(32, 8, BLACK);
        frame.fill_rect((16, 0, 16, 8), [70, 70, 70, 255]);
        frame.process(f, host, 0);
        edge_columns(&frame, 3)
    };
    for (t, want) in [
        (255, vec![15]),
        (300, vec![]),
        (2041, vec![]),
        (-1, vec![15]),
    ] {
        assert_eq!(
            call(&mut *f, &mut host, "setEdgeThreshold", "edgeValue", t),
            Ok(Value::Null),
            "setEdgeThreshold({t})"
        );
        assert_eq!(step(&mut *f, &mut host), want, "threshold {t}");
    }
    // A white step's gradient (1020) is an edge up to 1019.
    call(&mut *f, &mut host, "setEdgeThreshold", "edgeValue", 1019).expect("set");
    let mut frame = RgbaFrame::filled(8, 2, BLACK);
    frame.fill_rect((4, 0, 4, 2), WHITE);
    frame.process(&mut *f, &mut host, 0);
    assert_eq!(edge_columns(&frame, 0), [3]);
    assert_eq!(
        f.invoke(&mut host, "other", &Map::new())
            .map_err(|e| e.code),
        Err(ErrorCode::MediaObjectOperationNotSupported)
    );
    assert!(host.errors.is_empty());
}

/// Canny as it was first written here, a pixel at a time with bounds checks and a buffer
/// per step: the reference the kept-buffers one must match.
fn reference(gray: &[u8], w: usize, h: usize, t1: i32, t2: i32) -> Vec<u8> {
    let (low, high) = (t1.min(t2), t1.max(t2));
    let p = |x: usize, y: usize| i32::from(gray[y * w + x]);
    let mut g = vec![(0, 0, 0); w * h];
    for y in 0..h {
        let (u, d) = (y.saturating_sub(1), (y + 1).min(h - 1));
        for x in 0..w {
            let (l, r) = (x.saturating_sub(1), (x + 1).min(w - 1));
            let dx = p(r, u) + 2 * p(r, y) + p(r, d) - p(l, u) - 2 * p(l, y) - p(l, d);
            let dy = p(l, d) + 2 * p(x, d) + p(r, d) - p(l, u) - 2 * p(x, u) - p(r, u);
            g[y * w + x] = (dx, dy, dx.abs() + dy.abs());
        }
    }
    let at = |x: isize, y: isize| {
        if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
            0
        } else {
            g[y as usize * w + x as usize].2
        }
    };
    let mut state = vec![0u8; w * h];
    let mut stack = vec![];
    for i in 0..w * h {
        let (dx, dy, v) = g[i];
        let (x, y) = ((i % w) as isize, (i / w) as isize);
        let (ax, ay) = (i64::from(dx.abs()), i64::from(dy.abs()));
        let peak = v > low
            && if ay * 32_768 < ax * 13_573 {
                v > at(x - 1, y) && v >= at(x + 1, y)
            } else if ay * 32_768 > ax * 79_109 {
                v > at(x, y - 1) && v >= at(x, y + 1)
            } else if (dx < 0) != (dy < 0) {
                v > at(x + 1, y - 1) && v > at(x - 1, y + 1)
            } else {
                v > at(x - 1, y - 1) && v > at(x + 1, y + 1)
            };
        if peak {
            state[i] = if v > high { 2 } else { 1 };
            if v > high {
                stack.push(i);
            }
        }
    }
    let mut out = vec![0u8; w * h];
    while let Some(i) = stack.pop() {
        out[i] = 255;
        let (x, y) = (i % w, i / w);
        for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
            for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                if state[ny * w + nx] == 1 {
                    state[ny * w + nx] = 2;
                    stack.push(ny * w + nx);
                }
            }
        }
    }
    out
}

/// A noisy picture with discs and bands, `w` x `h`, from `seed`.
fn noisy(w: usize, h: usize, seed: u32) -> Vec<u8> {
    let mut s = seed;
    (0..w * h)
        .map(|i| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let (x, y) = ((i % w) as i32, (i / w) as i32);
            let disc =
                (x - w as i32 / 3).pow(2) + (y - h as i32 / 2).pow(2) < (h as i32 / 3).pow(2);
            let band = (x / 5) % 2 == 1 && y > h as i32 / 2;
            let base = if disc {
                200
            } else if band {
                120
            } else {
                40
            };
            (base + (s >> 27) as i32 - 16).clamp(0, 255) as u8
        })
        .collect()
}

#[test]
fn kept_buffers_give_the_reference_edges_at_every_size_in_turn() {
    let mut c = Canny::default();
    // Sizes that grow, shrink and come back; thresholds of all kinds.
    let sizes = [(40, 30), (7, 5), (64, 48), (1, 9), (9, 1), (40, 30), (3, 3)];
    for (k, &(w, h)) in sizes.iter().enumerate() {
        for (t1, t2) in [(125, 125), (50, 125), (255, 125), (-5, 90), (3000, 125)] {
            let gray = noisy(w, h, (k as u32 * 31).wrapping_add(t1 as u32));
            let want = reference(&gray, w, h, t1, t2);
            let mut got = gray.clone();
            c.run(&mut got, w, h, t1, t2);
            assert_eq!(got, want, "{w}x{h}, thresholds {t1} and {t2}");
        }
    }
    // The test pictures have edges and the thresholds matter.
    let gray = noisy(40, 30, 1);
    let edges = |t| {
        canny(&gray, 40, 30, t, 125)
            .iter()
            .filter(|&&v| v == 255)
            .count()
    };
    assert!(
        edges(50) > edges(255) && edges(255) > 0,
        "{} {}",
        edges(50),
        edges(255)
    );
}

#[test]
fn canny_takes_its_thresholds_in_either_order_and_finds_diagonals() {
    // A white triangle under the diagonal of a 16x16 black square.
    let (w, h) = (16, 16);
    let gray: Vec<u8> = (0..w * h)
        .map(|i| if i % w < i / w { 255 } else { 0 })
        .collect();
    let a = canny(&gray, w, h, 50, 125);
    assert_eq!(a, canny(&gray, w, h, 125, 50));
    let on: Vec<(usize, usize)> = (0..w * h)
        .filter(|&i| a[i] == 255)
        .map(|i| (i % w, i / w))
        .collect();
    assert!(!on.is_empty());
    assert!(
        on.iter().all(|&(x, y)| x.abs_diff(y) <= 1),
        "edges on the diagonal only: {on:?}"
    );
    // Every row but the border ones has its edge pixel.
    for y in 1..h - 1 {
        assert!(on.iter().any(|&(_, ey)| ey == y), "row {y}: {on:?}");
    }
    assert!(canny(&gray[..10], w, h, 50, 125).iter().all(|&v| v == 0));
}
