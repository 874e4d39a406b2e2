//! Plain nested loops: obviously correct, slow, the truth the fast kernels are held to.
//!
//! Layouts: `x` `[n, h, w, cin]`, regular `w` `[kh, kw, cin, cout]`, depthwise `w` `[kh, kw, c]`,
//! `y`/`dy` `[n, oh, ow, cout]`.

use super::ConvGeom;
use crate::Activation;

fn xi(g: &ConvGeom, n: usize, y: usize, x: usize, c: usize) -> usize {
    ((n * g.rows.input + y) * g.cols.input + x) * g.cin + c
}
fn yi(g: &ConvGeom, n: usize, y: usize, x: usize, c: usize) -> usize {
    ((n * g.rows.out + y) * g.cols.out + x) * g.cout + c
}
fn wi(g: &ConvGeom, ky: usize, kx: usize, ci: usize, co: usize) -> usize {
    ((ky * g.kw + kx) * g.cin + ci) * g.cout + co
}
fn dwi(g: &ConvGeom, ky: usize, kx: usize, c: usize) -> usize {
    (ky * g.kw + kx) * g.cin + c
}

/// Calls `f(n, oy, ox, ky, kx, iy, ix)` for every output pixel and kernel tap that lands inside the input.
fn for_each_tap(g: &ConvGeom, mut f: impl FnMut(usize, usize, usize, usize, usize, usize, usize)) {
    for n in 0..g.n {
        for oy in 0..g.rows.out {
            for ox in 0..g.cols.out {
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        let (Some(iy), Some(ix)) = (
                            ConvGeom::tap(&g.rows, g.stride, oy, ky),
                            ConvGeom::tap(&g.cols, g.stride, ox, kx),
                        ) else {
                            continue;
                        };
                        f(n, oy, ox, ky, kx, iy, ix);
                    }
                }
            }
        }
    }
}

fn finish(g: &ConvGeom, y: &mut [f32], bias: Option<&[f32]>, act: Activation) {
    for (i, v) in y.iter_mut().enumerate() {
        let b = bias.map_or(0.0, |b| b[i % g.cout]);
        *v = act.apply(*v + b);
    }
}

pub fn forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    y: &mut [f32],
) {
    y.fill(0.0);
    for_each_tap(g, |n, oy, ox, ky, kx, iy, ix| {
        for co in 0..g.cout {
            for ci in 0..g.cin {
                y[yi(g, n, oy, ox, co)] += x[xi(g, n, iy, ix, ci)] * w[wi(g, ky, kx, ci, co)];
            }
        }
    });
    finish(g, y, bias, act);
}

pub fn backward_input(g: &ConvGeom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    dx.fill(0.0);
    for_each_tap(g, |n, oy, ox, ky, kx, iy, ix| {
        for co in 0..g.cout {
            for ci in 0..g.cin {
                dx[xi(g, n, iy, ix, ci)] += dy[yi(g, n, oy, ox, co)] * w[wi(g, ky, kx, ci, co)];
            }
        }
    });
}

pub fn backward_weights(g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    dw.fill(0.0);
    for_each_tap(g, |n, oy, ox, ky, kx, iy, ix| {
        for co in 0..g.cout {
            for ci in 0..g.cin {
                dw[wi(g, ky, kx, ci, co)] += x[xi(g, n, iy, ix, ci)] * dy[yi(g, n, oy, ox, co)];
            }
        }
    });
}

pub fn depthwise_forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    y: &mut [f32],
) {
    y.fill(0.0);
    for_each_tap(g, |n, oy, ox, ky, kx, iy, ix| {
        for c in 0..g.cin {
            y[yi(g, n, oy, ox, c)] += x[xi(g, n, iy, ix, c)] * w[dwi(g, ky, kx, c)];
        }
    });
    finish(g, y, bias, act);
}

pub fn depthwise_backward_input(g: &ConvGeom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    dx.fill(0.0);
    for_each_tap(g, |n, oy, ox, ky, kx, iy, ix| {
        for c in 0..g.cin {
            dx[xi(g, n, iy, ix, c)] += dy[yi(g, n, oy, ox, c)] * w[dwi(g, ky, kx, c)];
        }
    });
}

pub fn depthwise_backward_weights(g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    dw.fill(0.0);
    for_each_tap(g, |n, oy, ox, ky, kx, iy, ix| {
        for c in 0..g.cin {
            dw[dwi(g, ky, kx, c)] += x[xi(g, n, iy, ix, c)] * dy[yi(g, n, oy, ox, c)];
        }
    });
}
