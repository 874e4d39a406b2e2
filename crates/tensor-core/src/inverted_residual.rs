//! MobileNetV2's inverted-residual block (1x1 expand -> depthwise -> 1x1 project [+ input]) computed
//! in tiles of output rows, so the expanded tensor (6x the channels) never leaves the cache: per
//! tile, the input rows it needs are expanded into a small buffer, the depthwise runs on that
//! buffer, and the projection writes the output rows directly. Consecutive tiles of an image run
//! in order on one thread, each keeping the expanded rows it shares with the tile before (one
//! row at stride 2, two at stride 1) instead of expanding them again.
//!
//! Its reference is the three layers run one after another ([`conv::pointwise`],
//! [`conv::depthwise`], [`add`](crate::add)); the results are bit-identical because each element
//! is computed by the same kernels in the same order (property test `tests/inverted_residual.rs`).
//! Parallel over (image, tile) while the batch has an image for every core. A smaller batch
//! ([`Split::choose`]) is cut into as many row tiles for each thread, or, on a small feature map
//! where row tiles would expand their shared rows twice, into groups of expanded channels (each
//! expanded and filtered on its own core) followed by a projection split over pixel rows: every
//! element is still the same dot product in the same order, so both splits are bit-identical too.

use crate::conv::{self, ConvGeom};
use crate::gemm::{gemm_panels_into_with, Epilogue, Mat};
use crate::panels::Panels;
use crate::{check_shape, Activation, Error, PadDim, Padding, Result};
use ndarray::{Array4, ArrayView4};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// A 1x1 convolution: `w` is `[cin, cout]` packed in panels, `bias` `[cout]`.
#[derive(Clone, Copy, Debug)]
pub struct Pointwise<'a> {
    pub w: Panels<'a>,
    pub bias: &'a [f32],
    pub act: Activation,
}

impl Pointwise<'_> {
    /// `act(x * w + bias)` over the `cin`-wide pixel rows of `x` into `out`'s slots (each
    /// written), returned as floats: the 1x1 convolution of one tile, serial (the tiles are the
    /// parallel tasks).
    fn apply<'o>(
        &self,
        x: &[f32],
        cin: usize,
        cout: usize,
        out: &'o mut [MaybeUninit<f32>],
    ) -> &'o mut [f32] {
        let pixels = x.len() / cin;
        let epi = Epilogue {
            bias: Some(self.bias),
            act: self.act,
        };
        debug_assert!(self.w.k == cin && self.w.n == cout);
        gemm_panels_into_with(pixels, Mat::rows(x, cin), self.w, out, epi);
        // SAFETY: `gemm_into_with` wrote all `pixels * cout` slots, which is all of `out` (the
        // callers size it so).
        unsafe { crate::buffer::assume_init_mut(out) }
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

/// Output rows a core's run must have at batch 1 for rows to beat channel groups: a cut between
/// runs expands the rows the kernel shares again (two of 3x3 at stride 1, 2/7 more for a run of
/// 7), where channel groups pay a second parallel pass and a copy. On 14 x 14 maps (runs of 7,
/// two cores) rows were 1.02x groups end to end (`e2e infer --batch 1`); on 7 x 7, with runs of
/// 4 and 3 rows, groups stay.
const MIN_RUN_ROWS: usize = 7;

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

fn check_dims(what: &str, w: &Panels, k: usize, n: usize) -> Result<()> {
    if (w.k, w.n) == (k, n) {
        return Ok(());
    }
    Err(Error::Invalid {
        op: OP,
        msg: format!("{what} is {} x {}, expected {k} x {n}", w.k, w.n),
    })
}

/// How [`forward_split`] shares a block among the cores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Tasks of this many output rows of one image (the expanded rows stay in cache).
    Rows(usize),
    /// Per image, this many groups of expanded channels, each expanded and depthwise-filtered on
    /// its own core, then the projection split over pixel rows: for a batch smaller than the
    /// thread count, on a feature map too small to cut into rows without expanding them twice.
    Channels(usize),
}

impl Split {
    /// Rows of about [`TILE_BYTES`] of expanded values each while the batch keeps every core
    /// busy. Otherwise (batch 1 on several cores) rows again where the output rows part evenly
    /// into runs of at least [`MIN_RUN_ROWS`], else channel groups when one image's expanded
    /// values, shared among the threads, fit the same budget, else a row count that gives each
    /// thread as many tiles as the next.
    ///
    /// `n` images of `h x w` (`oh` output rows), `cexp` expanded channels, on `threads` cores.
    pub fn choose(
        n: usize,
        h: usize,
        w: usize,
        oh: usize,
        stride: usize,
        cexp: usize,
        threads: usize,
    ) -> Split {
        let threads = threads.max(1);
        let by_bytes = (TILE_BYTES / (stride * w * cexp * 4).max(1)).clamp(1, oh.max(1));
        let per_image = oh.max(1).div_ceil(by_bytes);
        if n >= threads || threads == 1 {
            return Split::Rows(by_bytes);
        }
        let even_runs = oh.is_multiple_of(threads) && oh / threads >= MIN_RUN_ROWS;
        if !even_runs && h * w * cexp * 4 <= TILE_BYTES * threads && cexp >= 16 * threads {
            return Split::Channels(threads);
        }
        let per_thread = (n * per_image).div_ceil(threads);
        let tiles = (per_thread * threads).div_ceil(n);
        Split::Rows(oh.max(1).div_ceil(tiles))
    }
}

/// The three layers of one block, with the sizes checked against each other and the input.
struct Block<'a> {
    expand: Option<Pointwise<'a>>,
    dw: Depthwise<'a>,
    project: Pointwise<'a>,
    residual: bool,
    /// The depthwise geometry over the whole batch (`cin` = `cout` = the expanded channels).
    g: ConvGeom,
    cin: usize,
    cout: usize,
}

impl<'a> Block<'a> {
    fn new(
        x: [usize; 4],
        expand: Option<Pointwise<'a>>,
        dw: Depthwise<'a>,
        project: Pointwise<'a>,
        residual: bool,
    ) -> Result<Self> {
        let [n, h, w, cin] = x;
        let cexp = expand.map_or(cin, |e| e.bias.len());
        if let Some(e) = expand {
            check_dims("expand kernel", &e.w, cin, cexp)?;
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
        check_dims("project kernel", &project.w, cexp, cout)?;
        if residual {
            check_shape(OP, &[n, h, w, cin], &[n, g.rows.out, g.cols.out, cout])?;
        }
        Ok(Block {
            expand,
            dw,
            project,
            residual,
            g,
            cin,
            cout,
        })
    }

    fn cexp(&self) -> usize {
        self.g.cin
    }

    /// Values of one input image and of one output image.
    fn image_sizes(&self) -> (usize, usize) {
        let g = &self.g;
        (
            g.rows.input * g.cols.input * self.cin,
            g.rows.out * g.cols.out * self.cout,
        )
    }

    /// Adds the block's input to its output (`residual`), from pixel `p0` of image `x` on.
    fn add_residual(&self, x: &[f32], p0: usize, out: &mut [f32]) {
        if self.residual {
            let xr = &x[p0 * self.cin..][..out.len()];
            out.iter_mut().zip(xr).for_each(|(o, x)| *o += x);
        }
    }
}

/// `y = project(depthwise(expand(x))) [+ x]`; `x` is NHWC. `residual` needs stride 1 and
/// `cout == cin`. Shared among the cores as [`Split::choose`] picks.
pub fn forward(
    x: ArrayView4<f32>,
    expand: Option<Pointwise>,
    dw: Depthwise,
    project: Pointwise,
    residual: bool,
) -> Result<Array4<f32>> {
    let (n, h, w, _) = x.dim();
    let b = Block::new(x.dim().into(), expand, dw, project, residual)?;
    let threads = rayon::current_num_threads();
    let split = Split::choose(n, h, w, b.g.rows.out, dw.stride, b.cexp(), threads);
    run(x, &b, split)
}

/// [`forward`] with a given [`Split`] (the tests hold every split to the layers in sequence).
pub fn forward_split(
    x: ArrayView4<f32>,
    expand: Option<Pointwise>,
    dw: Depthwise,
    project: Pointwise,
    residual: bool,
    split: Split,
) -> Result<Array4<f32>> {
    let b = Block::new(x.dim().into(), expand, dw, project, residual)?;
    run(x, &b, split)
}

fn run(x: ArrayView4<f32>, b: &Block, split: Split) -> Result<Array4<f32>> {
    let (n, oh, ow) = (b.g.n, b.g.rows.out, b.g.cols.out);
    let xs = conv::contiguous(&x);
    let mut y = crate::buffer::uninit(n * oh * ow * b.cout);
    match split {
        Split::Rows(tile) => by_row_tiles(&xs, b, tile.clamp(1, oh.max(1)), &mut y),
        Split::Channels(groups) => by_channel_groups(&xs, b, groups.max(1), &mut y),
    }
    // SAFETY: both splits write every slot of `y` (each says how).
    let y = unsafe { crate::buffer::assume_init(y) };
    Ok(Array4::from_shape_vec((n, oh, ow, b.cout), y).expect("length is the shape's size"))
}

/// Tiles of `tile` output rows, in runs of consecutive tiles of one image, each run a task: a tile
/// expands the input rows it reads (but those the tile before it in the run already expanded),
/// filters them and projects its rows. The runs are chunks of `y`, so together they write every
/// slot. While the batch has an image for every core, a run is an image (a few a core at least);
/// a smaller batch cuts each image into as many runs as cores, of equal rows (e2e infer batch 1:
/// 1.02x over runs of whole tiles, which left one core a tile more on the stride-2 blocks).
fn by_row_tiles(xs: &[f32], b: &Block, tile: usize, y: &mut [MaybeUninit<f32>]) {
    let (out_image, cout, ow) = (b.image_sizes().1, b.cout, b.g.cols.out);
    let (n, oh) = (b.g.n.max(1), b.g.rows.out.max(1));
    let threads = rayon::current_num_threads().max(1);
    let runs_per_image = match n < threads {
        true => threads,
        false => (4 * threads).div_ceil(n),
    };
    // Runs of equal rows (their last tiles may be short): whole tiles a run could leave one
    // thread a tile more than the other.
    let rows_per_run = oh.div_ceil(runs_per_image).max(1);
    let tasks: Vec<(usize, usize, &mut [MaybeUninit<f32>])> = y
        .chunks_mut(out_image.max(1))
        .enumerate()
        .flat_map(|(img, out)| {
            out.chunks_mut(rows_per_run * ow * cout)
                .enumerate()
                .map(move |(r, o)| (img, r * rows_per_run, o))
        })
        .collect();
    tasks.into_par_iter().for_each_init(
        || (Vec::new(), Vec::new()),
        |bufs: &mut (Slots, Slots), (img, oy0, out)| run_of_tiles(xs, b, img, oy0, tile, out, bufs),
    );
}

/// A tile's buffer: grown without being filled, every slot written before it is read.
type Slots = Vec<MaybeUninit<f32>>;

/// Output rows `oy0..` of image `img` into `out` (every slot written), `tile` rows at a time.
fn run_of_tiles(
    xs: &[f32],
    b: &Block,
    img: usize,
    oy0: usize,
    tile: usize,
    out: &mut [MaybeUninit<f32>],
    (ebuf, dbuf): &mut (Slots, Slots),
) {
    let (g, cexp) = (&b.g, b.cexp());
    let (ow, w) = (g.cols.out, g.cols.input);
    // Sized once for the largest tile, so neither buffer moves between the run's tiles.
    let most_in = ((tile - 1) * g.stride + b.dw.kh).min(g.rows.input);
    let mut bufs = TileBuffers {
        expanded: crate::buffer::cache_aligned(ebuf, most_in * w * cexp),
        filtered: crate::buffer::cache_aligned(dbuf, tile * ow * cexp),
        rows: 0..0,
    };
    for (t, out) in out.chunks_mut(tile * ow * b.cout).enumerate() {
        row_tile(xs, b, img, oy0 + t * tile, out, &mut bufs);
    }
}

/// A run's buffers: its expanded input rows (`rows` of the image, from the start of `expanded`,
/// all written) and its filtered rows.
struct TileBuffers<'a> {
    expanded: &'a mut [MaybeUninit<f32>],
    filtered: &'a mut [MaybeUninit<f32>],
    rows: Range<usize>,
}

/// Output rows `oy0..` of image `img` into `out` (every slot written).
fn row_tile(
    xs: &[f32],
    b: &Block,
    img: usize,
    oy0: usize,
    out: &mut [MaybeUninit<f32>],
    bufs: &mut TileBuffers,
) {
    let (g, cin, cexp, cout) = (&b.g, b.cin, b.cexp(), b.cout);
    let (h, w, ow, s) = (g.rows.input, g.cols.input, g.cols.out, g.stride);
    let rows_out = out.len() / (ow * cout);
    let before = g.rows.before;
    // Input rows the tile reads: first..last (the rest is padding).
    let first = (oy0 * s).saturating_sub(before);
    let last = h.min((oy0 + rows_out - 1) * s + b.dw.kh - before);
    let rows_in = last - first;
    let image = &xs[img * h * w * cin..][..h * w * cin];
    let ein: &[f32] = match b.expand {
        Some(e) => {
            let row = w * cexp;
            // The rows the tile before expanded that this one reads again move to the front.
            let kept = match bufs.rows.contains(&first) {
                true => bufs.rows.end.min(last) - first,
                false => 0,
            };
            if kept > 0 {
                let from = (first - bufs.rows.start) * row;
                bufs.expanded.copy_within(from..from + kept * row, 0);
            }
            let fresh = &image[(first + kept) * w * cin..last * w * cin];
            e.apply(
                fresh,
                cin,
                cexp,
                &mut bufs.expanded[kept * row..rows_in * row],
            );
            bufs.rows = first..last;
            // SAFETY: rows `..kept` were copied from rows a tile wrote (all its `rows`), the rest
            // were just written by `apply`.
            unsafe { crate::buffer::assume_init_mut(&mut bufs.expanded[..rows_in * row]) }
        }
        None => &image[first * w * cin..][..rows_in * w * cin],
    };
    let tg = ConvGeom {
        n: 1,
        rows: PadDim {
            input: rows_in,
            out: rows_out,
            before: before.saturating_sub(oy0 * s),
            after: 0,
        },
        ..*g
    };
    let d = &mut bufs.filtered[..rows_out * ow * cexp];
    for (r, drow) in d.chunks_exact_mut(ow * cexp).enumerate() {
        conv::depthwise::forward_row(&tg, ein, b.dw.w, b.dw.bias, b.dw.act, r, drow);
    }
    // SAFETY: `forward_row` wrote each row's slots, and the rows cover `d`.
    let filtered = unsafe { crate::buffer::assume_init_mut(d) };
    let out = b.project.apply(filtered, cexp, cout, out);
    b.add_residual(image, oy0 * ow, out);
}

/// Per image: `groups` ranges of expanded channels (multiples of 16 wide, but for the last),
/// each expanded over the whole image and filtered on its own core; then the projection over as
/// many blocks of pixel rows, each gathering its rows of the filtered groups side by side first
/// (in cache, and in parallel). Each image's output is written by the row blocks, which cover it.
fn by_channel_groups(xs: &[f32], b: &Block, groups: usize, y: &mut [MaybeUninit<f32>]) {
    let cexp = b.cexp();
    let width = cexp.div_ceil(groups).next_multiple_of(16).min(cexp).max(1);
    let ranges: Vec<Range<usize>> = (0..cexp)
        .step_by(width)
        .map(|c0| c0..(c0 + width).min(cexp))
        .collect();
    let (in_image, out_image) = b.image_sizes();
    let pixels = b.g.rows.out * b.g.cols.out;
    for (image, out) in xs
        .chunks_exact(in_image.max(1))
        .zip(y.chunks_mut(out_image.max(1)))
    {
        let parts: Vec<Vec<f32>> = ranges
            .par_iter()
            .map(|r| expand_and_filter(image, b, r.clone()))
            .collect();
        let rows = pixels.div_ceil(groups).max(1);
        out.par_chunks_mut(rows * b.cout)
            .enumerate()
            .for_each(|(i, o)| {
                let (p0, n) = (i * rows, o.len() / b.cout);
                let mut d = crate::buffer::uninit(n * cexp);
                for (r, part) in ranges.iter().zip(&parts) {
                    let from = part[p0 * r.len()..][..n * r.len()].chunks_exact(r.len());
                    for (row, from) in d.chunks_exact_mut(cexp).zip(from) {
                        crate::buffer::write_from(&mut row[r.clone()], from);
                    }
                }
                // SAFETY: the ranges cover `0..cexp`, so every row's slots were written above.
                let d = unsafe { crate::buffer::assume_init(d) };
                let o = b.project.apply(&d, cexp, b.cout, o);
                b.add_residual(image, p0, o);
            });
    }
}

/// The expanded channels `r` of one image, expanded over all its pixels and filtered by the
/// depthwise: `[out rows * out cols, r.len()]`.
fn expand_and_filter(image: &[f32], b: &Block, r: Range<usize>) -> Vec<f32> {
    let (g, cin, cexp, width) = (&b.g, b.cin, b.cexp(), r.len());
    let pixels = g.rows.input * g.cols.input;
    let mut slots = Vec::new();
    let e = crate::buffer::cache_aligned(&mut slots, pixels * width);
    match b.expand {
        Some(p) => {
            // Columns `r` of the `[cin, cexp]` kernel (`r` starts at a multiple of 16, and so of
            // a panel's width: 8 or 16).
            let w = p.w.columns(r.clone()).expect("groups start on a panel");
            let epi = Epilogue {
                bias: Some(&p.bias[r.clone()]),
                act: p.act,
            };
            gemm_panels_into_with(pixels, Mat::rows(image, cin), w, e, epi);
        }
        None => {
            for (e, px) in e.chunks_exact_mut(width).zip(image.chunks_exact(cin)) {
                crate::buffer::write_from(e, &px[r.clone()]);
            }
        }
    }
    // SAFETY: `gemm_into_with` wrote all `pixels * width` slots, or the copy did (`pixels` pixels of
    // `width` channels each).
    let e = unsafe { crate::buffer::assume_init_mut(e) };
    let taps: Vec<f32> =
        b.dw.w
            .chunks_exact(cexp)
            .flat_map(|tap| &tap[r.clone()])
            .copied()
            .collect();
    let tg = ConvGeom {
        n: 1,
        cin: width,
        cout: width,
        ..*g
    };
    let row = g.cols.out * width;
    let mut out = crate::buffer::uninit(g.rows.out * row);
    for (oy, o) in out.chunks_exact_mut(row.max(1)).enumerate() {
        let bias = &b.dw.bias[r.clone()];
        conv::depthwise::forward_row(&tg, e, &taps, bias, b.dw.act, oy, o);
    }
    // SAFETY: `forward_row` wrote each output row's slots, and the rows cover `out`.
    unsafe { crate::buffer::assume_init(out) }
}
