//! Resizing to the model's input size.

use crate::Rgb;

/// `Nearest` is Keras's default for `flow_from_directory`; `Bilinear` samples pixel centres.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Interpolation {
    #[default]
    Nearest,
    Bilinear,
}

/// Resizes to `h x w` (a no-op copy when the size already matches).
pub fn resize(img: &Rgb, h: u32, w: u32, interp: Interpolation) -> Rgb {
    if img.height() == h && img.width() == w {
        return img.clone();
    }
    let (sh, sw) = (
        img.height() as f32 / h as f32,
        img.width() as f32 / w as f32,
    );
    let mut out = Rgb::new(w, h);
    for y in 0..h {
        for x in 0..w {
            let (fy, fx) = ((y as f32 + 0.5) * sh, (x as f32 + 0.5) * sw);
            let px = match interp {
                Interpolation::Nearest => *img.get_pixel(
                    (fx as u32).min(img.width() - 1),
                    (fy as u32).min(img.height() - 1),
                ),
                Interpolation::Bilinear => bilinear(img, fy - 0.5, fx - 0.5),
            };
            out.put_pixel(x, y, px);
        }
    }
    out
}

fn bilinear(img: &Rgb, y: f32, x: f32) -> image::Rgb<u8> {
    let (h, w) = (img.height() as i64, img.width() as i64);
    let (y0, x0) = (y.floor(), x.floor());
    let (dy, dx) = (y - y0, x - x0);
    let at = |yy: i64, xx: i64| {
        img.get_pixel(xx.clamp(0, w - 1) as u32, yy.clamp(0, h - 1) as u32)
            .0
    };
    let (y0, x0) = (y0 as i64, x0 as i64);
    let (a, b, c, d) = (
        at(y0, x0),
        at(y0, x0 + 1),
        at(y0 + 1, x0),
        at(y0 + 1, x0 + 1),
    );
    let mut p = [0u8; 3];
    for k in 0..3 {
        let v = (a[k] as f32 * (1.0 - dx) + b[k] as f32 * dx) * (1.0 - dy)
            + (c[k] as f32 * (1.0 - dx) + d[k] as f32 * dx) * dy;
        p[k] = v.round().clamp(0.0, 255.0) as u8;
    }
    image::Rgb(p)
}
