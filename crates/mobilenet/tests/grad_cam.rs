//! Grad-CAM properties on real photos that can fail: a photo squeezed into one half of the frame,
//! the other half noise, puts the heatmap's mass on the photo's half, for either half; maps are in
//! [0, 1] with their maximum at 1; the ImageNet class is the one asked for.

use mobilenet::{GradCam, MobileNetV2, Target};
use nn::Tensor;
use std::path::{Path, PathBuf};

fn shared(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared")
        .join(p)
}

/// The photo resized into the `right` (or left) half of a 224x224 frame; the other half uniform
/// noise from a fixed seed. Preprocessed x/127.5-1.
fn half_and_noise(photo: &Path, right: bool) -> Vec<f32> {
    let img = image::open(photo).unwrap().to_rgb8();
    let half = image::imageops::resize(&img, 112, 224, image::imageops::FilterType::Triangle);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 56) as u8
    };
    let mut out = Vec::with_capacity(224 * 224 * 3);
    for y in 0..224u32 {
        for x in 0..224u32 {
            let in_photo = if right { x >= 112 } else { x < 112 };
            let px = if in_photo {
                half.get_pixel(if right { x - 112 } else { x }, y).0
            } else {
                [noise(), noise(), noise()]
            };
            out.extend(px.iter().map(|&v| v as f32 / 127.5 - 1.0));
        }
    }
    out
}

#[test]
fn the_heatmap_sits_on_the_half_that_holds_the_object() {
    let net = MobileNetV2::from_path(&shared("weights/mobilenet_v2_1.0_224"), Some(true)).unwrap();
    let mut cam = GradCam::from_model(net).unwrap();
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shared("weights/test_images/expected.json")).unwrap(),
    )
    .unwrap();
    let mut files: Vec<(&String, usize)> = expected
        .as_object()
        .unwrap()
        .iter()
        .map(|(f, e)| (f, e["top1_index"].as_u64().unwrap() as usize))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "test photos with labels");
    for (file, class) in files {
        let photo = shared("weights/test_images").join(file);
        let mut batch = half_and_noise(&photo, true);
        batch.extend(half_and_noise(&photo, false));
        let x = Tensor::from_shape_vec(vec![2, 224, 224, 3], batch).unwrap();
        let e = cam.explain(&x, &[Target::Class(class)]).unwrap();
        for (i, right) in [(0, true), (1, false)] {
            let map = &e[i].maps[0].heatmap;
            assert_eq!(e[i].maps[0].class, class);
            assert_eq!(map.dim(), (7, 7), "224/32 cells a side");
            assert!(map.iter().all(|v| (0.0..=1.0).contains(v)), "{file}: {map}");
            let max = map.iter().copied().fold(0.0f32, f32::max);
            assert!(
                (max - 1.0).abs() < 1e-6,
                "{file}: the maximum is 1, got {max}"
            );
            // Columns 0..3 see the left half, 4..7 the right; column 3 straddles the middle.
            let left: f32 = map.columns().into_iter().take(3).map(|c| c.sum()).sum();
            let right_mass: f32 = map.columns().into_iter().skip(4).map(|c| c.sum()).sum();
            let (object, noise) = if right {
                (right_mass, left)
            } else {
                (left, right_mass)
            };
            println!(
                "{file} object {}: object half {object:.2}, noise half {noise:.2}",
                if right { "right" } else { "left" }
            );
            assert!(
                object > 2.0 * noise,
                "{file}, object on the {}: mass {object} on its half, {noise} on the noise",
                if right { "right" } else { "left" }
            );
        }
    }
}
