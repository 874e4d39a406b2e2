//! Inference of MobileNetV2 alpha 1.0 at 224x224 (folded frozen path), batch 32 and batch 1.
//! Needs `../shared/weights/mobilenet_v2_1.0_224` (or `$WEIGHTS`).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mobilenet::{Classifier, HeadConfig, MobileNetV2};
use nn::Tensor;
use std::path::PathBuf;

fn bench(c: &mut Criterion) {
    let dir = std::env::var_os("WEIGHTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/weights/mobilenet_v2_1.0_224"
            ))
        });
    let net = MobileNetV2::from_path(&dir, Some(false)).expect("weights");
    let mut clf = Classifier::new(
        net,
        HeadConfig {
            dense: 256,
            dropout: 0.0,
            classes: 15,
            seed: 0,
        },
    )
    .expect("classifier");
    let mut g = c.benchmark_group("mobilenet_v2_1.0_224_inference");
    g.sample_size(10);
    for n in [32usize, 1] {
        let x = Tensor::from_shape_fn(vec![n, 224, 224, 3], |i| {
            ((i[1] * 7 + i[2] * 3 + i[3]) % 255) as f32 / 127.5 - 1.0
        });
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("batch{n}"), |b| {
            b.iter(|| clf.predict(&x).expect("forward"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
