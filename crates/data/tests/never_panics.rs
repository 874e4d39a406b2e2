//! Image decoding never panics, whatever the bytes: random bytes, and real photos (JPEG, PNG, BMP)
//! cut short, with bytes flipped or with a run of garbage written into them. Each input is either
//! decoded or refused with an error naming the file.

use data::{decode_rgb_bytes, DecodeLimits};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// Real files of each format the decoder meets in practice.
fn samples() -> Vec<Vec<u8>> {
    let jpeg = std::fs::read(shared().join("data/sports15/test/golf/1.jpg")).unwrap();
    let bmp = std::fs::read(shared().join("weights/test_images/bird.bmp")).unwrap();
    let img = image::RgbImage::from_fn(23, 17, |x, y| image::Rgb([x as u8 * 9, y as u8 * 13, 7]));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let mut gif = std::io::Cursor::new(Vec::new());
    img.write_to(&mut gif, image::ImageFormat::Gif).unwrap();
    vec![jpeg, bmp, png.into_inner(), gif.into_inner()]
}

/// A damaged copy of `bytes`: cut at `cut` (a fraction), then `flips` bytes overwritten, then a run
/// of `garbage` written at `at` (a fraction).
fn damage(bytes: &[u8], cut: f64, flips: &[(f64, u8)], at: f64, garbage: &[u8]) -> Vec<u8> {
    let mut b = bytes[..((bytes.len() as f64 * cut) as usize).max(1)].to_vec();
    for &(pos, v) in flips {
        let i = ((b.len() - 1) as f64 * pos) as usize;
        b[i] = v;
    }
    let start = ((b.len() - 1) as f64 * at) as usize;
    for (i, &g) in garbage.iter().enumerate() {
        if let Some(x) = b.get_mut(start + i) {
            *x = g;
        }
    }
    b
}

fn decode(bytes: &[u8]) {
    let limits = DecodeLimits {
        max_side: 4096,
        max_bytes: 64 << 20,
    };
    if let Err(e) = decode_rgb_bytes(bytes, Path::new("case.bin"), limits) {
        assert!(e.to_string().starts_with("case.bin: "), "{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        decode(&bytes);
    }

    #[test]
    fn damaged_real_images(
        which in 0usize..4,
        cut in 0.0f64..=1.0,
        flips in prop::collection::vec((0.0f64..1.0, any::<u8>()), 0..8),
        at in 0.0f64..1.0,
        garbage in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let s = samples();
        decode(&damage(&s[which], cut, &flips, at, &garbage));
    }
}

#[test]
fn a_truncated_real_photo_is_refused_as_truncated() {
    let jpeg = &samples()[0];
    for cut in [3000, jpeg.len() / 2, jpeg.len() - 2] {
        let e = decode_rgb_bytes(&jpeg[..cut], Path::new("p.jpg"), DecodeLimits::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated JPEG"), "cut at {cut}: {e}");
    }
    assert!(decode_rgb_bytes(jpeg, Path::new("p.jpg"), DecodeLimits::default()).is_ok());
}
