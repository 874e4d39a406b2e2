//! tensor-core's `gemm::par_gemm` (its unpacked AVX-512 kernel where `K <= 256`, matrixmultiply
//! elsewhere) against matrixmultiply alone and the `gemm` crate, on the GEMMs of MobileNetV2's 1x1
//! convolutions at batch 32 (`[N*H*W, Cin] x [Cin, Cout]`), all on all cores and split over the
//! same blocks of rows. The `gemm` crate is a dev-dependency only: this bench is how the choice is
//! kept honest.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rayon::prelude::*;
use std::time::Duration;
use tensor_core::gemm::{par_gemm, Mat};

/// `(name, m, k, n)`.
const SHAPES: [(&str, usize, usize, usize); 5] = [
    ("expand_112x112_16_to_96", 32 * 112 * 112, 16, 96),
    ("project_56x56_144_to_24", 32 * 56 * 56, 144, 24),
    ("expand_56x56_24_to_144", 32 * 56 * 56, 24, 144),
    ("project_14x14_576_to_96", 32 * 14 * 14, 576, 96),
    ("conv1_7x7_320_to_1280", 32 * 7 * 7, 320, 1280),
];

fn filled(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 31 + seed) % 17) as f32 / 8.5 - 1.0)
        .collect()
}

fn compare(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm_crates_batch32");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let threads = rayon::current_num_threads();
    for (name, m, k, n) in SHAPES {
        let (a, b) = (filled(m * k, 1), filled(k * n, 2));
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        g.bench_function(BenchmarkId::new("tensor_core", name), |bch| {
            bch.iter(|| par_gemm(m, k, n, Mat::rows(&a, k), Mat::rows(&b, n), 0.0, &mut out))
        });
        let mut packed = vec![0.0f32; m * n];
        g.bench_function(BenchmarkId::new("matrixmultiply", name), |bch| {
            bch.iter(|| {
                packed
                    .par_chunks_mut(256 * n)
                    .zip(a.par_chunks(256 * k))
                    .for_each(|(c, a)| {
                        // SAFETY: row-major blocks of `rows x k`, `k x n` and `rows x n`.
                        unsafe {
                            matrixmultiply::sgemm(
                                a.len() / k,
                                k,
                                n,
                                1.0,
                                a.as_ptr(),
                                k as isize,
                                1,
                                b.as_ptr(),
                                n as isize,
                                1,
                                0.0,
                                c.as_mut_ptr(),
                                n as isize,
                                1,
                            )
                        }
                    })
            })
        });
        let mut out2 = vec![0.0f32; m * n];
        g.bench_function(BenchmarkId::new("gemm_crate", name), |bch| {
            // SAFETY: row-major `m x k`, `k x n` and `m x n` buffers of exactly those sizes.
            bch.iter(|| unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    out2.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(threads),
                )
            })
        });
        // All agree (a bench that compared different products would be worthless).
        for other in [&out2, &packed] {
            let worst = out
                .iter()
                .zip(other)
                .map(|(x, y)| (x - y).abs() / (1.0 + x.abs()))
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-4, "{name}: results differ by {worst}");
        }
    }
    g.finish();
}

criterion_group!(benches, compare);
criterion_main!(benches);
