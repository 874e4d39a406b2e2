//! The integer kernels on MobileNetV2's costliest shapes (batch 8, one thread): elements are
//! multiply-adds (element-wise ops: outputs).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use tensor_core::conv::ConvGeom;
use tensor_core::int8::add::{self, AddParams};
use tensor_core::int8::{depthwise, pointwise, Isa, PackedWeights, QParams, Requant};
use tensor_core::Padding;

const N: usize = 8;

fn bytes(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + seed) % 251) as u8).collect()
}

fn weights(len: usize) -> Vec<i8> {
    (0..len).map(|i| ((i * 17) % 255) as i8).collect()
}

fn rq(n: usize) -> Requant {
    Requant {
        multiplier: vec![0.002; n],
        zero_point: 3,
        lo: 3,
        hi: 200,
    }
}

fn kernels(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut g = c.benchmark_group("int8");
    g.measurement_time(Duration::from_secs(3)).sample_size(20);
    let isa = Isa::detect();
    for (name, h, ch, stride) in [
        ("dw_112x112x32_s1", 112, 32, 1),
        ("dw_56x56x144_s1", 56, 144, 1),
        ("dw_112x112x96_s2", 112, 96, 2),
    ] {
        let pad = if stride == 1 {
            Padding::Same
        } else {
            Padding::Explicit {
                top: 0,
                bottom: 1,
                left: 0,
                right: 1,
            }
        };
        let geom =
            ConvGeom::depthwise("bench", &[N, h, h, ch], &[3, 3, ch, 1], stride, pad).unwrap();
        let x = bytes(N * h * h * ch, 1);
        let w = weights(9 * ch);
        let bias = vec![100; ch];
        let r = rq(ch);
        let mut out = vec![0u8; N * geom.rows.out * geom.cols.out * ch];
        g.throughput(Throughput::Elements((out.len() * 9) as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                pool.install(|| {
                    depthwise::forward(isa, &geom, &x, 7, &w, &bias, &r, &mut out).unwrap()
                })
            })
        });
    }
    for (name, hw, k, n) in [
        ("pw_112x112_27to32", 112, 27, 32),
        ("pw_112x112_16to96", 112, 16, 96),
        ("pw_112x112_32to16", 112, 32, 16),
        ("pw_56x56_24to144", 56, 24, 144),
        ("pw_28x28_32to192", 28, 32, 192),
        ("pw_14x14_64to384", 14, 64, 384),
        ("pw_56x56_144to24", 56, 144, 24),
        ("pw_7x7_320to1280", 7, 320, 1280),
    ] {
        let rows = N * hw * hw;
        let a = bytes(rows * k, 2);
        let w = PackedWeights::pack(&weights(k * n), k, n).unwrap();
        let bias = vec![100; n];
        let r = rq(n);
        let mut out = vec![0u8; rows * n];
        g.throughput(Throughput::Elements((rows * k * n) as u64));
        // The CPU's two best tiers, side by side (VNNI beside AMX, AVX2 beside VNNI).
        for &isa in Isa::available().iter().rev().take(2) {
            g.bench_function(format!("{name}/{isa:?}"), |b| {
                b.iter(|| {
                    pool.install(|| {
                        pointwise::forward(isa, &a, rows, 5, &w, &bias, &r, &mut out).unwrap()
                    })
                })
            });
        }
    }
    {
        let geom =
            ConvGeom::new("bench", &[N, 224, 224, 3], &[3, 3, 3, 32], 2, Padding::Same).unwrap();
        let x = bytes(N * 224 * 224 * 3, 5);
        let w = PackedWeights::pack(&weights(27 * 32), 27, 32).unwrap();
        let (bias, r) = (vec![100; 32], rq(32));
        let mut out = vec![0u8; N * 112 * 112 * 32];
        g.throughput(Throughput::Elements((out.len() * 27) as u64));
        g.bench_function("conv_224x224x3_s2_to32", |b| {
            b.iter(|| {
                pool.install(|| {
                    tensor_core::int8::conv::forward(isa, &geom, &x, 7, &w, &bias, &r, &mut out)
                        .unwrap()
                })
            })
        });
        g.bench_function("im2col_224x224x3_s2", |b| {
            b.iter(|| pool.install(|| tensor_core::int8::conv::im2col(&geom, &x, 7)))
        });
    }
    let len = N * 56 * 56 * 24;
    let (a, b2) = (bytes(len, 3), bytes(len, 4));
    let q = |scale, zero_point| QParams { scale, zero_point };
    let p = AddParams::new(q(0.05, 120), q(0.04, 130), q(0.06, 125));
    let mut out = vec![0u8; len];
    g.throughput(Throughput::Elements(len as u64));
    g.bench_function("add_56x56x24", |b| {
        b.iter(|| pool.install(|| add::forward(isa, &a, &b2, &p, &mut out).unwrap()))
    });
}

criterion_group!(benches, kernels);
criterion_main!(benches);
