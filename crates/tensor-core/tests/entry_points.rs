//! The public kernel entry points check their slices against the geometry before any (unsafe,
//! vectorised) kernel runs: a wrong length is a panic naming the operation, never a read outside
//! a slice.

use tensor_core::conv::{self, ConvGeom};
use tensor_core::{Activation, Padding};

fn panics_naming(op: &str, f: impl FnOnce() + std::panic::UnwindSafe) {
    let err = std::panic::catch_unwind(f).expect_err("a wrong slice length must panic");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(msg.starts_with(op), "{msg}");
}

#[test]
fn short_or_long_slices_are_refused_by_every_entry_point() {
    // 16 channels: the AVX-512 and AVX2 depthwise rows apply where the CPU has them.
    let dw = ConvGeom::depthwise("t", &[1, 6, 6, 16], &[3, 3, 16, 1], 1, Padding::Same).unwrap();
    let pw = ConvGeom::new("t", &[1, 6, 6, 16], &[1, 1, 16, 8], 1, Padding::Valid).unwrap();
    let stem = ConvGeom::new("t", &[1, 6, 6, 3], &[3, 3, 3, 16], 2, Padding::Same).unwrap();
    let x = vec![1.0f32; 6 * 6 * 16];
    let short = &x[..x.len() - 1];
    let w = vec![0.5f32; 9 * 16];
    let mut y = vec![0.0f32; 6 * 6 * 16];
    panics_naming("depthwise forward", move || {
        conv::depthwise::forward(
            &dw,
            short,
            &w,
            None,
            Activation::Linear,
            tensor_core::buffer::as_uninit(&mut y),
        )
    });
    let (x, w) = (vec![1.0f32; 6 * 6 * 16], vec![0.5f32; 9 * 15]);
    let mut y = vec![0.0f32; 6 * 6 * 16];
    panics_naming("depthwise forward", move || {
        conv::depthwise::forward(
            &dw,
            &x,
            &w,
            None,
            Activation::Linear,
            tensor_core::buffer::as_uninit(&mut y),
        )
    });
    let (dy, w) = (vec![1.0f32; 6 * 6 * 16], vec![0.5f32; 9 * 16]);
    let mut dx = vec![0.0f32; 5];
    panics_naming("depthwise backward_input", move || {
        conv::depthwise::backward_input(&dw, &dy, &w, tensor_core::buffer::as_uninit(&mut dx))
    });
    let (x, w) = (vec![1.0f32; 6 * 6 * 16], vec![0.5f32; 16 * 8]);
    let bias = vec![0.0f32; 7];
    let mut y = vec![0.0f32; 6 * 6 * 8];
    panics_naming("pointwise forward", move || {
        conv::pointwise::forward(
            &pw,
            &x,
            &w,
            Some(&bias),
            Activation::Relu,
            tensor_core::buffer::as_uninit(&mut y),
        )
    });
    let (x, w) = (vec![1.0f32; 6 * 6 * 3], vec![0.5f32; 9 * 3 * 16]);
    let mut y = vec![0.0f32; 3 * 3 * 16 - 1];
    panics_naming("direct forward", move || {
        conv::direct::forward(
            &stem,
            &x,
            &w,
            None,
            Activation::Relu6,
            tensor_core::buffer::as_uninit(&mut y),
        );
    });
    let (x, w) = (vec![1.0f32; 6 * 6 * 3], vec![0.5f32; 9 * 3 * 16 + 1]);
    let mut y = vec![0.0f32; 3 * 3 * 16];
    panics_naming("im2col forward", move || {
        conv::im2col::forward(&stem, &x, &w, None, Activation::Linear, &mut y)
    });
    // An inconsistent geometry (an output larger than the padded input) is refused too.
    let mut bad = dw;
    bad.rows.out = 40;
    let (x, w) = (vec![1.0f32; 6 * 6 * 16], vec![0.5f32; 9 * 16]);
    let mut y = vec![0.0f32; 40 * 6 * 16];
    panics_naming("depthwise forward", move || {
        conv::depthwise::forward(
            &bad,
            &x,
            &w,
            None,
            Activation::Linear,
            tensor_core::buffer::as_uninit(&mut y),
        )
    });
}
