//! Keras `ImageDataGenerator` augmentation: rotation, shifts, zoom (composed into one affine map about
//! the image centre, sampled bilinearly with `fill_mode="nearest"`), then an optional horizontal flip.

use crate::{Preprocess, Rgb};
use rand::Rng;

/// The ranges, as `ImageDataGenerator` takes them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Augment {
    /// Degrees: `theta ~ U(-rotation, rotation)`.
    pub rotation: f32,
    /// Fractions of the width/height: shifts `~ U(-f, f) * size`.
    pub width_shift: f32,
    pub height_shift: f32,
    /// `zx, zy ~ U(1 - zoom, 1 + zoom)`, independently.
    pub zoom: f32,
    pub horizontal_flip: bool,
}

impl Augment {
    /// The study's transforms with the usual values: rotation 20, shifts 0.2, zoom 0.2, flip.
    pub fn study() -> Self {
        Augment {
            rotation: 20.0,
            width_shift: 0.2,
            height_shift: 0.2,
            zoom: 0.2,
            horizontal_flip: true,
        }
    }

    pub fn is_off(&self) -> bool {
        *self == Augment::default()
    }

    /// Draws one transform for an `h x w` image.
    pub fn sample(&self, rng: &mut impl Rng, h: usize, w: usize) -> Transform {
        let mut u = |r: f32| if r > 0.0 { rng.gen_range(-r..r) } else { 0.0 };
        let theta = u(self.rotation);
        let tx = u(self.height_shift) * h as f32;
        let ty = u(self.width_shift) * w as f32;
        let (zx, zy) = if self.zoom > 0.0 {
            (1.0 + u(self.zoom), 1.0 + u(self.zoom))
        } else {
            (1.0, 1.0)
        };
        let flip = self.horizontal_flip && rng.gen::<bool>();
        Transform {
            theta,
            tx,
            ty,
            zx,
            zy,
            flip,
        }
    }
}

/// One drawn transform (Keras's `get_random_transform` fields: `tx` along rows, `ty` along columns).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transform {
    pub theta: f32,
    pub tx: f32,
    pub ty: f32,
    pub zx: f32,
    pub zy: f32,
    pub flip: bool,
}

type M3 = [[f64; 3]; 3];

fn mul(a: &M3, b: &M3) -> M3 {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

impl Transform {
    pub const IDENTITY: Transform = Transform {
        theta: 0.0,
        tx: 0.0,
        ty: 0.0,
        zx: 1.0,
        zy: 1.0,
        flip: false,
    };

    /// Keras's `apply_affine_transform` matrix: `rotation @ shift @ zoom`, offset to the centre
    /// `(h/2 - 0.5, w/2 - 0.5)`. Maps an output `(row, col, 1)` to the input position it samples.
    pub fn matrix(&self, h: usize, w: usize) -> M3 {
        let t = (self.theta as f64).to_radians();
        let rot = [
            [t.cos(), -t.sin(), 0.0],
            [t.sin(), t.cos(), 0.0],
            [0.0, 0.0, 1.0],
        ];
        let shift = [
            [1.0, 0.0, self.tx as f64],
            [0.0, 1.0, self.ty as f64],
            [0.0, 0.0, 1.0],
        ];
        let zoom = [
            [self.zx as f64, 0.0, 0.0],
            [0.0, self.zy as f64, 0.0],
            [0.0, 0.0, 1.0],
        ];
        let m = mul(&mul(&rot, &shift), &zoom);
        let (ox, oy) = (h as f64 / 2.0 - 0.5, w as f64 / 2.0 - 0.5);
        let offset = [[1.0, 0.0, ox], [0.0, 1.0, oy], [0.0, 0.0, 1.0]];
        let reset = [[1.0, 0.0, -ox], [0.0, 1.0, -oy], [0.0, 0.0, 1.0]];
        mul(&mul(&offset, &m), &reset)
    }

    /// No rotation, shift or zoom (a flip may remain): pixels are copied, not resampled.
    fn affine_is_identity(&self) -> bool {
        Transform {
            flip: false,
            ..*self
        } == Self::IDENTITY
    }

    /// Writes the transformed, preprocessed image into `out` (`[h, w, 3]` f32) in one sampling pass.
    pub fn apply(&self, img: &Rgb, pre: Preprocess, out: &mut [f32]) {
        let (h, w) = (img.height() as usize, img.width() as usize);
        let src = img.as_raw();
        let col_of = |c: usize| if self.flip { w - 1 - c } else { c };
        if !self.affine_is_identity() {
            return self.resample(img, pre, out);
        }
        {
            for r in 0..h {
                for c in 0..w {
                    let s = &src[(r * w + col_of(c)) * 3..][..3];
                    let d = &mut out[(r * w + c) * 3..][..3];
                    for k in 0..3 {
                        d[k] = pre.apply(s[k] as f32);
                    }
                }
            }
        }
    }

    /// [`apply`](Self::apply) through the affine matrix and bilinear sampling, whatever the
    /// transform (`apply` copies pixels instead when there is no rotation, shift or zoom).
    pub fn resample(&self, img: &Rgb, pre: Preprocess, out: &mut [f32]) {
        let (h, w) = (img.height() as usize, img.width() as usize);
        let src = img.as_raw();
        let col_of = |c: usize| if self.flip { w - 1 - c } else { c };
        let m = self.matrix(h, w);
        let (hm, wm) = ((h - 1) as f64, (w - 1) as f64);
        for r in 0..h {
            for c in 0..w {
                // The flip comes after the affine map: output column c reads transformed column col_of(c).
                let cc = col_of(c) as f64;
                let sr = (m[0][0] * r as f64 + m[0][1] * cc + m[0][2]).clamp(0.0, hm);
                let sc = (m[1][0] * r as f64 + m[1][1] * cc + m[1][2]).clamp(0.0, wm);
                // Clamped to >= 0, so truncation is floor (and no libm call in the pixel loop).
                let (r0, c0) = (sr as usize, sc as usize);
                let (r1, c1) = ((r0 + 1).min(h - 1), (c0 + 1).min(w - 1));
                let (fr, fc) = ((sr - r0 as f64) as f32, (sc - c0 as f64) as f32);
                let px = |rr: usize, cc: usize, k: usize| src[(rr * w + cc) * 3 + k] as f32;
                let d = &mut out[(r * w + c) * 3..][..3];
                for k in 0..3 {
                    let top = px(r0, c0, k) * (1.0 - fc) + px(r0, c1, k) * fc;
                    let bot = px(r1, c0, k) * (1.0 - fc) + px(r1, c1, k) * fc;
                    d[k] = pre.apply(top * (1.0 - fr) + bot * fr);
                }
            }
        }
    }
}
