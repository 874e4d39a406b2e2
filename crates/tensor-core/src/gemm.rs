//! Matrix products on row-major slices: `matrixmultiply` for the SIMD micro-kernel, rayon for the cores.
//!
//! `C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C`, where a transposed operand is
//! expressed through its strides (no copies).

use crate::activation::kind::Kind;
use crate::panels::Panels;
use crate::Activation;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// A matrix operand: a slice with row and column strides (non-negative). Built only through its
/// constructors; every product checks that the extents it reads lie inside the slice.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    data: &'a [f32],
    rs: isize,
    cs: isize,
}

impl<'a> Mat<'a> {
    /// The element `(i, j)` at `data[i * rs + j * cs]`.
    pub fn strided(data: &'a [f32], rs: usize, cs: usize) -> Self {
        Mat {
            data,
            rs: rs as isize,
            cs: cs as isize,
        }
    }

    /// Panics unless every element of a `rows x cols` matrix lies inside the slice (the strides
    /// of the constructors are below `isize::MAX` for any slice that fits in memory).
    fn check(&self, rows: usize, cols: usize, what: &str) {
        if rows == 0 || cols == 0 {
            return;
        }
        let last = (rows - 1).checked_mul(self.rs as usize).and_then(|r| {
            (cols - 1)
                .checked_mul(self.cs as usize)
                .and_then(|c| r.checked_add(c))
        });
        assert!(
            last.is_some_and(|l| l < self.data.len()),
            "gemm: {what} is {rows} x {cols} with strides ({}, {}), beyond its {} elements",
            self.rs,
            self.cs,
            self.data.len()
        );
    }

    /// The same matrix from element `offset` of the slice on (a sub-matrix's origin).
    fn starting_at(self, offset: usize) -> Self {
        Mat {
            data: &self.data[offset..],
            ..self
        }
    }

    /// A row-major `rows x cols` matrix.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Mat {
            data,
            rs: cols as isize,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Mat {
            data,
            rs: 1,
            cs: cols as isize,
        }
    }
}

/// Whether an `m x k` by `k x n` product has anything to compute; panics (before any read) unless
/// `A`, `B` and a `C` of `c_len` floats hold their extents.
fn check_extents(m: usize, k: usize, n: usize, a: &Mat, b: &Mat, c_len: usize) -> bool {
    if m == 0 || n == 0 {
        return false;
    }
    assert!(c_len >= m * n, "gemm: output too small");
    a.check(m, k, "A");
    b.check(k, n, "B");
    true
}

/// Serial GEMM into a row-major `m x n` slice `c`.
pub fn gemm(m: usize, k: usize, n: usize, a: Mat, b: Mat, beta: f32, c: &mut [f32]) {
    if beta == 0.0 {
        return gemm_into(m, k, n, a, b, crate::buffer::as_uninit(c));
    }
    if !check_extents(m, k, n, &a, &b, c.len()) {
        return;
    }
    if k == 0 {
        c[..m * n].iter_mut().for_each(|v| *v *= beta);
        return;
    }
    // SAFETY: every element `matrixmultiply` reads or writes lies inside its slice: `A` (m x k),
    // `B` (k x n) at their non-negative strides and `C` (m x n, row-major) were checked by
    // `check_extents`.
    unsafe { sgemm(m, k, n, a, b, beta, c.as_mut_ptr()) }
}

/// What is applied to each finished row of `C`: `act(row + bias)` (the unpacked kernel applies it
/// in registers, before the one store; [`Epilogue::apply`] after any other product).
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    /// `n` floats, added to every row.
    pub bias: Option<&'a [f32]>,
    pub act: Activation,
}

impl<'a> Epilogue<'a> {
    /// Nothing: `C` is the product.
    pub const NONE: Epilogue<'static> = Epilogue {
        bias: None,
        act: Activation::Linear,
    };

    fn is_none(&self) -> bool {
        self.bias.is_none() && self.act == Activation::Linear
    }

    /// The same epilogue on columns `cols` of `C` (their part of the bias).
    fn columns(self, cols: std::ops::Range<usize>) -> Epilogue<'a> {
        Epilogue {
            bias: self.bias.map(|b| &b[cols]),
            ..self
        }
    }

    /// Applied to finished `n`-wide rows: the bias added, then the activation.
    pub(crate) fn apply(&self, rows: &mut [f32], n: usize) {
        if self.is_none() {
            return;
        }
        match self.bias {
            Some(b) => crate::per_activation!(self.act, A => crate::simd::vectorised(
                #[inline(always)]
                || {
                    for row in rows.chunks_exact_mut(n) {
                        for (v, b) in row.iter_mut().zip(b) {
                            *v = A::apply(*v + b);
                        }
                    }
                }
            )),
            None => self.act.apply_in_place(rows),
        }
    }
}

/// `C = A * B` into slots not yet written ([`crate::buffer::uninit`]): on return the first `m * n`
/// slots of `c` hold the product (neither kernel reads `C` when it is not accumulated into).
pub fn gemm_into(m: usize, k: usize, n: usize, a: Mat, b: Mat, c: &mut [MaybeUninit<f32>]) {
    gemm_into_with(m, k, n, a, b, c, Epilogue::NONE)
}

/// [`gemm_into`], then `epi` on every row: on return the first `m * n` slots of `c` hold
/// `act(A * B + bias)`.
pub fn gemm_into_with(
    m: usize,
    k: usize,
    n: usize,
    a: Mat,
    b: Mat,
    c: &mut [MaybeUninit<f32>],
    epi: Epilogue,
) {
    if !check_extents(m, k, n, &a, &b, c.len()) {
        return;
    }
    assert!(
        epi.bias.is_none_or(|b| b.len() == n),
        "gemm: bias is not n long"
    );
    let c = &mut c[..m * n];
    #[cfg(target_arch = "x86_64")]
    if k > 0 && unpacked_applies(m, k, n, &a, &b) {
        let (lda, ldb) = (a.rs as usize, b.rs as usize);
        let layout = crate::gemm_x86::Layout::Rows { ldb };
        // SAFETY: `unpacked_applies` found AVX-512 (with AVX2 and FMA) or AVX2 and FMA.
        return unsafe { unpacked(m, k, n, a.data, lda, b.data, layout, c, epi) };
    }
    if k == 0 {
        c.fill(MaybeUninit::new(0.0));
    } else {
        // SAFETY: the extents of `A`, `B` and `C` were checked by `check_extents`; with beta = 0,
        // matrixmultiply stores to `C` without reading it ("If beta is zero, then C does not need
        // to be initialized", its documentation), so the slots may be uninitialised.
        unsafe { sgemm(m, k, n, a, b, 0.0, c.as_mut_ptr().cast()) }
    }
    // SAFETY: every slot was written just above (zeros, or matrixmultiply's product).
    epi.apply(unsafe { crate::buffer::assume_init_mut(c) }, n);
}

/// The unpacked kernel of the SIMD level in use (AVX-512, else AVX2).
///
/// # Safety
/// The level must be AVX-512 (with AVX2 and FMA) or AVX2 with FMA; the kernel checks the extents.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn unpacked(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    layout: crate::gemm_x86::Layout,
    c: &mut [MaybeUninit<f32>],
    epi: Epilogue,
) {
    use crate::gemm_x86::{gemm_avx2, gemm_avx512};
    // SAFETY: as the caller guarantees, the features of the kernel each branch calls.
    unsafe {
        match crate::simd::level() {
            crate::simd::Level::Avx512 => gemm_avx512(m, k, n, a, lda, b, layout, c, epi),
            _ => gemm_avx2(m, k, n, a, lda, b, layout, c, epi),
        }
    }
}

/// [`gemm_into_with`] with `B` packed in panels ([`crate::panels`]): on return the first `m * n`
/// slots of `c` hold `act(A * B + bias)`, bit for bit what the row-major `B` gives.
pub fn gemm_panels_into_with(
    m: usize,
    a: Mat,
    b: Panels,
    c: &mut [MaybeUninit<f32>],
    epi: Epilogue,
) {
    let (k, n) = (b.k, b.n);
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= m * n, "gemm: output too small");
    assert!(
        epi.bias.is_none_or(|b| b.len() == n),
        "gemm: bias is not n long"
    );
    a.check(m, k, "A");
    let c = &mut c[..m * n];
    #[cfg(target_arch = "x86_64")]
    if k > 0 && k <= UNPACKED_MAX_K && a.cs == 1 && b.width == crate::panels::native_width() {
        use crate::simd::{level, Level};
        if matches!(level(), Level::Avx512 | Level::Avx2) {
            let layout = crate::gemm_x86::Layout::Panels;
            // SAFETY: AVX-512 (with AVX2 and FMA) or AVX2 and FMA detected just above; the
            // panels are the kernel's vector wide (`native_width`); extents checked inside.
            return unsafe { unpacked(m, k, n, a.data, a.rs as usize, b.data(), layout, c, epi) };
        }
    }
    if k == 0 {
        c.fill(MaybeUninit::new(0.0));
    }
    for p in 0..n.div_ceil(b.width) {
        if k == 0 {
            break;
        }
        let cols = p * b.width..n.min((p + 1) * b.width);
        let panel = Mat::rows(&b.data()[p * k * b.width..][..k * b.width], b.width);
        panel.check(k, cols.len(), "B");
        // SAFETY: `A` (m x k) and the panel (k x its columns) were checked; `C` holds `m` rows of
        // `n` from `cols.start`, row stride `n`; with beta = 0 matrixmultiply only stores to it.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                cols.len(),
                1.0,
                a.data.as_ptr(),
                a.rs,
                a.cs,
                panel.data.as_ptr(),
                panel.rs,
                panel.cs,
                0.0,
                c.as_mut_ptr().add(cols.start).cast(),
                n as isize,
                1,
            )
        };
    }
    // SAFETY: every slot was written just above (zeros, or a panel's product).
    epi.apply(unsafe { crate::buffer::assume_init_mut(c) }, n);
}

/// matrixmultiply's `C = A * B + beta * C` for a row-major `m x n` `C` at `c`.
///
/// # Safety
/// `A` and `B` checked against `m x k` and `k x n` (`Mat::check`), `m * n` floats writable at `c`,
/// and initialised when `beta != 0`.
unsafe fn sgemm(m: usize, k: usize, n: usize, a: Mat, b: Mat, beta: f32, c: *mut f32) {
    // SAFETY: as the caller guarantees.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            a.rs,
            a.cs,
            b.data.as_ptr(),
            b.rs,
            b.cs,
            beta,
            c,
            n as isize,
            1,
        );
    }
}

/// Up to which shared dimension the unpacked kernel runs: one 64-column block of `B` (`K x 64`
/// floats, 512 KiB here) stays in cache while the rows of `A` stream by. It sums in
/// matrixmultiply's order (chunks of 256 values of `K`), so results are bit-identical whichever
/// runs.
const UNPACKED_MAX_K: usize = 2048;

/// Whether [`gemm`] takes the unpacked kernel (AVX-512, or AVX2 + FMA): both operands row-major with contiguous rows
/// (`B` may be a block of a wider matrix's columns) and `K` at most [`UNPACKED_MAX_K`].
#[cfg(target_arch = "x86_64")]
fn unpacked_applies(m: usize, k: usize, n: usize, a: &Mat, b: &Mat) -> bool {
    use crate::simd::{level, Level};
    matches!(level(), Level::Avx512 | Level::Avx2)
        && m > 0
        && k <= UNPACKED_MAX_K
        && a.cs == 1
        && a.rs >= k as isize
        && b.cs == 1
        && b.rs >= n as isize
}

/// Parallel GEMM split over rows of `C` (use when `m` is large).
pub fn par_gemm(m: usize, k: usize, n: usize, a: Mat, b: Mat, beta: f32, c: &mut [f32]) {
    if beta == 0.0 {
        let c = crate::buffer::as_uninit(c);
        return par_gemm_into_with(m, k, n, a, b, c, Epilogue::NONE);
    }
    par_rows(m, k, n, c, &|r0, chunk| {
        let a = a.starting_at(r0 * a.rs as usize);
        gemm(chunk.len() / n, k, n, a, b, beta, chunk);
    });
}

/// `C = act(A * B + bias)` into slots not yet written, split over rows like [`par_gemm`]
/// (each block with its epilogue while it is still in cache): on return the first `m * n` slots
/// of `c` are written. A product with too few rows to share but work enough for every core
/// ([`col_blocks`]) is split over columns instead.
pub fn par_gemm_into_with(
    m: usize,
    k: usize,
    n: usize,
    a: Mat,
    b: Mat,
    c: &mut [MaybeUninit<f32>],
    epi: Epilogue,
) {
    if let Some(width) = col_blocks(m, k, n) {
        assert!(c.len() >= m * n, "gemm: output too small");
        return par_cols(m, n, width, &mut c[..m * n], &|c0, w, out| {
            let b = b.starting_at(c0 * b.cs as usize);
            gemm_into_with(m, k, w, a, b, out, epi.columns(c0..c0 + w));
        });
    }
    par_rows(m, k, n, c, &|r0, chunk| {
        let a = a.starting_at(r0 * a.rs as usize);
        gemm_into_with(chunk.len() / n, k, n, a, b, chunk, epi);
    });
}

/// Fewer rows than this are not split among the cores ([`par_rows`]).
const MIN_ROWS_TO_SPLIT: usize = 64;

/// The width of the column blocks (a multiple of 16, one a thread) for a product too short to
/// split over rows (`m < MIN_ROWS_TO_SPLIT`: batch-1 tails of a network, a dense layer) that has
/// a quarter of a million multiply-adds or more (a dense layer at batch 1) and at least 32 columns a thread; `None` otherwise.
fn col_blocks(m: usize, k: usize, n: usize) -> Option<usize> {
    let threads = rayon::current_num_threads().max(1);
    let worth = m * n * k >= 1 << 18 && n >= 32 * threads;
    (threads > 1 && m < MIN_ROWS_TO_SPLIT && worth)
        .then(|| n.div_ceil(threads).next_multiple_of(16))
}

/// Computes columns `c0..c0 + w` of `C` into its `m x w` slots: `(c0, w, slots)`.
type ColumnBlock<'a> = dyn Fn(usize, usize, &mut [MaybeUninit<f32>]) + Sync + 'a;

/// `C` (`m x n`) in column blocks of `width`, one a task: `block(c0, w, out)` computes columns
/// `c0..c0 + w` of every row into a buffer of its own (`m x w`, every slot written: the same
/// products, in the same order, as over all columns at once), which is then copied into its
/// columns of every row, so every slot of `c` is written.
fn par_cols(m: usize, n: usize, width: usize, c: &mut [MaybeUninit<f32>], block: &ColumnBlock) {
    let starts: Vec<usize> = (0..n).step_by(width).collect();
    let blocks: Vec<Vec<f32>> = starts
        .par_iter()
        .map(|&c0| {
            let w = width.min(n - c0);
            let mut out = crate::buffer::uninit(m * w);
            block(c0, w, &mut out);
            // SAFETY: `block` wrote all `m * w` slots.
            unsafe { crate::buffer::assume_init(out) }
        })
        .collect();
    for (&c0, block) in starts.iter().zip(&blocks) {
        let w = block.len() / m;
        for (row, from) in c.chunks_exact_mut(n).zip(block.chunks_exact(w)) {
            row[c0..c0 + w].iter_mut().zip(from).for_each(|(slot, v)| {
                slot.write(*v);
            });
        }
    }
}

/// [`par_gemm_into_with`] with `B` packed in panels: `C = act(A * B + bias)` into `c`'s slots
/// (each written), split over rows, or over columns (whole panels) for a short product.
pub fn par_gemm_panels_into_with(
    m: usize,
    a: Mat,
    b: Panels,
    c: &mut [MaybeUninit<f32>],
    epi: Epilogue,
) {
    let (k, n) = (b.k, b.n);
    if let Some(width) = col_blocks(m, k, n).filter(|w| w.is_multiple_of(b.width)) {
        assert!(c.len() >= m * n, "gemm: output too small");
        return par_cols(m, n, width, &mut c[..m * n], &|c0, w, out| {
            let cols = b.columns(c0..c0 + w).expect("blocks start on a panel");
            gemm_panels_into_with(m, a, cols, out, epi.columns(c0..c0 + w));
        });
    }
    par_rows(m, k, n, c, &|r0, chunk| {
        let a = a.starting_at(r0 * a.rs as usize);
        gemm_panels_into_with(chunk.len() / n, a, b, chunk, epi);
    });
}

/// `block(first row, rows of C)` over blocks of at most 256 rows on the thread pool (the finished
/// block is still in cache for an epilogue), or once over all `m` rows for a small product.
fn par_rows<T: Send>(
    m: usize,
    k: usize,
    n: usize,
    c: &mut [T],
    block: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= m * n, "gemm: output too small");
    let threads = rayon::current_num_threads().max(1);
    if m < MIN_ROWS_TO_SPLIT || threads == 1 || m * n * k < 1 << 16 {
        return block(0, &mut c[..m * n]);
    }
    let rows = m.div_ceil(threads * 4).clamp(16, 256);
    c[..m * n]
        .par_chunks_mut(rows * n)
        .enumerate()
        .for_each(|(i, chunk)| block(i * rows, chunk));
}

/// Adds equally long partial sums in their given order (deterministic reductions).
pub fn sum_in_order<T: Copy + Default + std::ops::AddAssign>(
    partials: Vec<Vec<T>>,
    len: usize,
) -> Vec<T> {
    let mut it = partials.into_iter();
    let mut acc = it.next().unwrap_or_else(|| vec![T::default(); len]);
    for p in it {
        acc.iter_mut().zip(&p).for_each(|(a, b)| *a += *b);
    }
    acc
}

/// Length of the `k` blocks of [`par_gemm_split_k`]: fixed, so results do not depend on thread count.
const SPLIT_K: usize = 2048;

/// Parallel GEMM split over the shared dimension `k` (use when `m x n` is small and `k` large,
/// as for weight gradients `x^T dy`). Partial products of fixed `k` blocks are summed in order;
/// `A` and `B` advance along `k` by `a.cs` and `b.rs`.
pub fn par_gemm_split_k(m: usize, k: usize, n: usize, a: Mat, b: Mat, beta: f32, c: &mut [f32]) {
    if k <= SPLIT_K {
        return gemm(m, k, n, a, b, beta, c);
    }
    let partials: Vec<Vec<f32>> = (0..k.div_ceil(SPLIT_K))
        .into_par_iter()
        .map(|t| {
            let k0 = t * SPLIT_K;
            let kk = (k0 + SPLIT_K).min(k) - k0;
            let mut out = vec![0.0f32; m * n];
            let (sa, sb) = (
                a.starting_at(k0 * a.cs as usize),
                b.starting_at(k0 * b.rs as usize),
            );
            gemm(m, kk, n, sa, sb, 0.0, &mut out);
            out
        })
        .collect();
    for (o, p) in c[..m * n].iter_mut().zip(sum_in_order(partials, m * n)) {
        *o = beta * *o + p;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packed panels give what row-major `B` gives, bit for bit: split over columns (a short
    /// product: batch-1 dense layer and 7x7 convolution), over rows, and serial; on whichever
    /// kernel this CPU (or TENSOR_CORE_SIMD=generic) runs.
    #[test]
    fn panels_equal_row_major_weights_bit_for_bit() {
        let val = |i: usize, s: usize| (((i * s + 5) % 23) as f32 - 11.0) * 0.173;
        for (m, k, n) in [(1, 1280, 256), (49, 320, 1280), (300, 64, 40), (7, 9, 5)] {
            let a: Vec<f32> = (0..m * k).map(|i| val(i, 7)).collect();
            let b: Vec<f32> = (0..k * n).map(|i| val(i, 3)).collect();
            let bias: Vec<f32> = (0..n).map(|i| val(i, 11)).collect();
            let epi = Epilogue {
                bias: Some(&bias),
                act: Activation::Relu,
            };
            let mut want = crate::buffer::uninit(m * n);
            par_gemm_into_with(m, k, n, Mat::rows(&a, k), Mat::rows(&b, n), &mut want, epi);
            // SAFETY: every slot written.
            let want = unsafe { crate::buffer::assume_init(want) };
            let packed = crate::panels::PackedB::pack(&b, k, n).unwrap();
            let mut got = crate::buffer::uninit(m * n);
            par_gemm_panels_into_with(m, Mat::rows(&a, k), packed.view(), &mut got, epi);
            // SAFETY: every slot written.
            let got = unsafe { crate::buffer::assume_init(got) };
            assert!(
                want.iter().any(|&v| v > 0.0 && v.fract() != 0.0),
                "m {m}: values"
            );
            assert_eq!(got, want, "m {m} k {k} n {n}");
        }
    }

    fn naive(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn parallel_variants_match_naive() {
        for &(m, k, n) in &[(300, 70, 33), (5, 1000, 7), (1, 1, 1), (129, 3, 2)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
            let want = naive(m, k, n, &a, &b);
            let mut c1 = vec![0.0; m * n];
            par_gemm(m, k, n, Mat::rows(&a, k), Mat::rows(&b, n), 0.0, &mut c1);
            let mut c2 = vec![1.0; m * n];
            par_gemm_split_k(m, k, n, Mat::rows(&a, k), Mat::rows(&b, n), 0.0, &mut c2);
            assert_eq!(c1, want);
            assert_eq!(c2, want);
        }
    }

    #[test]
    fn epilogue_runs_on_every_row_block() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            let (m, k, n) = (1000, 70, 9);
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 - 4.0).collect();
            let mut want = naive(m, k, n, &a, &b);
            for row in want.chunks_exact_mut(n) {
                for (v, b) in row.iter_mut().zip(&bias) {
                    *v = (*v + b).clamp(0.0, 6.0);
                }
            }
            let mut c = vec![MaybeUninit::new(f32::NAN); m * n];
            let epi = Epilogue {
                bias: Some(&bias),
                act: Activation::Relu6,
            };
            par_gemm_into_with(m, k, n, Mat::rows(&a, k), Mat::rows(&b, n), &mut c, epi);
            // SAFETY: initialised above (NaN), and written by the product.
            let c = unsafe { crate::buffer::assume_init(c) };
            assert_eq!(c, want);
            assert!(c.contains(&6.0) && c.contains(&0.0));
        });
    }

    /// Products too short to split over rows go over column blocks (3 threads: blocks of 48, 48
    /// and a narrower last one; `B` also transposed), bit-identical to the serial product, with
    /// the epilogue over every row.
    #[test]
    fn short_products_split_over_columns_bit_for_bit() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| {
            for (m, k, n) in [(1, 1280, 250), (49, 320, 1280), (9, 300, 100)] {
                assert!(col_blocks(m, k, n).is_some(), "{m} x {k} x {n} splits");
                let a: Vec<f32> = (0..m * k)
                    .map(|i| ((i * 7) % 11) as f32 * 0.37 - 1.9)
                    .collect();
                let b: Vec<f32> = (0..k * n)
                    .map(|i| ((i * 5) % 13) as f32 * 0.21 - 1.3)
                    .collect();
                let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
                let bias: Vec<f32> = (0..n).map(|j| (j % 9) as f32 * 0.5 - 2.0).collect();
                let epi = Epilogue {
                    bias: Some(&bias),
                    act: Activation::Relu,
                };
                let mut want = vec![0.0; m * n];
                gemm(m, k, n, Mat::rows(&a, k), Mat::rows(&b, n), 0.0, &mut want);
                epi.apply(&mut want, n);
                for b in [Mat::rows(&b, n), Mat::transposed(&bt, k)] {
                    let mut c = vec![MaybeUninit::new(f32::NAN); m * n];
                    par_gemm_into_with(m, k, n, Mat::rows(&a, k), b, &mut c, epi);
                    // SAFETY: initialised above (NaN), and written by the product.
                    let c = unsafe { crate::buffer::assume_init(c) };
                    assert_eq!(c, want, "{m} x {k} x {n}");
                }
            }
        });
    }

    #[test]
    fn transposed_operand_through_strides() {
        // A^T where A is 3x2 row-major.
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]; // 3x2
        let mut c = vec![0.0; 4];
        gemm(
            2,
            3,
            2,
            Mat::transposed(&a, 2),
            Mat::rows(&b, 2),
            0.0,
            &mut c,
        );
        assert_eq!(c, vec![1.0 + 5.0, 3.0 + 5.0, 2.0 + 6.0, 4.0 + 6.0]);
    }

    #[test]
    fn operands_too_short_for_their_extents_panic_before_any_read() {
        let a = vec![1.0f32; 11]; // a 3x4 matrix needs 12
        let b = vec![1.0f32; 8];
        for (m, k, n, aa, bb) in [
            (3, 4, 2, Mat::rows(&a, 4), Mat::rows(&b, 2)),
            (2, 4, 3, Mat::rows(&b, 4), Mat::rows(&a, 3)),
            (4, 3, 2, Mat::transposed(&a, 4), Mat::rows(&b, 2)),
        ] {
            let r = std::panic::catch_unwind(|| {
                let mut c = vec![0.0f32; m * n];
                gemm(m, k, n, aa, bb, 0.0, &mut c)
            });
            let msg = r.expect_err("an out-of-range operand must panic");
            let text = msg.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(text.contains("beyond its"), "{text}");
        }
        let r = std::panic::catch_unwind(|| {
            let mut c = vec![0.0f32; 5];
            par_gemm(3, 2, 2, Mat::rows(&a, 2), Mat::rows(&b, 2), 0.0, &mut c)
        });
        assert!(r.is_err(), "an output too small must panic");
    }
}
