//! MobileNetV2's real shapes at batch 32, forward and backward. Throughput is reported as
//! elements/s where one element is one floating-point operation (GFLOP/s = Gelem/s), and as
//! bytes/s for the memory-bound batch-norm.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::Array4;
use std::time::Duration;
use tensor_core::{batch_norm, conv, Activation, Padding};

fn filled(shape: (usize, usize, usize, usize)) -> Array4<f32> {
    Array4::from_shape_fn(shape, |(a, b, c, d)| {
        ((a * 31 + b * 17 + c * 7 + d) % 13) as f32 / 6.5 - 1.0
    })
}

const N: usize = 32;

struct ConvCase {
    name: &'static str,
    x: (usize, usize, usize, usize),
    w: (usize, usize, usize, usize),
    stride: usize,
    padding: Padding,
    depthwise: bool,
}

fn cases() -> Vec<ConvCase> {
    let keras_s2 = Padding::Explicit {
        top: 0,
        bottom: 1,
        left: 0,
        right: 1,
    };
    vec![
        ConvCase {
            name: "stem_3x3s2_224x224x3_to_32",
            x: (N, 224, 224, 3),
            w: (3, 3, 3, 32),
            stride: 2,
            padding: Padding::Same,
            depthwise: false,
        },
        ConvCase {
            name: "dw_3x3s1_112x112x32",
            x: (N, 112, 112, 32),
            w: (3, 3, 32, 1),
            stride: 1,
            padding: Padding::Same,
            depthwise: true,
        },
        ConvCase {
            name: "dw_3x3s2_112x112x96",
            x: (N, 112, 112, 96),
            w: (3, 3, 96, 1),
            stride: 2,
            padding: keras_s2,
            depthwise: true,
        },
        ConvCase {
            name: "pw_56x56x144_to_24",
            x: (N, 56, 56, 144),
            w: (1, 1, 144, 24),
            stride: 1,
            padding: Padding::Valid,
            depthwise: false,
        },
        ConvCase {
            name: "pw_7x7x320_to_1280",
            x: (N, 7, 7, 320),
            w: (1, 1, 320, 1280),
            stride: 1,
            padding: Padding::Valid,
            depthwise: false,
        },
    ]
}

fn convs(c: &mut Criterion) {
    // Backward allocates its gradients, as training does: reuse pages as the binaries do, so the
    // figures are the kernels and not the OS zeroing fresh pages.
    tensor_core::buffer::retain_freed_memory();
    let mut g = c.benchmark_group("conv_batch32");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for case in cases() {
        let x = filled(case.x);
        let w = filled(case.w);
        let geom = if case.depthwise {
            conv::ConvGeom::depthwise("bench", x.shape(), w.shape(), case.stride, case.padding)
        } else {
            conv::ConvGeom::new("bench", x.shape(), w.shape(), case.stride, case.padding)
        }
        .expect("valid shapes");
        let flops = 2 * if case.depthwise {
            geom.macs() / geom.cout
        } else {
            geom.macs()
        };
        let dy = Array4::from_elem(geom.out_shape(), 0.5f32);
        g.throughput(Throughput::Elements(flops as u64));
        // Forward writes into one preallocated output, as a framework's allocator reuses its
        // buffers: the figure is the kernel, not fresh zeroed pages from the OS.
        let mut y = vec![0.0f32; geom.out_shape().iter().product()];
        g.bench_function(BenchmarkId::new("forward", case.name), |b| {
            b.iter(|| {
                if case.depthwise {
                    conv::depthwise_conv2d_into(
                        x.view(),
                        w.view(),
                        None,
                        case.stride,
                        case.padding,
                        Activation::Relu6,
                        &mut y,
                    )
                } else {
                    conv::conv2d_into(
                        x.view(),
                        w.view(),
                        None,
                        case.stride,
                        case.padding,
                        Activation::Relu6,
                        &mut y,
                    )
                }
                .expect("forward")
            })
        });
        // Backward computes both gradients: twice the forward's work.
        g.throughput(Throughput::Elements(2 * flops as u64));
        g.bench_function(BenchmarkId::new("backward", case.name), |b| {
            b.iter(|| {
                if case.depthwise {
                    conv::depthwise_conv2d_backward(
                        x.view(),
                        w.view(),
                        dy.view(),
                        case.stride,
                        case.padding,
                        true,
                    )
                } else {
                    conv::conv2d_backward(
                        x.view(),
                        w.view(),
                        dy.view(),
                        case.stride,
                        case.padding,
                        true,
                    )
                }
                .expect("backward")
            })
        });
    }
    g.finish();
}

fn batch_norm_relu6(c: &mut Criterion) {
    tensor_core::buffer::retain_freed_memory();
    let mut g = c.benchmark_group("batch_norm_relu6_batch32");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let ch = 96;
    let x = filled((N, 112, 112, ch));
    let xs = x.as_slice().expect("contiguous");
    let mut y = vec![0.0f32; xs.len()];
    let (gamma, beta) = (vec![1.1f32; ch], vec![0.1f32; ch]);
    let (mean, var) = (vec![0.05f32; ch], vec![0.9f32; ch]);
    let (scale, shift) = batch_norm::scale_shift(&gamma, &beta, &mean, &var, 1e-3);
    // Read x, write y.
    g.throughput(Throughput::Bytes((2 * xs.len() * 4) as u64));
    g.bench_function("inference_fused_112x112x96", |b| {
        b.iter(|| {
            batch_norm::inference_forward(xs, &scale, &shift, Activation::Relu6, &mut y)
                .expect("bn")
        })
    });
    g.bench_function("training_forward_112x112x96", |b| {
        b.iter(|| {
            batch_norm::training_forward(xs, &gamma, &beta, 1e-3, Activation::Relu6, &mut y)
                .expect("bn")
        })
    });
    let cache = batch_norm::training_forward(xs, &gamma, &beta, 1e-3, Activation::Relu6, &mut y)
        .expect("bn");
    g.bench_function("training_backward_112x112x96", |b| {
        b.iter(|| {
            batch_norm::training_backward(&y, xs, &cache, (&gamma, &beta), Activation::Relu6, true)
                .expect("bn")
        })
    });
    g.finish();
}

criterion_group!(benches, convs, batch_norm_relu6);
criterion_main!(benches);
