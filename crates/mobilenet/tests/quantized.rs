//! The int8 plan against the f32 plan on real photos, its file round trip, and its reader on
//! damaged files.

use mobilenet::{Calibrator, MobileNetV2, Predictor, QuantizedInfo, QuantizedPlan};
use nn::Tensor;
use std::path::{Path, PathBuf};

fn shared(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared")
        .join(p)
}

/// Photos resized to 224x224 (triangle filter) and scaled x/127.5 - 1.
fn batch(paths: &[PathBuf]) -> Tensor {
    let mut v = Vec::new();
    for p in paths {
        let img = image::open(p).unwrap().to_rgb8();
        let img = image::imageops::resize(&img, 224, 224, image::imageops::FilterType::Triangle);
        v.extend(img.as_raw().iter().map(|&b| b as f32 / 127.5 - 1.0));
    }
    Tensor::from_shape_vec(vec![paths.len(), 224, 224, 3], v)
        .unwrap()
        .into_shared()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e != "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn info(classes: usize) -> QuantizedInfo {
    QuantizedInfo {
        labels: (0..classes).map(|i| format!("class {i}")).collect(),
        preprocess: "mobilenet".into(),
        interpolation: "bilinear".into(),
        source: "test".into(),
    }
}

fn argmax(r: ndarray::ArrayView1<f32>) -> Option<usize> {
    nn::loss::argmax(&r.to_vec())
}

/// The ImageNet model calibrated on sports photos keeps the labels of the five test photos, and
/// its probabilities stay near the f32 ones; written and read back it answers bit for bit alike.
#[test]
fn imagenet_int8_keeps_the_labels_and_survives_the_file() {
    let mut net =
        MobileNetV2::from_path(&shared("weights/mobilenet_v2_1.0_224"), Some(true)).unwrap();
    let mut cal = Calibrator::for_model(&mut net).unwrap();
    let valid = files(&shared("data/sports15/valid"));
    let picks: Vec<PathBuf> = valid
        .iter()
        .step_by(valid.len().div_ceil(24))
        .cloned()
        .collect();
    cal.observe(&batch(&picks)).unwrap();
    assert_eq!(cal.images(), picks.len());
    let plan = cal.finish().unwrap();
    let (int, all) = plan.integer_steps();
    assert!(int >= 50 && int < all, "{int} of {all} steps in integers");

    let photos = files(&shared("weights/test_images"));
    assert_eq!(photos.len(), 5);
    let x = batch(&photos);
    let f32_probs = Predictor::from_model(&mut net)
        .unwrap()
        .predict(&x)
        .unwrap();
    let bytes = plan.to_bytes(&info(1000)).unwrap();
    let q = Predictor::from_quantized(plan);
    assert!(q.is_quantized());
    let q_probs = q.predict(&x).unwrap();
    // Batched (micro-batches, then the head once on the whole batch) = one photo at a time.
    for (i, row) in q_probs.rows().into_iter().enumerate() {
        let one = q
            .predict(
                &x.slice_axis(ndarray::Axis(0), (i..i + 1).into())
                    .to_shared(),
            )
            .unwrap();
        let diff = (&one.row(0) - &row).fold(0f32, |m, d| m.max(d.abs()));
        assert!(diff < 1e-5, "{}: {diff}", photos[i].display());
    }
    for (i, (a, b)) in f32_probs.rows().into_iter().zip(q_probs.rows()).enumerate() {
        assert_eq!(argmax(a), argmax(b), "{}", photos[i].display());
        let top = argmax(a).unwrap();
        assert!(
            (a[top] - b[top]).abs() < 0.15,
            "{}: {} vs {}",
            photos[i].display(),
            a[top],
            b[top]
        );
    }
    let (back, back_info) = QuantizedPlan::from_bytes(&bytes, Path::new("m.int8")).unwrap();
    assert_eq!(back_info, info(1000));
    assert_eq!(
        Predictor::from_quantized(back).predict(&x).unwrap(),
        q_probs
    );
}

/// A small trained-head model's file, and a photo to run it on.
fn small_model_file() -> (Vec<u8>, Tensor) {
    let net = MobileNetV2::from_path(&shared("weights/mobilenet_v2_0.35_224_no_top"), Some(false))
        .unwrap();
    let head = mobilenet::HeadConfig {
        dense: 8,
        dropout: 0.0,
        classes: 3,
        seed: 1,
    };
    let mut clf = mobilenet::Classifier::new(net, head).unwrap();
    let mut cal = Calibrator::for_classifier(&mut clf).unwrap();
    let x = batch(&files(&shared("weights/test_images"))[..2]);
    cal.observe(&x).unwrap();
    (
        cal.finish().unwrap().to_bytes(&info(3)).unwrap(),
        x.slice_axis(ndarray::Axis(0), (0..1).into()).to_shared(),
    )
}

/// Truncations are refused with an error naming the file.
#[test]
fn truncated_files_are_named_errors() {
    let (bytes, _) = small_model_file();
    let path = Path::new("damaged.int8");
    assert!(QuantizedPlan::from_bytes(&bytes, path).is_ok());
    for cut in [0, 7, 19, 20, 100, bytes.len() / 2, bytes.len() - 1] {
        let e = QuantizedPlan::from_bytes(&bytes[..cut], path)
            .err()
            .expect("truncated file accepted");
        assert!(e.to_string().contains("damaged.int8"), "{e}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Bytes overwritten anywhere (header digits, encodings, weights): the file is refused, or it
    /// loads and runs to an answer or an error, never a panic.
    #[test]
    fn damaged_files_never_panic(flips in proptest::collection::vec((0.0f64..1.0, proptest::prelude::any::<u8>()), 1..6), in_header in proptest::prelude::any::<bool>()) {
        let (bytes, x) = &*SMALL;
        let mut b = bytes.clone();
        // Half the cases aim at the JSON header, where one changed digit reshapes a layer.
        let header = 20 + u64::from_le_bytes(b[12..20].try_into().unwrap()) as usize;
        let span = if in_header { header } else { b.len() };
        for (pos, v) in flips {
            let i = ((span - 1) as f64 * pos) as usize;
            b[i] = v;
        }
        if let Ok((plan, _)) = QuantizedPlan::from_bytes(&b, Path::new("fuzzed.int8")) {
            let _ = Predictor::from_quantized(plan).predict(x);
        }
    }
}

/// The fuzzing above reaches both outcomes: bytes flipped in the weights still load and run to
/// probabilities, bytes flipped in the header are mostly refused.
#[test]
fn damaged_files_reach_both_the_runner_and_the_checks() {
    let (bytes, x) = &*SMALL;
    let header = 20 + u64::from_le_bytes(bytes[12..20].try_into().unwrap()) as usize;
    let (mut ran, mut refused) = (0, 0);
    let mut state = 11u64;
    for case in 0..60 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut b = bytes.clone();
        let span = if case % 2 == 0 {
            header
        } else {
            b.len() - header
        };
        let at = (state >> 33) as usize % span + if case % 2 == 0 { 0 } else { header };
        b[at] = b[at].wrapping_add(1 + (state >> 20) as u8 % 200);
        match QuantizedPlan::from_bytes(&b, Path::new("fuzzed.int8")) {
            Ok((plan, _)) => ran += usize::from(Predictor::from_quantized(plan).predict(x).is_ok()),
            Err(_) => refused += 1,
        }
    }
    assert!(
        ran >= 20 && refused >= 5,
        "ran {ran}, refused {refused} of 60"
    );
}

static SMALL: std::sync::LazyLock<(Vec<u8>, Tensor)> = std::sync::LazyLock::new(small_model_file);
