//! Augmentation semantics.

use data::{Augment, Preprocess, Transform};
use rand::SeedableRng;

fn img() -> image::RgbImage {
    image::RgbImage::from_fn(9, 7, |x, y| {
        image::Rgb([(x * 20) as u8, (y * 30) as u8, ((x + y) * 7) as u8])
    })
}

fn run(t: &Transform, im: &image::RgbImage) -> Vec<f32> {
    let mut out = vec![0.0; (im.width() * im.height() * 3) as usize];
    t.apply(im, Preprocess::Unit, &mut out);
    out
}

fn to_image(v: &[f32], w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let i = ((y * w + x) * 3) as usize;
        image::Rgb([
            (v[i] * 255.0).round() as u8,
            (v[i + 1] * 255.0).round() as u8,
            (v[i + 2] * 255.0).round() as u8,
        ])
    })
}

#[test]
fn identity_parameters_give_the_input_back() {
    let im = img();
    let out = run(&Transform::IDENTITY, &im);
    assert_eq!(to_image(&out, 9, 7), im);
    // The matrix path with the identity (and with a flip) samples exactly the pixels the copy
    // path copies.
    for t in [
        Transform::IDENTITY,
        Transform {
            flip: true,
            ..Transform::IDENTITY
        },
    ] {
        let mut resampled = vec![f32::NAN; out.len()];
        t.resample(&im, Preprocess::Unit, &mut resampled);
        assert_eq!(resampled, run(&t, &im), "{t:?}");
    }
    // A zoom a hair from 1 takes the matrix path through apply itself, and stays within rounding.
    let t = Transform {
        zx: 1.0 + 1e-6,
        ..Transform::IDENTITY
    };
    let out2 = run(&t, &im);
    assert!(out.iter().zip(&out2).all(|(a, b)| (a - b).abs() < 1e-2));
    assert_ne!(out, out2, "1 + 1e-6 is not 1.0 in f32: the matrix path ran");
}

#[test]
fn horizontal_flip_twice_is_identity() {
    let im = img();
    let flip = Transform {
        flip: true,
        ..Transform::IDENTITY
    };
    let once = to_image(&run(&flip, &im), 9, 7);
    assert_eq!(once.get_pixel(0, 3), im.get_pixel(8, 3));
    let twice = to_image(&run(&flip, &once), 9, 7);
    assert_eq!(twice, im);
}

#[test]
fn pure_shift_moves_a_known_pixel() {
    let mut im = image::RgbImage::new(9, 7);
    im.put_pixel(4, 3, image::Rgb([255, 255, 255]));
    // Keras: output (r, c) samples input (r + tx, c + ty): tx = 1 row, ty = 2 columns moves the dot up-left.
    let t = Transform {
        tx: 1.0,
        ty: 2.0,
        ..Transform::IDENTITY
    };
    let out = to_image(&run(&t, &im), 9, 7);
    assert_eq!(out.get_pixel(2, 2).0, [255, 255, 255]);
    assert_eq!(out.pixels().filter(|p| p[0] == 255).count(), 1);
}

#[test]
fn rotation_by_180_about_the_centre() {
    let im = img();
    let t = Transform {
        theta: 180.0,
        ..Transform::IDENTITY
    };
    let out = to_image(&run(&t, &im), 9, 7);
    for (x, y) in [(0, 0), (3, 2), (8, 6)] {
        let p = out.get_pixel(x, y).0;
        let q = im.get_pixel(8 - x, 6 - y).0;
        assert!(
            p.iter()
                .zip(q)
                .all(|(a, b)| (*a as i32 - b as i32).abs() <= 1),
            "{x},{y}: {p:?} vs {q:?}"
        );
    }
}

#[test]
fn sampling_is_seeded_and_within_ranges() {
    let a = Augment::study();
    let draw = |s| a.sample(&mut rand_chacha::ChaCha8Rng::seed_from_u64(s), 224, 224);
    assert_eq!(draw(5), draw(5));
    assert_ne!(draw(5), draw(6));
    for s in 0..200 {
        let t = draw(s);
        assert!(t.theta.abs() <= 20.0 && t.tx.abs() <= 0.2 * 224.0 && t.ty.abs() <= 0.2 * 224.0);
        assert!((0.8..=1.2).contains(&t.zx) && (0.8..=1.2).contains(&t.zy));
    }
    assert!((0..200).any(|s| draw(s).flip) && (0..200).any(|s| !draw(s).flip));
}
