//! Decode + resize + augment of 32 real photos (the loader's work for one batch), and the batch
//! assembly alone from decoded images (what each training step waits for).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use data::{
    decode_rgb, resize, Augment, Dataset, DecodeLimits, Interpolation, LoaderConfig, Preprocess,
};
use rand::SeedableRng;
use rayon::prelude::*;
use std::path::PathBuf;
use std::time::Duration;

fn files() -> Vec<PathBuf> {
    let root = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/sports15/train"
    ));
    let mut v = Vec::new();
    for class in std::fs::read_dir(&root).expect("shared data").flatten() {
        v.extend(
            std::fs::read_dir(class.path())
                .expect("class")
                .flatten()
                .map(|e| e.path())
                .take(3),
        );
    }
    v.truncate(32);
    v
}

fn bench(c: &mut Criterion) {
    let files = files();
    let mut g = c.benchmark_group("loader_32_images");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(files.len() as u64));
    let aug = Augment::study();
    g.bench_function("decode_resize_augment", |b| {
        b.iter(|| {
            files.par_iter().enumerate().for_each(|(i, p)| {
                let img = resize(
                    &decode_rgb(p, DecodeLimits::default()).expect("decode"),
                    224,
                    224,
                    Interpolation::Nearest,
                );
                let t = aug.sample(
                    &mut rand_chacha::ChaCha8Rng::seed_from_u64(i as u64),
                    224,
                    224,
                );
                let mut out = vec![0.0f32; 224 * 224 * 3];
                t.apply(&img, Preprocess::Mobilenet, &mut out);
            })
        })
    });
    let root = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/sports15/valid"
    ));
    let ds = Dataset::load(
        &root,
        None,
        LoaderConfig {
            augment: aug,
            ..Default::default()
        },
    )
    .expect("valid split");
    let idx: Vec<usize> = (0..32).collect();
    g.bench_function("augmented_batch_from_memory", |b| {
        b.iter(|| ds.batch(&idx, 1, true))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
