//! Batch normalisation over the channel axis of NHWC data (viewed as `[M, C]`, `M = N*H*W`).
//!
//! Inference: `y = act(x * scale + shift)` with `scale = gamma / sqrt(var + eps)`, one fused pass.
//! Training (Keras semantics): batch mean and *biased* variance; forward keeps the per-channel
//! statistics, and backward recomputes `x_hat` from the input (the layer keeps the input anyway),
//! which saves a tensor-sized write and the memory to hold it.

use crate::activation::kind::Kind;
use crate::fold::BnView;
use crate::simd::vectorised;
use crate::{Activation, Error, Result};
use rayon::prelude::*;
use std::mem::MaybeUninit;

const ROWS_PER_TASK: usize = 1024;

/// Per-channel sums in f64 over all `m` rows: `add(r, acc)` adds row `r`'s `c` values into `acc`
/// (callers write a plain zip over the row's slices, which the compiler vectorises). Fixed row
/// blocks in parallel, then added in block order, so the result does not depend on thread count
/// or scheduling.
pub fn channel_sums(m: usize, c: usize, add: impl Fn(usize, &mut [f64]) + Sync) -> Vec<f64> {
    let partials: Vec<Vec<f64>> = (0..m.div_ceil(ROWS_PER_TASK))
        .into_par_iter()
        .map(|b| {
            vectorised(
                #[inline(always)]
                || {
                    let mut acc = vec![0.0f64; c];
                    for r in b * ROWS_PER_TASK..((b + 1) * ROWS_PER_TASK).min(m) {
                        add(r, &mut acc);
                    }
                    acc
                },
            )
        })
        .collect();
    crate::gemm::sum_in_order(partials, c)
}

/// `x_hat = (x - mean) * inv_std` of one row. Backward recomputes the same expression inline, element
/// by element (a call per row with a scratch row kept its loops from vectorising).
#[inline(always)]
fn normalise(x: &[f32], mean: &[f32], inv_std: &[f32], out: &mut [f32]) {
    for (((o, x), m), i) in out.iter_mut().zip(x).zip(mean).zip(inv_std) {
        *o = (x - m) * i;
    }
}

fn check(op: &'static str, len: usize, c: usize, params: &[&[f32]]) -> Result<usize> {
    if c == 0 || !len.is_multiple_of(c) {
        return Err(Error::Invalid {
            op,
            msg: format!("{len} values do not divide into {c} channels"),
        });
    }
    for p in params {
        if p.len() != c {
            return Err(Error::Shape {
                op,
                expected: vec![c],
                got: vec![p.len()],
            });
        }
    }
    Ok(len / c)
}

/// `(scale, shift)` of an inference-mode batch-norm.
pub fn scale_shift(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f32> = gamma
        .iter()
        .zip(var)
        .map(|(g, v)| g / (v + eps).sqrt())
        .collect();
    let shift = beta
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((b, m), s)| b - m * s)
        .collect();
    (scale, shift)
}

/// Inference forward fused with the following activation: `y = act(x * scale + shift)`.
pub fn inference_forward(
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    act: Activation,
    y: &mut [f32],
) -> Result<()> {
    inference_forward_into(x, scale, shift, act, crate::buffer::as_uninit(y))
}

/// [`inference_forward`] into slots not yet written ([`crate::buffer::uninit`]): on `Ok`, every
/// element of `y` has been written.
pub fn inference_forward_into(
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    act: Activation,
    y: &mut [MaybeUninit<f32>],
) -> Result<()> {
    let c = scale.len();
    check("batch_norm", x.len(), c, &[shift])?;
    crate::check_shape("batch_norm", &[y.len()], &[x.len()])?;
    y.par_chunks_mut(c * 256)
        .zip(x.par_chunks(c * 256))
        .for_each(|(y, x)| {
            crate::per_activation!(act, A => vectorised(#[inline(always)]
            || {
                for (yr, xr) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                    for (((y, x), s), b) in yr.iter_mut().zip(xr).zip(scale).zip(shift) {
                        y.write(A::apply(x * s + b));
                    }
                }
            }))
        });
    Ok(())
}

/// What a training-mode forward leaves for backward and for the moving statistics.
#[derive(Clone, Debug, Default)]
pub struct BnCache {
    /// `1 / sqrt(var + eps)` per channel.
    pub inv_std: Vec<f32>,
    /// Batch mean per channel.
    pub mean: Vec<f32>,
    /// Biased batch variance per channel.
    pub var: Vec<f32>,
}

/// Training forward: batch statistics, `y = act(gamma * x_hat + beta)` (the activation that follows
/// in the network fused in, so the pre-activation tensor is never written).
pub fn training_forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    act: Activation,
    y: &mut [f32],
) -> Result<BnCache> {
    training_forward_into(x, gamma, beta, eps, act, crate::buffer::as_uninit(y))
}

/// [`training_forward`] into slots not yet written ([`crate::buffer::uninit`]): on `Ok`, every
/// element of `y` has been written.
pub fn training_forward_into(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    act: Activation,
    y: &mut [MaybeUninit<f32>],
) -> Result<BnCache> {
    let c = gamma.len();
    let m = check("batch_norm_training", x.len(), c, &[beta])?;
    crate::check_shape("batch_norm_training", &[y.len()], &[x.len()])?;
    // Mean and biased variance in one pass over `x`: sums of `x - k` and `(x - k)^2` in f64, with `k`
    // the first row (the shifted-data algorithm: no cancellation when the mean dwarfs the spread).
    let k: Vec<f64> = x[..c].iter().map(|&v| v as f64).collect();
    let sums = channel_sums(
        m,
        2 * c,
        #[inline(always)]
        |r, acc| {
            let (s1, s2) = acc.split_at_mut(c);
            let (s1, s2, xr, k) = (&mut s1[..c], &mut s2[..c], &x[r * c..][..c], &k[..c]);
            for ch in 0..c {
                let d = xr[ch] as f64 - k[ch];
                s1[ch] += d;
                s2[ch] += d * d;
            }
        },
    );
    let mf = m as f64;
    let mean: Vec<f64> = (0..c).map(|ch| k[ch] + sums[ch] / mf).collect();
    let var: Vec<f64> = (0..c)
        .map(|ch| ((sums[c + ch] - sums[ch] * sums[ch] / mf) / mf).max(0.0))
        .collect();
    let inv_std: Vec<f32> = var
        .iter()
        .map(|v| (1.0 / (v + eps as f64).sqrt()) as f32)
        .collect();
    let mean32: Vec<f32> = mean.iter().map(|&v| v as f32).collect();
    crate::per_activation!(act, A => normalise_all::<A>(x, &mean32, &inv_std, gamma, beta, y));
    Ok(BnCache {
        inv_std,
        mean: mean32,
        var: var.iter().map(|&v| v as f32).collect(),
    })
}

/// `y = A(gamma * x_hat + beta)` over all rows.
fn normalise_all<A: Kind>(
    x: &[f32],
    mean: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [MaybeUninit<f32>],
) {
    let c = gamma.len();
    y.par_chunks_mut(c * 256)
        .zip(x.par_chunks(c * 256))
        .for_each(|(y, x)| {
            vectorised(
                #[inline(always)]
                || {
                    let mut xh = vec![0.0f32; c];
                    for (y, x) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                        normalise(x, mean, inv_std, &mut xh);
                        for (((y, xh), g), b) in y.iter_mut().zip(&xh).zip(gamma).zip(beta) {
                            y.write(A::apply(g * xh + b));
                        }
                    }
                },
            )
        });
}

/// Gradients of a batch-norm `(dx, dgamma, dbeta)`.
#[derive(Clone, Debug)]
pub struct BnGrads {
    pub dx: Option<Vec<f32>>,
    pub dgamma: Vec<f32>,
    pub dbeta: Vec<f32>,
}

/// Training backward: `dx = gamma * inv_std / M * (M*g - sum(g) - x_hat * sum(g * x_hat))` with
/// `g = dy * act'(gamma * x_hat + beta)`, `x_hat` and the pre-activation recomputed from the
/// forward's input `x` exactly as forward computed them (so the activation's mask is the forward's).
pub fn training_backward(
    dy: &[f32],
    x: &[f32],
    cache: &BnCache,
    (gamma, beta): (&[f32], &[f32]),
    act: Activation,
    need_dx: bool,
) -> Result<BnGrads> {
    let c = gamma.len();
    check(
        "batch_norm_backward",
        dy.len(),
        c,
        &[&cache.inv_std, &cache.mean, beta],
    )?;
    crate::check_shape("batch_norm_backward", &[dy.len()], &[x.len()])?;
    let (dbeta, dgamma, dx) = crate::per_activation!(
        act,
        A => training_backward_with::<A>(dy, x, cache, (gamma, beta), need_dx)
    );
    Ok(BnGrads { dx, dgamma, dbeta })
}

/// [`training_backward`] for one activation: `(dbeta, dgamma, dx)`.
fn training_backward_with<A: Kind>(
    dy: &[f32],
    x: &[f32],
    cache: &BnCache,
    (gamma, beta): (&[f32], &[f32]),
    need_dx: bool,
) -> (Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let c = gamma.len();
    let m = dy.len() / c;
    let (mean, inv) = (&cache.mean, &cache.inv_std);
    // sum(g) and sum(g * x_hat) in one pass over dy and x: `[dbeta | dgamma]`.
    let both = channel_sums(
        m,
        2 * c,
        #[inline(always)]
        |r, acc| {
            let (db, dg) = acc.split_at_mut(c);
            // Every slice cut to `c`: no bounds checks in the loop, which then vectorises.
            let (db, dg) = (&mut db[..c], &mut dg[..c]);
            let (xr, dyr) = (&x[r * c..][..c], &dy[r * c..][..c]);
            let (mean, inv, gamma, beta) = (&mean[..c], &inv[..c], &gamma[..c], &beta[..c]);
            for ch in 0..c {
                // x_hat and the pre-activation exactly as forward computes them.
                let xh = (xr[ch] - mean[ch]) * inv[ch];
                let g = dyr[ch] * A::grad(gamma[ch] * xh + beta[ch]);
                db[ch] += g as f64;
                dg[ch] += (g * xh) as f64;
            }
        },
    );
    let (dbeta64, dgamma64) = both.split_at(c);
    let dbeta: Vec<f32> = dbeta64.iter().map(|&v| v as f32).collect();
    let dgamma: Vec<f32> = dgamma64.iter().map(|&v| v as f32).collect();
    let dx = need_dx.then(|| {
        let mf = m as f32;
        let k: Vec<f32> = (0..c).map(|ch| gamma[ch] * inv[ch] / mf).collect();
        let mut dx = crate::buffer::uninit(dy.len());
        dx.par_chunks_mut(c * 256)
            .zip(dy.par_chunks(c * 256))
            .zip(x.par_chunks(c * 256))
            .for_each(|((dx, dy), x)| {
                let (k, db, dg) = (&k[..c], &dbeta[..c], &dgamma[..c]);
                let (mean, inv, gamma, beta) = (&mean[..c], &inv[..c], &gamma[..c], &beta[..c]);
                vectorised(
                    #[inline(always)]
                    || {
                        for ((dx, dy), x) in dx
                            .chunks_exact_mut(c)
                            .zip(dy.chunks_exact(c))
                            .zip(x.chunks_exact(c))
                        {
                            let (dx, dy, x) = (&mut dx[..c], &dy[..c], &x[..c]);
                            for ch in 0..c {
                                let xh = (x[ch] - mean[ch]) * inv[ch];
                                let g = dy[ch] * A::grad(gamma[ch] * xh + beta[ch]);
                                dx[ch].write(k[ch] * (mf * g - db[ch] - xh * dg[ch]));
                            }
                        }
                    },
                )
            });
        // SAFETY: `dy.len()` is a multiple of `c` (`check` in the public entry) and `dx`, `dy` and `x` are cut alike into
        // chunks of `c * 256` and rows of `c`, so the loop wrote every element of `dx`.
        unsafe { crate::buffer::assume_init(dx) }
    });
    (dbeta, dgamma, dx)
}

/// Inference-mode backward (a batch-norm that uses its moving statistics) of
/// `y = act(x * scale + shift)`: with `g = dy * act'(x * scale + shift)` (the pre-activation exactly
/// as [`inference_forward`] computes it), `dx = g * gamma / sqrt(var + eps)`,
/// `dgamma = sum(g * (x - mean) / sqrt(var + eps))`, `dbeta = sum(g)`.
pub fn inference_backward(
    x: &[f32],
    dy: &[f32],
    bn: BnView,
    act: Activation,
    need_dx: bool,
) -> Result<BnGrads> {
    let BnView {
        gamma,
        beta,
        moving_mean: mean,
        moving_variance: var,
        eps,
    } = bn;
    let c = gamma.len();
    check("batch_norm_backward", dy.len(), c, &[beta, mean, var])?;
    crate::check_shape("batch_norm_backward", &[dy.len()], &[x.len()])?;
    let inv: Vec<f32> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let (scale, shift) = scale_shift(gamma, beta, mean, var, eps);
    let k: Vec<f32> = gamma.iter().zip(&inv).map(|(g, i)| g * i).collect();
    let (dbeta, dgamma, dx) = crate::per_activation!(
        act,
        A => inference_backward_with::<A>(x, dy, (&scale, &shift), (mean, &inv, &k), need_dx)
    );
    Ok(BnGrads { dx, dgamma, dbeta })
}

/// [`inference_backward`] for one activation: `(dbeta, dgamma, dx)`.
fn inference_backward_with<A: Kind>(
    x: &[f32],
    dy: &[f32],
    (scale, shift): (&[f32], &[f32]),
    (mean, inv, k): (&[f32], &[f32], &[f32]),
    need_dx: bool,
) -> (Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let c = scale.len();
    let m = dy.len() / c;
    let both = channel_sums(
        m,
        2 * c,
        #[inline(always)]
        |r, acc| {
            let (db, dg) = acc.split_at_mut(c);
            let (db, dg) = (&mut db[..c], &mut dg[..c]);
            let (xr, dyr) = (&x[r * c..][..c], &dy[r * c..][..c]);
            let (scale, shift, mean, inv) = (&scale[..c], &shift[..c], &mean[..c], &inv[..c]);
            for ch in 0..c {
                // The pre-activation exactly as `inference_forward` computes it.
                let g = dyr[ch] * A::grad(xr[ch] * scale[ch] + shift[ch]);
                db[ch] += g as f64;
                dg[ch] += (g * (xr[ch] - mean[ch]) * inv[ch]) as f64;
            }
        },
    );
    let (dbeta, dgamma) = both.split_at(c);
    let dx = need_dx.then(|| {
        let mut dx = crate::buffer::uninit(dy.len());
        dx.par_chunks_mut(c * 256)
            .zip(dy.par_chunks(c * 256))
            .zip(x.par_chunks(c * 256))
            .for_each(|((dx, dy), x)| {
                let (scale, shift, k) = (&scale[..c], &shift[..c], &k[..c]);
                vectorised(
                    #[inline(always)]
                    || {
                        for ((dx, dy), x) in dx
                            .chunks_exact_mut(c)
                            .zip(dy.chunks_exact(c))
                            .zip(x.chunks_exact(c))
                        {
                            let (dx, dy, x) = (&mut dx[..c], &dy[..c], &x[..c]);
                            for ch in 0..c {
                                dx[ch]
                                    .write(dy[ch] * A::grad(x[ch] * scale[ch] + shift[ch]) * k[ch]);
                            }
                        }
                    },
                )
            });
        // SAFETY: `dy.len()` is a multiple of `c` (`check` in the public entry) and `dx`, `dy` and `x` are cut alike into
        // chunks of `c * 256` and rows of `c`, so the loop wrote every element of `dx`.
        unsafe { crate::buffer::assume_init(dx) }
    });
    (
        dbeta.iter().map(|&v| v as f32).collect(),
        dgamma.iter().map(|&v| v as f32).collect(),
        dx,
    )
}

/// Plain serial loops, the twin the fast versions are held to.
pub mod reference {
    use super::BnCache;

    /// Returns the statistics and `x_hat`.
    pub fn training_forward(
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
        y: &mut [f32],
    ) -> (BnCache, Vec<f32>) {
        let c = gamma.len();
        let m = x.len() / c;
        let mut cache = BnCache::default();
        let mut x_hat = vec![0.0; x.len()];
        for ch in 0..c {
            let mean = (0..m).map(|r| x[r * c + ch] as f64).sum::<f64>() / m as f64;
            let var = (0..m)
                .map(|r| (x[r * c + ch] as f64 - mean).powi(2))
                .sum::<f64>()
                / m as f64;
            let inv = 1.0 / (var + eps as f64).sqrt();
            for r in 0..m {
                let xh = (x[r * c + ch] as f64 - mean) * inv;
                x_hat[r * c + ch] = xh as f32;
                y[r * c + ch] = (gamma[ch] as f64 * xh + beta[ch] as f64) as f32;
            }
            cache.mean.push(mean as f32);
            cache.var.push(var as f32);
            cache.inv_std.push(inv as f32);
        }
        (cache, x_hat)
    }

    /// Returns `(dx, dgamma, dbeta)`.
    pub fn training_backward(
        dy: &[f32],
        x_hat: &[f32],
        cache: &BnCache,
        gamma: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let c = gamma.len();
        let m = dy.len() / c;
        let (mut dx, mut dg, mut db) = (vec![0.0; dy.len()], vec![0.0; c], vec![0.0; c]);
        for ch in 0..c {
            let sum_dy: f64 = (0..m).map(|r| dy[r * c + ch] as f64).sum();
            let sum_dy_xh: f64 = (0..m)
                .map(|r| (dy[r * c + ch] * x_hat[r * c + ch]) as f64)
                .sum();
            for r in 0..m {
                let i = r * c + ch;
                let g = gamma[ch] as f64 * cache.inv_std[ch] as f64 / m as f64;
                dx[i] =
                    (g * (m as f64 * dy[i] as f64 - sum_dy - x_hat[i] as f64 * sum_dy_xh)) as f32;
            }
            dg[ch] = sum_dy_xh as f32;
            db[ch] = sum_dy as f32;
        }
        (dx, dg, db)
    }
}
