//! The real 15-class sports data set in `../shared/data/sports15`.

use data::{decode_rgb, Dataset, DecodeLimits, ImageFolder, LoaderConfig, Preprocess};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/sports15")
}

const CLASSES: [&str; 15] = [
    "archery",
    "baseball",
    "basketball",
    "bmx",
    "bowling",
    "boxing",
    "cheerleading",
    "football",
    "golf",
    "hockey",
    "rugby",
    "swimming",
    "tennis",
    "volleyball",
    "weightlifting",
];

#[test]
fn splits_counts_and_class_order() {
    let train = ImageFolder::open(&root().join("train"), None).unwrap();
    assert_eq!(train.classes, CLASSES);
    assert_eq!(train.len(), 2238);
    for split in ["valid", "test"] {
        let f = ImageFolder::open(&root().join(split), Some(&train.classes)).unwrap();
        assert_eq!(f.len(), 75, "{split}");
        // 5 per class, labels in sorted-class order.
        for (k, class) in CLASSES.iter().enumerate() {
            let of_class: Vec<_> = f.items.iter().filter(|(_, l)| *l == k).collect();
            assert_eq!(of_class.len(), 5);
            assert!(of_class
                .iter()
                .all(|(p, _)| p.parent().unwrap().ends_with(class)));
        }
    }
}

#[test]
fn grayscale_jpeg_becomes_rgb() {
    let img = decode_rgb(
        &root().join("train/boxing/040.jpg"),
        DecodeLimits::default(),
    )
    .unwrap();
    assert_eq!((img.width(), img.height()), (224, 224));
    assert!(
        img.pixels().all(|p| p[0] == p[1] && p[1] == p[2]),
        "grey replicated to 3 channels"
    );
    assert!(
        img.pixels().any(|p| p[0] != img.get_pixel(0, 0)[0]),
        "not blank"
    );
}

#[test]
fn decoded_pixels_match_keras_input_within_decoder_tolerance() {
    // The forward fixture's input is test/archery/1.jpg decoded by Keras (PIL) and scaled x/127.5 - 1.
    let golden: ndarray::ArrayD<f32> = ndarray_npy::read_npy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/golden/forward_a035_224/input.npy"),
    )
    .unwrap();
    let img = decode_rgb(&root().join("test/archery/1.jpg"), DecodeLimits::default()).unwrap();
    let mut ours = vec![0.0f32; 224 * 224 * 3];
    data::Transform::IDENTITY.apply(&img, Preprocess::Mobilenet, &mut ours);
    let theirs = golden.index_axis(ndarray::Axis(0), 0);
    let diffs: Vec<f32> = ours
        .iter()
        .zip(theirs.iter())
        .map(|(a, b)| (a - b).abs())
        .collect();
    let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
    let max = diffs.iter().cloned().fold(0.0, f32::max);
    // JPEG decoders differ by a level or two after IDCT; 4 levels is 0.031 after scaling.
    assert!(mean < 0.01, "mean |diff| {mean}");
    assert!(max < 0.1, "max |diff| {max}");
}

#[test]
fn loader_batches_cover_the_split_reproducibly() {
    let cfg = LoaderConfig {
        batch_size: 32,
        shuffle: true,
        seed: 3,
        augment: data::Augment::study(),
        ..Default::default()
    };
    let ds = std::sync::Arc::new(Dataset::load(&root().join("valid"), None, cfg).unwrap());
    assert_eq!(ds.len(), 75);
    let batches: Vec<_> = ds.batches(0, true, 0).collect();
    assert_eq!(
        batches.iter().map(|b| b.labels.len()).collect::<Vec<_>>(),
        [32, 32, 11],
        "last partial batch kept"
    );
    let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    seen.sort();
    assert_eq!(seen, (0..75).collect::<Vec<_>>());
    let again: Vec<_> = ds.batches(0, true, 0).collect();
    assert_eq!(batches[1].x, again[1].x, "same seed and epoch, same batch");
    let other = ds.batch(&batches[1].indices, 1, true);
    assert_ne!(
        batches[1].x, other.x,
        "another epoch draws other transforms"
    );
    assert_ne!(ds.order(0), ds.order(1), "shuffled per epoch");
}

/// Keras's `validation_split` semantics: the split depends on the seed alone, is the same each
/// time it is made, covers every image once, and a different seed moves images.
#[test]
fn validation_split_is_deterministic_in_the_seed_and_disjoint() {
    let cfg = LoaderConfig {
        height: 32,
        width: 32,
        ..Default::default()
    };
    let split = |seed: u64| {
        let mut train = Dataset::load(&root().join("valid"), None, cfg).unwrap();
        let n = train.len();
        let valid = train.split_off_validation(0.2, seed, cfg).unwrap();
        assert_eq!(valid.len(), n / 5, "floor(0.2 * {n})");
        assert_eq!(train.len() + valid.len(), n);
        let mut all: Vec<_> = train.paths.iter().chain(&valid.paths).cloned().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "every image once");
        for (p, &l) in valid.paths.iter().zip(&valid.labels) {
            assert_eq!(p.parent().unwrap().file_name().unwrap(), CLASSES[l]);
        }
        valid.paths
    };
    assert_eq!(split(7), split(7));
    assert_ne!(split(7), split(8));
    let mut train = Dataset::load(&root().join("valid"), None, cfg).unwrap();
    for bad in [0.0, 1.0, 0.001] {
        assert!(train.split_off_validation(bad, 1, cfg).is_err(), "{bad}");
    }
}
