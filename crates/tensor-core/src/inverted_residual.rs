//! MobileNetV2's inverted-residual block (1x1 expand -> depthwise -> 1x1 project [+ input]) computed
//! in tiles of output rows, so the expanded tensor (6x the channels) never leaves the cache: per
//! tile, the input rows it needs are expanded into a small buffer, the depthwise runs on that
//! buffer, and the projection writes the output rows directly.
//!
//! Its reference is the three layers run one after another ([`conv::pointwise`],
//! [`conv::depthwise`], [`add`](crate::add)); the results are bit-identical because each element
//! is computed by the same kernels in the same order (property test `tests/inverted_residual.rs`).
//! Parallel over (image, tile), so batch 1 keeps every core busy too.

use crate::conv::{self, ConvGeom};
use crate::gemm::{gemm_into, Mat};
use crate::{check_shape, Activation, Error, PadDim, Padding, Result};
use ndarray::{Array4, ArrayView4};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// A 1x1 convolution: `w` is `[cin, cout]` row-major, `bias` `[cout]`.
#[derive(Clone, Copy, Debug)]
pub struct Pointwise<'a> {
    pub w: &'a [f32],
    pub bias: &'a [f32],
    pub act: Activation,
}

impl Pointwise<'_> {
    /// `out = act(x * w + bias)` over the `cin`-wide pixel rows of `x`: the 1x1 convolution of one
    /// tile, serial (the tiles are the parallel tasks).
    /// `act(x * w + bias)` into `out`'s slots (each written), returned as floats.
    fn apply<'o>(
        &self,
        x: &[f32],
        cin: usize,
        cout: usize,
        out: &'o mut [MaybeUninit<f32>],
    ) -> &'o mut [f32] {
        let pixels = x.len() / cin;
        gemm_into(
            pixels,
            cin,
            cout,
            Mat::rows(x, cin),
            Mat::rows(self.w, cout),
            out,
        );
        // SAFETY: `gemm_into` wrote all `pixels * cout` slots, which is all of `out` (the callers
        // size it so).
        let out = unsafe { crate::buffer::assume_init_mut(out) };
        conv::epilogue(out, cout, Some(self.bias), self.act);
        out
    }
}

/// The depthwise convolution: `w` is `[kh, kw, C]`, `bias` `[C]`.
#[derive(Clone, Copy, Debug)]
pub struct Depthwise<'a> {
    pub w: &'a [f32],
    pub kh: usize,
    pub kw: usize,
    pub bias: &'a [f32],
    pub act: Activation,
    pub stride: usize,
    pub padding: Padding,
}

/// Bytes of expanded rows a tile aims for (well inside a 1-2 MiB L2).
const TILE_BYTES: usize = 256 * 1024;

const OP: &str = "inverted_residual";

fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got == want {
        return Ok(());
    }
    Err(Error::Invalid {
        op: OP,
        msg: format!("{what} has {got} values, expected {want}"),
    })
}

/// `y = project(depthwise(expand(x))) [+ x]`; `x` is NHWC. `residual` needs stride 1 and
/// `cout == cin`. Tiles hold about [`TILE_BYTES`] of expanded rows.
pub fn forward(
    x: ArrayView4<f32>,
    expand: Option<Pointwise>,
    dw: Depthwise,
    project: Pointwise,
    residual: bool,
) -> Result<Array4<f32>> {
    forward_tiled(x, expand, dw, project, residual, None)
}

/// [`forward`] with `tile` output rows per tile (`None`: from [`TILE_BYTES`]).
pub fn forward_tiled(
    x: ArrayView4<f32>,
    expand: Option<Pointwise>,
    dw: Depthwise,
    project: Pointwise,
    residual: bool,
    tile: Option<usize>,
) -> Result<Array4<f32>> {
    let (n, h, w, cin) = x.dim();
    let cexp = expand.map_or(cin, |e| e.bias.len());
    if let Some(e) = expand {
        check_len("expand kernel", e.w.len(), cin * cexp)?;
    }
    let g = ConvGeom::depthwise(
        OP,
        &[n, h, w, cexp],
        &[dw.kh, dw.kw, cexp, 1],
        dw.stride,
        dw.padding,
    )?;
    check_len("depthwise kernel", dw.w.len(), dw.kh * dw.kw * cexp)?;
    check_len("depthwise bias", dw.bias.len(), cexp)?;
    let cout = project.bias.len();
    check_len("project kernel", project.w.len(), cexp * cout)?;
    let (oh, ow) = (g.rows.out, g.cols.out);
    if residual {
        check_shape(OP, &[n, h, w, cin], &[n, oh, ow, cout])?;
    }
    let xs = conv::contiguous(&x);
    let s = dw.stride;
    let tile = tile
        .unwrap_or(TILE_BYTES / (s * w * cexp * 4).max(1))
        .clamp(1, oh.max(1));
    let mut y = crate::buffer::uninit(n * oh * ow * cout);
    let tasks: Vec<(usize, usize, &mut [MaybeUninit<f32>])> = y
        .chunks_mut((oh * ow * cout).max(1))
        .enumerate()
        .flat_map(|(img, out)| {
            out.chunks_mut(tile * ow * cout)
                .enumerate()
                .map(move |(t, o)| (img, t * tile, o))
        })
        .collect();
    tasks.into_par_iter().for_each_init(
        || (Vec::new(), Vec::new()),
        |(ebuf, dbuf): &mut (Vec<f32>, Vec<f32>), (img, oy0, out)| {
            let rows_out = out.len() / (ow * cout);
            let before = g.rows.before;
            // Input rows the tile reads: first..last (the rest is padding).
            let first = (oy0 * s).saturating_sub(before);
            let last = h.min((oy0 + rows_out - 1) * s + dw.kh - before);
            let rows_in = last - first;
            let xin = &xs[(img * h + first) * w * cin..][..rows_in * w * cin];
            let ein: &[f32] = match expand {
                Some(e) => {
                    ebuf.resize(rows_in * w * cexp, 0.0);
                    e.apply(xin, cin, cexp, crate::buffer::as_uninit(ebuf))
                }
                None => xin,
            };
            let tg = ConvGeom {
                n: 1,
                cin: cexp,
                cout: cexp,
                kh: dw.kh,
                kw: dw.kw,
                stride: s,
                rows: PadDim {
                    input: rows_in,
                    out: rows_out,
                    before: before.saturating_sub(oy0 * s),
                    after: 0,
                },
                cols: g.cols,
            };
            dbuf.resize(rows_out * ow * cexp, 0.0);
            for (r, drow) in dbuf.chunks_exact_mut(ow * cexp).enumerate() {
                let drow = crate::buffer::as_uninit(drow);
                conv::depthwise::forward_row(&tg, ein, dw.w, dw.bias, dw.act, r, drow);
            }
            let out = project.apply(dbuf, cexp, cout, out);
            if residual {
                let xr = &xs[(img * h + oy0) * w * cin..][..out.len()];
                out.iter_mut().zip(xr).for_each(|(o, x)| *o += x);
            }
        },
    );
    // SAFETY: the tasks cover `y` exactly (chunks of it), and each wrote all of its slots.
    let y = unsafe { crate::buffer::assume_init(y) };
    Ok(Array4::from_shape_vec((n, oh, ow, cout), y).expect("length is the shape's size"))
}
