//! Where an overlay image goes and how it is drawn: the rectangles ImageOverlayFilter and
//! FaceOverlayFilter compute from their fractions (KMS's semantics), and the alpha blending
//! of a scaled image into a packed RGB frame.
//!
//! Only the part of a rectangle inside the frame is ever scaled (nearest neighbour) and
//! drawn, so a client's large fractions cost at most one frame's worth of pixels.

/// A decoded image: straight (not premultiplied) RGBA, 4 bytes a pixel, rows packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rgba {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// A rectangle in frame pixels (it may reach outside the frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rect {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
}

/// An ImageOverlayFilter image's rectangle in a `fw` x `fh` frame: the box at
/// (`x`, `y`) of `w` x `h` (fractions of the frame's width and height); with
/// `keep_aspect` the image is fitted inside the box keeping its proportions, and with
/// `center` too the fitted image is centred in the box (KMS ignores `center` when the
/// aspect is not kept). `None`: nothing to draw (a zero size).
pub(crate) fn image_rect(
    (fw, fh): (u32, u32),
    [x, y, w, h]: [f32; 4],
    keep_aspect: bool,
    center: bool,
    (iw, ih): (u32, u32),
) -> Option<Rect> {
    if w == 0.0 || h == 0.0 || iw == 0 || ih == 0 {
        return None;
    }
    let (fw, fh) = (f64::from(fw), f64::from(fh));
    let mut r = Rect {
        x: (fw * f64::from(x)) as i64,
        y: (fh * f64::from(y)) as i64,
        w: (fw * f64::from(w)) as i64,
        h: (fh * f64::from(h)) as i64,
    };
    if keep_aspect {
        let scale = (r.w as f64 / f64::from(iw)).min(r.h as f64 / f64::from(ih));
        let (w, h) = (
            (f64::from(iw) * scale) as i64,
            (f64::from(ih) * scale) as i64,
        );
        if center {
            r.x += (r.w - w) / 2;
            r.y += (r.h - h) / 2;
        }
        r.w = w;
        r.h = h;
    }
    (r.w > 0 && r.h > 0).then_some(r)
}

/// A FaceOverlayFilter image's rectangle for one detected `face`: offset by fractions of the
/// face's width and height from its top-left corner, sized as fractions of its size (the
/// Magic Mirror's hat is (-0.35, -1.2, 1.6, 1.6)); positions are truncated after the
/// addition, as KMS computes them. `None`: nothing to draw.
pub(crate) fn face_rect(face: Rect, [x, y, w, h]: [f32; 4]) -> Option<Rect> {
    if w == 0.0 || h == 0.0 {
        return None;
    }
    let (fw, fh) = (face.w as f64, face.h as f64);
    let r = Rect {
        x: (face.x as f64 + fw * f64::from(x)) as i64,
        y: (face.y as f64 + fh * f64::from(y)) as i64,
        w: (fw * f64::from(w)) as i64,
        h: (fh * f64::from(h)) as i64,
    };
    (r.w > 0 && r.h > 0).then_some(r)
}

/// The visible part of an image drawn at a rectangle, scaled: what [`draw`] blends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Patch {
    /// Where it goes in the frame (inside it).
    pub x: u32,
    pub y: u32,
    /// The scaled pixels (RGBA, `w` x `h`).
    pub image: Rgba,
}

/// Scales the part of `img` that `r` puts inside a `fw` x `fh` frame. `None` when none of it
/// is inside.
pub(crate) fn patch(img: &Rgba, r: Rect, (fw, fh): (u32, u32)) -> Option<Patch> {
    let x0 = r.x.max(0);
    let y0 = r.y.max(0);
    let x1 = (r.x + r.w).min(i64::from(fw));
    let y1 = (r.y + r.h).min(i64::from(fh));
    if x1 <= x0 || y1 <= y0 || img.width == 0 || img.height == 0 {
        return None;
    }
    let (w, h) = ((x1 - x0) as u32, (y1 - y0) as u32);
    let mut data = Vec::with_capacity(w as usize * h as usize * 4);
    let (iw, ih) = (i64::from(img.width), i64::from(img.height));
    for dy in y0..y1 {
        let sy = ((dy - r.y) * ih / r.h).clamp(0, ih - 1) as usize;
        let row = &img.data[sy * iw as usize * 4..(sy + 1) * iw as usize * 4];
        for dx in x0..x1 {
            let sx = ((dx - r.x) * iw / r.w).clamp(0, iw - 1) as usize;
            data.extend_from_slice(&row[sx * 4..sx * 4 + 4]);
        }
    }
    Some(Patch {
        x: x0 as u32,
        y: y0 as u32,
        image: Rgba {
            width: w,
            height: h,
            data,
        },
    })
}

/// Blends `p` into a packed RGB frame (`stride` bytes a row) by its alpha.
pub(crate) fn draw(frame: &mut [u8], stride: usize, p: &Patch) {
    let (w, h) = (p.image.width as usize, p.image.height as usize);
    for row in 0..h {
        let start = (p.y as usize + row) * stride + p.x as usize * 3;
        let Some(dst) = frame.get_mut(start..start + w * 3) else {
            return;
        };
        let src = &p.image.data[row * w * 4..(row + 1) * w * 4];
        for (d, s) in dst.chunks_exact_mut(3).zip(src.chunks_exact(4)) {
            let a = u32::from(s[3]);
            if a == 255 {
                d.copy_from_slice(&s[..3]);
            } else if a > 0 {
                for c in 0..3 {
                    let v = u32::from(s[c]) * a + u32::from(d[c]) * (255 - a);
                    d[c] = ((v + 127) / 255) as u8;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(w: u32, h: u32, px: [u8; 4]) -> Rgba {
        Rgba {
            width: w,
            height: h,
            data: px.repeat((w * h) as usize),
        }
    }

    #[test]
    fn image_rectangles_follow_kms_fractions() {
        let f = (640, 480);
        let r = |x, y, w, h| Some(Rect { x, y, w, h });
        // Stretched to the box.
        assert_eq!(
            image_rect(f, [0.5, 0.25, 0.25, 0.5], false, false, (10, 10)),
            r(320, 120, 160, 240)
        );
        // Fitted: a square image in a 160x240 box is 160x160, at the box's corner...
        assert_eq!(
            image_rect(f, [0.5, 0.25, 0.25, 0.5], true, false, (10, 10)),
            r(320, 120, 160, 160)
        );
        // ... or centred in it.
        assert_eq!(
            image_rect(f, [0.5, 0.25, 0.25, 0.5], true, true, (10, 10)),
            r(320, 160, 160, 160)
        );
        // A wide box: the height decides.
        assert_eq!(
            image_rect(f, [0.0, 0.0, 1.0, 0.25], true, true, (20, 10)),
            r(200, 0, 240, 120)
        );
        // center without keepAspectRatio is ignored.
        assert_eq!(
            image_rect(f, [0.0, 0.0, 0.5, 0.5], false, true, (20, 10)),
            r(0, 0, 320, 240)
        );
        assert_eq!(
            image_rect(f, [0.1, 0.1, 0.0, 0.5], true, true, (2, 2)),
            None
        );
    }

    #[test]
    fn face_rectangles_are_relative_to_the_face() {
        let face = Rect {
            x: 100,
            y: 200,
            w: 100,
            h: 100,
        };
        assert_eq!(
            face_rect(face, [-0.25, -1.5, 1.5, 2.0]),
            Some(Rect {
                x: 75,
                y: 50,
                w: 150,
                h: 200
            })
        );
        assert_eq!(face_rect(face, [0.0, 0.0, 0.0, 1.0]), None);
    }

    #[test]
    fn patches_are_clipped_to_the_frame_and_blended_by_alpha() {
        let img = solid(2, 2, [255, 0, 0, 255]);
        let r = Rect {
            x: -2,
            y: 1,
            w: 4,
            h: 10,
        };
        let p = patch(&img, r, (4, 4)).expect("partly inside");
        assert_eq!((p.x, p.y, p.image.width, p.image.height), (0, 1, 2, 3));
        assert!(patch(&img, Rect { x: 4, ..r }, (4, 4)).is_none());
        // A 4x4 RGB frame with rows padded to 16 bytes.
        let mut frame = vec![10u8; 16 * 4];
        draw(&mut frame, 16, &p);
        assert_eq!(&frame[0..3], &[10, 10, 10], "row 0 untouched");
        assert_eq!(&frame[16..22], &[255, 0, 0, 255, 0, 0], "row 1 drawn");
        assert_eq!(
            &frame[22..25],
            &[10, 10, 10],
            "right of the patch untouched"
        );
        let half = Patch {
            x: 0,
            y: 0,
            image: solid(1, 1, [210, 10, 10, 128]),
        };
        let mut px = vec![10u8; 3];
        draw(&mut px, 3, &half);
        assert_eq!(px, vec![110, 10, 10]);
        let clear = Patch {
            image: solid(1, 1, [200, 200, 200, 0]),
            ..half
        };
        draw(&mut px, 3, &clear);
        assert_eq!(px, vec![110, 10, 10], "transparent pixels leave the frame");
    }

    #[test]
    fn a_huge_rectangle_costs_one_frame() {
        let img = solid(3, 3, [0, 0, 255, 255]);
        let r = image_rect((64, 48), [-5.0, -5.0, 10.0, 10.0], false, false, (3, 3)).unwrap();
        let p = patch(&img, r, (64, 48)).unwrap();
        assert_eq!((p.image.width, p.image.height), (64, 48));
    }
}
