//! Fast CPU kernels for the hot paths of the forward pass.
//!
//! Candle's CPU backend runs each elementwise op as its own pass over memory with scalar
//! `erf`/`exp`, normalises with several intermediate tensors, and lowers convolutions to an
//! im2col of the whole input, which for HTDemucs' large frequency planes costs hundreds of
//! megabytes and a permute before and after every frequency convolution. These kernels work
//! on the contiguous `f32` buffers instead:
//! - convolutions are an im2col of a block of output columns at a time into a bounded
//!   scratch buffer, multiplied by the weights with the `gemm` crate (the same one candle
//!   uses) straight into the output, in the `[C, F, T]` layout the model keeps, so no
//!   permutes;
//! - transposed convolutions are one gemm per block followed by an overlap-add;
//! - GroupNorm computes its statistics in `f64` in one pass and applies the affine map
//!   fused with the activation that follows it (GELU, or GLU plus the residual LayerScale
//!   of a DConv block);
//! - GELU, GLU and softmax use vectorisable `erfc`/`exp` approximations accurate to about
//!   one `f32` rounding.
//!
//! Every loop is written so that LLVM vectorises it; on x86-64 each kernel is compiled twice
//! and the AVX2+FMA copy is chosen at run time. Work is split with rayon, so the thread
//! count follows `RAYON_NUM_THREADS` like candle's own kernels.
//!
//! The model falls back to plain candle ops on other devices; `tests` here check each
//! kernel against those plain ops.

use candle_core::{DType, Result, Storage, Tensor};
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

/// Compiles `$body` once for the baseline target and once with AVX2 and FMA enabled, and
/// picks the fastest copy the CPU supports when called.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])* $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn portable($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    portable($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
}

thread_local! {
    static WIDE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on the values of a CPU tensor as `f32`, in row-major order. `f16` tensors (the
/// weights [`compact`] kept in half precision) are widened into a temporary buffer.
pub fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let range = layout.start_offset()..layout.start_offset() + t.elem_count();
    match &*storage {
        Storage::Cpu(cpu) if t.dtype() == DType::F16 => {
            let half = &cpu.as_slice::<half::f16>()?[range];
            // One widening buffer per thread, reused: weights are widened on every use.
            let mut wide = WIDE.with(|w| w.take());
            wide.resize(half.len(), 0.0);
            half.convert_to_f32_slice(&mut wide);
            let result = f(&wide);
            WIDE.with(|w| w.replace(wide));
            Ok(result)
        }
        Storage::Cpu(cpu) => Ok(f(&cpu.as_slice::<f32>()?[range])),
        _ => candle_core::bail!("CPU kernel called on a tensor that is not on the CPU"),
    }
}

/// A weight as the CPU kernels keep it: in `f16` when every value is exactly an `f16`
/// (checkpoints stored in half precision, like the ONNX-derived htdemucs), which halves its
/// memory and loses nothing; otherwise as given. Tensors on other devices are left alone,
/// since candle's own ops expect `f32`.
pub fn compact(weight: Tensor) -> Result<Tensor> {
    if !weight.device().is_cpu() || weight.dtype() != DType::F32 {
        return Ok(weight);
    }
    let half = weight.to_dtype(DType::F16)?;
    let exact = with_values(&weight, |wide| {
        with_values(&half, |back| {
            wide.iter()
                .zip(back)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        })
    })??;
    Ok(if exact { half } else { weight })
}

/// Wraps a buffer of this module's output as a CPU tensor, without copying.
pub fn tensor(values: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
    Tensor::from_vec(values, shape, &candle_core::Device::Cpu)
}

fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// `dst[m x n] = (accumulate ? dst : 0) + lhs[m x k] * rhs[k x n]`, every matrix given by
/// its base slice and its (row, column) strides in elements. Large products use every
/// thread.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_strides: (usize, usize),
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) {
    let parallel = m * n * k >= 64 * 64 * 64 && threads() > 1;
    // SAFETY: `dst` is an exclusive borrow of `dst.len()` values.
    unsafe {
        gemm_raw(
            m,
            n,
            k,
            (dst.as_mut_ptr(), dst.len()),
            dst_strides,
            accumulate,
            lhs,
            lhs_strides,
            rhs,
            rhs_strides,
            parallel,
        )
    }
}

/// [`gemm`] into a destination given as a pointer and the number of values it may reach.
///
/// # Safety
/// `dst.0` must be valid for writes of `dst.1` values, and no other thread may access the
/// elements this product writes while it runs.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw(
    m: usize,
    n: usize,
    k: usize,
    dst: (*mut f32, usize),
    dst_strides: (usize, usize),
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last =
        |rows: usize, cols: usize, (rs, cs): (usize, usize)| (rows - 1) * rs + (cols - 1) * cs;
    assert!(
        last(m, n, dst_strides) < dst.1,
        "gemm: destination too short"
    );
    if k > 0 {
        assert!(
            last(m, k, lhs_strides) < lhs.len(),
            "gemm: left operand too short"
        );
        assert!(
            last(k, n, rhs_strides) < rhs.len(),
            "gemm: right operand too short"
        );
    }
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every element the strides reach inside its buffer; the
    // caller guarantees `dst` is writable and not accessed elsewhere meanwhile.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst_strides.1 as isize,
            dst_strides.0 as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_strides.1 as isize,
            lhs_strides.0 as isize,
            rhs.as_ptr(),
            rhs_strides.1 as isize,
            rhs_strides.0 as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

// ---------------------------------------------------------------------------------------
// Scalar math that vectorises: exp, erfc, sigmoid, GELU.

/// `e^x` to about 2 ulp (Cody-Waite reduction to `[-ln2/2, ln2/2]` and a degree-6
/// polynomial), flushed to zero below `-87` and saturated above `88`.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    // The integer n sits in the low mantissa bits of `shifted`; reading it from there
    // instead of with a float-to-int cast keeps the loop vectorised.
    let n_int = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let scale = f32::from_bits((n_int.wrapping_add(127) as u32) << 23);
    e * scale
}

/// `erfc(z)` for `z >= 0` with a relative error below 1.2e-7 (the Chebyshev fit of
/// Numerical Recipes' `erfcc`), so that GELU keeps its precision in the negative tail,
/// where `1 + erf` would cancel.
#[inline(always)]
pub fn erfc_non_negative(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let mut p = 0.170_872_77;
    p = p * t + -0.822_152_23;
    p = p * t + 1.488_515_9;
    p = p * t + -1.135_204;
    p = p * t + 0.278_868_07;
    p = p * t + -0.186_288_06;
    p = p * t + 0.096_784_18;
    p = p * t + 0.374_091_96;
    p = p * t + 1.000_023_7;
    p = p * t + -1.265_512_2;
    t * exp(-z * z + p)
}

/// Exact (erf) GELU, as `torch.nn.functional.gelu`: `x * Phi(x)` with the normal CDF
/// written through `erfc` on either side of zero.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    let c = erfc_non_negative(x.abs() * std::f32::consts::FRAC_1_SQRT_2);
    let phi = if x >= 0.0 { 1.0 - 0.5 * c } else { 0.5 * c };
    x * phi
}

#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

multiversion! {
    fn gelu_slice(values: &mut [f32]) {
        for v in values.iter_mut() {
            *v = gelu(*v);
        }
    }
}

/// GELU of every value, in place.
pub fn gelu_in_place(values: &mut [f32]) {
    values.par_chunks_mut(1 << 14).for_each(gelu_slice);
}

multiversion! {
    fn glu_slice(out: &mut [f32], a: &[f32], b: &[f32]) {
        for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
            *o = a * sigmoid(b);
        }
    }
}

/// `torch.nn.functional.glu(x, 1)` of `x` `[B, 2C, N]` (contiguous) into `[B, C, N]`.
pub fn glu(x: &[f32], batch: usize, channels: usize, inner: usize) -> Vec<f32> {
    assert_eq!(
        x.len(),
        batch * 2 * channels * inner,
        "glu: bad input length"
    );
    let mut out = vec![0f32; batch * channels * inner];
    out.par_chunks_mut(inner)
        .enumerate()
        .for_each(|(plane, out)| {
            let (b, c) = (plane / channels, plane % channels);
            let a = &x[(b * 2 * channels + c) * inner..][..inner];
            let g = &x[(b * 2 * channels + channels + c) * inner..][..inner];
            glu_slice(out, a, g);
        });
    out
}

multiversion! {
    fn softmax_row(row: &mut [f32]) {
        let mut lanes = [f32::NEG_INFINITY; 8];
        let mut chunks = row.chunks_exact(8);
        for chunk in &mut chunks {
            for (l, &v) in lanes.iter_mut().zip(chunk) {
                *l = if v > *l { v } else { *l };
            }
        }
        let mut max = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
        for l in lanes {
            max = if l > max { l } else { max };
        }
        let mut sums = [0f32; 8];
        let mut chunks = row.chunks_exact_mut(8);
        for chunk in &mut chunks {
            for (s, v) in sums.iter_mut().zip(chunk.iter_mut()) {
                *v = exp(*v - max);
                *s += *v;
            }
        }
        let mut sum: f32 = 0.0;
        for v in chunks.into_remainder() {
            *v = exp(*v - max);
            sum += *v;
        }
        sum += sums.iter().sum::<f32>();
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// Softmax over every row of `row_len` values, in place.
pub fn softmax_rows_in_place(values: &mut [f32], row_len: usize) {
    assert_eq!(values.len() % row_len.max(1), 0, "softmax: ragged rows");
    values.par_chunks_mut(row_len.max(1)).for_each(softmax_row);
}

/// `x [rows, in] * weight^T + bias` for torch's `[out, in]` weight layout: `[rows, out]`.
pub fn linear(
    x: &[f32],
    rows: usize,
    weight: &[f32],
    (d_out, d_in): (usize, usize),
    bias: Option<&[f32]>,
) -> Vec<f32> {
    assert_eq!(x.len(), rows * d_in, "linear: bad input length");
    assert_eq!(weight.len(), d_out * d_in, "linear: bad weight length");
    let mut out = vec![0f32; rows * d_out];
    if let Some(bias) = bias {
        out.par_chunks_mut(d_out)
            .for_each(|row| row.copy_from_slice(bias));
    }
    gemm(
        rows,
        d_out,
        d_in,
        &mut out,
        (d_out, 1),
        bias.is_some(),
        x,
        (d_in, 1),
        weight,
        (1, d_in),
    );
    out
}

/// Multi-head attention without masks over packed projections: `q` `[lq, heads * hd]`,
/// `k` and `v` `[lk, heads * hd]` (queries already scaled). Returns `[lq, heads * hd]`.
///
/// Tasks take one head and a block of query rows each: the block's scores (a few hundred
/// kilobytes) are computed, softmaxed and multiplied by the values while they are still in
/// cache, instead of writing and re-reading an `lq x lk` matrix per head.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (lq, lk): (usize, usize),
    heads: usize,
) -> Vec<f32> {
    let dim = q.len() / lq.max(1);
    let hd = dim / heads.max(1);
    assert_eq!(q.len(), lq * dim, "attention: bad query length");
    assert_eq!(k.len(), lk * dim, "attention: bad key length");
    assert_eq!(v.len(), lk * dim, "attention: bad value length");
    let mut out = vec![0f32; lq * dim];
    // About 8 MB of scores per task: large enough for an efficient single-threaded
    // multiply, still a fraction of the whole matrix.
    let rows = ((1 << 21) / lk.max(1)).clamp(8, 1024).min(lq.max(1));
    let blocks = lq.div_ceil(rows);
    let shared = SharedOut(out.as_mut_ptr(), out.len());
    (0..heads * blocks)
        .into_par_iter()
        .for_each_init(Vec::new, |scores: &mut Vec<f32>, task| {
            let (h, block) = (task / blocks, task % blocks);
            let (r0, n) = (block * rows, rows.min(lq - block * rows));
            let offset = h * hd;
            scores.resize(n * lk, 0.0);
            // scores = q_h k_h^T: k_h^T is k read with strides (1, dim).
            gemm_single(
                n,
                lk,
                hd,
                scores,
                (lk, 1),
                false,
                &q[r0 * dim + offset..],
                (dim, 1),
                &k[offset..],
                (1, dim),
            );
            for row in scores.chunks_mut(lk) {
                softmax_row(row);
            }
            let (base, len) = shared.base();
            let start = r0 * dim + offset;
            let reach = (n - 1) * dim + hd;
            assert!(start + reach <= len, "attention: output out of bounds");
            // SAFETY: in bounds (checked); of the values in reach, this product writes only
            // rows r0..r0 + n of columns offset..offset + hd, which no other task touches (other
            // heads interleave their columns but write none of these).
            unsafe {
                gemm_raw(
                    n,
                    hd,
                    lk,
                    (base.add(start), reach),
                    (dim, 1),
                    false,
                    scores,
                    (lk, 1),
                    &v[offset..],
                    (dim, 1),
                    false,
                );
            }
        });
    out
}

// ---------------------------------------------------------------------------------------
// GroupNorm.

/// The shape a GroupNorm sees: `[batch, channels, rows, len]`, normalised per
/// `(batch, channel group, row)` over the group's channels and the `len` values of the row.
/// `rows` is 1 for `torch.nn.GroupNorm`; HTDemucs' frequency-branch DConv normalises every
/// frequency row of `[B, C, F, T]` on its own, which is `rows = F`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormShape {
    pub batch: usize,
    pub channels: usize,
    pub rows: usize,
    pub len: usize,
    pub groups: usize,
}

impl NormShape {
    fn elements(&self) -> usize {
        self.batch * self.channels * self.rows * self.len
    }
}

multiversion! {
    fn sum_and_squares(values: &[f32], out: &mut (f64, f64)) {
        let mut sum = [0f64; 4];
        let mut squares = [0f64; 4];
        let mut chunks = values.chunks_exact(4);
        for chunk in &mut chunks {
            for i in 0..4 {
                let v = chunk[i] as f64;
                sum[i] += v;
                squares[i] += v * v;
            }
        }
        let (mut s, mut q) = (sum.iter().sum::<f64>(), squares.iter().sum::<f64>());
        for &v in chunks.remainder() {
            s += v as f64;
            q += v as f64 * v as f64;
        }
        *out = (s, q);
    }
}

/// Mean and `1 / sqrt(var + eps)` per `(batch, group, row)`, summed in `f64`.
fn norm_stats(x: &[f32], shape: NormShape, eps: f64) -> Vec<(f32, f32)> {
    assert_eq!(x.len(), shape.elements(), "group norm: bad input length");
    assert_eq!(
        shape.channels % shape.groups,
        0,
        "group norm: groups must divide channels"
    );
    // One (sum, sum of squares) per row of `len` values, then combined per group.
    let runs: Vec<(f64, f64)> = x
        .par_chunks(shape.len.max(1))
        .map(|run| {
            let mut out = (0.0, 0.0);
            sum_and_squares(run, &mut out);
            out
        })
        .collect();
    let per_group = shape.channels / shape.groups;
    let n = (per_group * shape.len) as f64;
    let mut stats = Vec::with_capacity(shape.batch * shape.groups * shape.rows);
    for b in 0..shape.batch {
        for g in 0..shape.groups {
            for r in 0..shape.rows {
                let (mut s, mut q) = (0f64, 0f64);
                for c in g * per_group..(g + 1) * per_group {
                    let (rs, rq) = runs[(b * shape.channels + c) * shape.rows + r];
                    s += rs;
                    q += rq;
                }
                let mean = s / n;
                let var = (q / n - mean * mean).max(0.0);
                stats.push((mean as f32, (1.0 / (var + eps).sqrt()) as f32));
            }
        }
    }
    stats
}

/// What follows a GroupNorm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    Gelu,
}

multiversion! {
    fn affine_slice(out: &mut [f32], x: &[f32], scale: f32, shift: f32, gelu_after: bool) {
        if gelu_after {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = gelu(v * scale + shift);
            }
        } else {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = v * scale + shift;
            }
        }
    }
}

/// GroupNorm (`eps` 1e-5) with a per-channel affine, then `activation`.
pub fn group_norm(
    x: &[f32],
    shape: NormShape,
    weight: &[f32],
    bias: &[f32],
    activation: Activation,
) -> Vec<f32> {
    let stats = norm_stats(x, shape, 1e-5);
    let per_group = shape.channels / shape.groups;
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(shape.len.max(1))
        .zip(x.par_chunks(shape.len.max(1)))
        .enumerate()
        .for_each(|(run, (out, x))| {
            let r = run % shape.rows;
            let c = (run / shape.rows) % shape.channels;
            let b = run / (shape.rows * shape.channels);
            let (mean, rstd) = stats[(b * shape.groups + c / per_group) * shape.rows + r];
            let scale = rstd * weight[c];
            let shift = bias[c] - mean * scale;
            affine_slice(out, x, scale, shift, activation == Activation::Gelu);
        });
    out
}

/// demucs' `MyGroupNorm(1, C)` on tokens `[B, T, C]`: each batch item normalised over all
/// its values, then a per-channel affine (`eps` 1e-5).
pub fn group_norm_tokens(
    x: &[f32],
    (batch, tokens, channels): (usize, usize, usize),
    weight: &[f32],
    bias: &[f32],
) -> Vec<f32> {
    let shape = NormShape {
        batch,
        channels: 1,
        rows: 1,
        len: tokens * channels,
        groups: 1,
    };
    let stats = norm_stats(x, shape, 1e-5);
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(channels.max(1))
        .zip(x.par_chunks(channels.max(1)))
        .enumerate()
        .for_each(|(token, (out, x))| {
            let (mean, rstd) = stats[token / tokens.max(1)];
            for (((o, &v), &w), &b) in out.iter_mut().zip(x).zip(weight).zip(bias) {
                *o = (v - mean) * rstd * w + b;
            }
        });
    out
}

multiversion! {
    fn glu_residual_slice(out: &mut [f32], a: &[f32], g: &[f32], affine: [f32; 4], layer_scale: f32) {
        let [sa, ha, sg, hg] = affine;
        for ((o, &a), &g) in out.iter_mut().zip(a).zip(g) {
            *o += layer_scale * ((a * sa + ha) * sigmoid(g * sg + hg));
        }
    }
}

/// The end of a DConv block: `residual += layer_scale[c] * glu(group_norm(x))`, with `x`
/// `[B, 2C, R, L]` and `residual` `[B, C, R, L]`.
pub fn group_norm_glu_residual(
    x: &[f32],
    shape: NormShape,
    weight: &[f32],
    bias: &[f32],
    layer_scale: &[f32],
    residual: &mut [f32],
) {
    let stats = norm_stats(x, shape, 1e-5);
    let half = shape.channels / 2;
    let per_group = shape.channels / shape.groups;
    let len = shape.len.max(1);
    assert_eq!(
        residual.len(),
        x.len() / 2,
        "glu: residual has the wrong length"
    );
    let affine = |b: usize, c: usize, r: usize| {
        let (mean, rstd) = stats[(b * shape.groups + c / per_group) * shape.rows + r];
        let scale = rstd * weight[c];
        (scale, bias[c] - mean * scale)
    };
    residual
        .par_chunks_mut(len)
        .enumerate()
        .for_each(|(run, out)| {
            let r = run % shape.rows;
            let c = (run / shape.rows) % half;
            let b = run / (shape.rows * half);
            let at = |c: usize| &x[((b * shape.channels + c) * shape.rows + r) * len..][..len];
            let (sa, ha) = affine(b, c, r);
            let (sg, hg) = affine(b, c + half, r);
            glu_residual_slice(out, at(c), at(c + half), [sa, ha, sg, hg], layer_scale[c]);
        });
}

/// The tail of a DConv block in one kernel: `x += layer_scale * glu(GroupNorm1(W h + b))`
/// per row, with `h` `[hidden, R, L]`, `x` `[C, R, L]` and `W` `[2C, hidden]`.
///
/// The projection has only `hidden` (a few dozen) input channels, so materialising its
/// `2C`-channel output costs far more memory traffic than computing it. Instead it is
/// computed twice, a cache-sized tile at a time: once for each row's statistics, once to
/// apply them.
#[allow(clippy::too_many_arguments)]
pub fn project_norm_glu_residual(
    h: &[f32],
    (hidden, rows, len): (usize, usize, usize),
    weight: &[f32],
    bias: &[f32],
    (norm_weight, norm_bias): (&[f32], &[f32]),
    layer_scale: &[f32],
    x: &mut [f32],
) {
    let channels = layer_scale.len();
    let c2 = 2 * channels;
    let columns = rows * len;
    assert_eq!(h.len(), hidden * columns, "dconv tail: bad hidden length");
    assert_eq!(
        x.len(),
        channels * columns,
        "dconv tail: bad residual length"
    );
    assert_eq!(weight.len(), c2 * hidden, "dconv tail: bad weight length");
    assert!(bias.len() == c2 && norm_weight.len() == c2 && norm_bias.len() == c2);
    // Tiles never cross a row, so each belongs to one row's statistics.
    let width = ((1 << 16) / c2.max(1)).clamp(64, 2048).min(len.max(1));
    let per_row = len.div_ceil(width);
    let tiles = rows * per_row;
    let tile_range = |tile: usize| {
        let (r, i) = (tile / per_row, tile % per_row);
        let t0 = i * width;
        (r, r * len + t0, width.min(len - t0))
    };
    let project = |z: &mut Vec<f32>, j0: usize, w: usize| {
        z.clear();
        z.resize(c2 * w, 0.0);
        for (row, &b) in z.chunks_mut(w).zip(bias) {
            row.fill(b);
        }
        gemm_single(
            c2,
            w,
            hidden,
            z,
            (w, 1),
            true,
            weight,
            (hidden, 1),
            &h[j0..],
            (columns, 1),
        );
    };
    let partial: Vec<(f64, f64)> = (0..tiles)
        .into_par_iter()
        .map_init(Vec::new, |z, tile| {
            let (_, j0, w) = tile_range(tile);
            project(z, j0, w);
            let mut sums = (0.0, 0.0);
            sum_and_squares(z, &mut sums);
            sums
        })
        .collect();
    let n = (c2 * len) as f64;
    let stats: Vec<(f32, f32)> = partial
        .chunks(per_row)
        .map(|row| {
            let (s, q) = row.iter().fold((0.0, 0.0), |(s, q), (a, b)| (s + a, q + b));
            let mean = s / n;
            let var = (q / n - mean * mean).max(0.0);
            (mean as f32, (1.0 / (var + 1e-5).sqrt()) as f32)
        })
        .collect();
    let shared = SharedOut(x.as_mut_ptr(), x.len());
    (0..tiles)
        .into_par_iter()
        .for_each_init(Vec::new, |z, tile| {
            let (r, j0, w) = tile_range(tile);
            project(z, j0, w);
            let (mean, rstd) = stats[r];
            for c in 0..channels {
                let (sa, sg) = (rstd * norm_weight[c], rstd * norm_weight[c + channels]);
                let affine = [
                    sa,
                    norm_bias[c] - mean * sa,
                    sg,
                    norm_bias[c + channels] - mean * sg,
                ];
                // SAFETY: this task alone touches columns j0..j0 + w of the residual.
                let out = unsafe { shared.row(c, columns, j0, w) };
                glu_residual_slice(
                    out,
                    &z[c * w..][..w],
                    &z[(c + channels) * w..][..w],
                    affine,
                    layer_scale[c],
                );
            }
        });
}

// ---------------------------------------------------------------------------------------
// Convolutions.

/// A 2-D convolution over `[C, F, T]` planes (time-branch signals are `F = 1`), with any
/// kernel, stride and padding per axis and a dilation along time: every convolution of
/// HTDemucs' encoders, decoders' rewrites and DConv blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation_t: usize,
}

impl ConvGeometry {
    pub fn output(&self, freq: usize, time: usize) -> (usize, usize) {
        let (kf, kt) = self.kernel;
        let span_t = self.dilation_t * (kt - 1) + 1;
        (
            (freq + 2 * self.padding.0 - kf) / self.stride.0 + 1,
            (time + 2 * self.padding.1 - span_t) / self.stride.1 + 1,
        )
    }
}

/// What a convolution applies to its output before writing it, while the block is still in
/// cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    None,
    Gelu,
    /// `glu` over the channels: the output has half the convolution's channels.
    Glu,
}

/// A pointer to an output buffer that tasks write disjoint parts of.
struct SharedOut(*mut f32, usize);
// SAFETY: every task writes its own columns; see the uses.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn base(&self) -> (*mut f32, usize) {
        (self.0, self.1)
    }

    /// The `width` values of row `row` (of `stride` values) from column `col`.
    ///
    /// # Safety
    /// No two live slices may overlap, and the range must lie inside the buffer.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, row: usize, stride: usize, col: usize, width: usize) -> &mut [f32] {
        let at = row * stride + col;
        assert!(at + width <= self.1, "conv: output range out of bounds");
        // SAFETY: in bounds (checked) and disjoint (the caller's promise).
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at), width) }
    }
}

/// Writes `cols[p][j - j0] = x[ci, fo*sf + kf - pf, to*st + kt*dt - pt]` (zero outside `x`)
/// for the patch element `p = (ci, kf, kt)` and output columns `j = fo * t_out + to` in
/// `j0..j0 + width`.
#[allow(clippy::too_many_arguments)]
fn fill_patch_row(
    row: &mut [f32],
    plane: &[f32],
    (f_in, t_in): (usize, usize),
    t_out: usize,
    g: &ConvGeometry,
    (kf, kt): (usize, usize),
    j0: usize,
) {
    let width = row.len();
    let mut j = j0;
    let end = j0 + width;
    while j < end {
        let (fo, to_start) = (j / t_out, j % t_out);
        let to_end = t_out.min(to_start + (end - j));
        let dst = &mut row[j - j0..j - j0 + (to_end - to_start)];
        let fi = (fo * g.stride.0 + kf) as isize - g.padding.0 as isize;
        if fi < 0 || fi as usize >= f_in {
            dst.fill(0.0);
        } else {
            let src = &plane[fi as usize * t_in..][..t_in];
            let offset = (kt * g.dilation_t) as isize - g.padding.1 as isize;
            let st = g.stride.1;
            if st == 1 {
                // ti = to + offset: one copy of the part inside the row, zeros around it.
                let lo = (-offset).clamp(to_start as isize, to_end as isize) as usize;
                let hi = (t_in as isize - offset).clamp(lo as isize, to_end as isize) as usize;
                dst[..lo - to_start].fill(0.0);
                dst[lo - to_start..hi - to_start].copy_from_slice(
                    &src[(lo as isize + offset) as usize..(hi as isize + offset) as usize],
                );
                dst[hi - to_start..].fill(0.0);
            } else {
                for (d, to) in dst.iter_mut().zip(to_start..to_end) {
                    let ti = (to * st) as isize + offset;
                    *d = if ti >= 0 && (ti as usize) < t_in {
                        src[ti as usize]
                    } else {
                        0.0
                    };
                }
            }
        }
        j += to_end - to_start;
    }
}

/// Convolution of `x` `[B, Cin, F, T]` with `weight` `[Cout, Cin, KF, KT]` and `bias`, then
/// `epilogue`; returns the output and its shape `[B, C, Fo, To]` (`C` is `Cout`, or half of
/// it after a GLU).
///
/// The output columns are cut into blocks that tasks take in parallel: each builds the
/// im2col of its block in a scratch buffer small enough to stay in cache, multiplies it
/// single-threaded, applies the epilogue and writes its columns of the output.
pub fn conv2d(
    x: &[f32],
    (batch, c_in, f_in, t_in): (usize, usize, usize, usize),
    weight: &[f32],
    bias: Option<&[f32]>,
    c_out: usize,
    g: &ConvGeometry,
    epilogue: Epilogue,
) -> (Vec<f32>, [usize; 4]) {
    let (kf, kt) = g.kernel;
    let patch = c_in * kf * kt;
    assert_eq!(
        x.len(),
        batch * c_in * f_in * t_in,
        "conv2d: bad input length"
    );
    assert_eq!(weight.len(), c_out * patch, "conv2d: bad weight length");
    if let Some(bias) = bias {
        assert_eq!(bias.len(), c_out, "conv2d: bad bias length");
    }
    let (f_out, t_out) = g.output(f_in, t_in);
    let columns = f_out * t_out;
    let channels = match epilogue {
        Epilogue::Glu => {
            assert_eq!(c_out % 2, 0, "conv2d: GLU needs an even channel count");
            c_out / 2
        }
        _ => c_out,
    };
    let mut out = vec![0f32; batch * channels * columns];
    let pointwise = patch == c_in && g.stride == (1, 1) && g.padding == (0, 0);
    // Blocks of about 1 MB of im2col, wide enough to keep the multiply efficient, and
    // enough of them to keep every thread busy.
    let width = ((1 << 18) / patch.max(1))
        .max(256)
        .min(columns.div_ceil(4 * threads()).max(32))
        .min(columns.max(1));
    let blocks = columns.div_ceil(width);
    let shared = SharedOut(out.as_mut_ptr(), out.len());
    (0..batch * blocks).into_par_iter().for_each_init(
        || (Vec::new(), Vec::new()),
        |(cols, tile): &mut (Vec<f32>, Vec<f32>), task| {
            let (b, block) = (task / blocks, task % blocks);
            let j0 = block * width;
            let w = width.min(columns - j0);
            let x = &x[b * c_in * f_in * t_in..][..c_in * f_in * t_in];
            tile.clear();
            tile.resize(c_out * w, 0.0);
            if let Some(bias) = bias {
                for (row, &v) in tile.chunks_mut(w).zip(bias) {
                    row.fill(v);
                }
            }
            if pointwise {
                gemm_single(
                    c_out,
                    w,
                    c_in,
                    tile,
                    (w, 1),
                    bias.is_some(),
                    weight,
                    (c_in, 1),
                    &x[j0..],
                    (columns, 1),
                );
            } else {
                cols.resize(patch * w, 0.0);
                for (p, row) in cols.chunks_mut(w).enumerate() {
                    let (ci, k) = (p / (kf * kt), p % (kf * kt));
                    let plane = &x[ci * f_in * t_in..][..f_in * t_in];
                    fill_patch_row(row, plane, (f_in, t_in), t_out, g, (k / kt, k % kt), j0);
                }
                gemm_single(
                    c_out,
                    w,
                    patch,
                    tile,
                    (w, 1),
                    bias.is_some(),
                    weight,
                    (patch, 1),
                    cols,
                    (w, 1),
                );
            }
            let out_row = |c: usize| {
                // SAFETY: this task alone writes columns j0..j0 + w of batch item b.
                unsafe { shared.row(b * channels + c, columns, j0, w) }
            };
            match epilogue {
                Epilogue::None => {
                    for (c, row) in tile.chunks(w).enumerate() {
                        out_row(c).copy_from_slice(row);
                    }
                }
                Epilogue::Gelu => {
                    gelu_slice(tile);
                    for (c, row) in tile.chunks(w).enumerate() {
                        out_row(c).copy_from_slice(row);
                    }
                }
                Epilogue::Glu => {
                    let (a, gate) = tile.split_at(channels * w);
                    for c in 0..channels {
                        glu_slice(out_row(c), &a[c * w..][..w], &gate[c * w..][..w]);
                    }
                }
            }
        },
    );
    (out, [batch, channels, f_out, t_out])
}

/// [`gemm`] on the calling thread only, for tasks that are already parallel.
#[allow(clippy::too_many_arguments)]
fn gemm_single(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_strides: (usize, usize),
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) {
    // SAFETY: `dst` is an exclusive borrow of `dst.len()` values.
    unsafe {
        gemm_raw(
            m,
            n,
            k,
            (dst.as_mut_ptr(), dst.len()),
            dst_strides,
            accumulate,
            lhs,
            lhs_strides,
            rhs,
            rhs_strides,
            false,
        )
    }
}

/// Transposed convolution without padding along one axis of `x` `[B, Cin, A, I]`
/// (`A` the axis, `I` the contiguous values that ride along: time for a frequency
/// transposed convolution, 1 for a time one). `weight` is torch's `[Cin, Cout, K]`.
/// The output along the axis is `(A - 1) * stride + K` long; `crop` `(start, len)` keeps
/// only part of it, and `gelu_after` applies GELU to what is kept. Returns
/// `[B, Cout, len, I]`.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose(
    x: &[f32],
    (batch, c_in, axis, inner): (usize, usize, usize, usize),
    weight: &[f32],
    bias: Option<&[f32]>,
    (c_out, kernel): (usize, usize),
    stride: usize,
    crop: Option<(usize, usize)>,
    gelu_after: bool,
) -> (Vec<f32>, [usize; 4]) {
    assert_eq!(
        x.len(),
        batch * c_in * axis * inner,
        "conv_transpose: bad input length"
    );
    assert_eq!(
        weight.len(),
        c_in * c_out * kernel,
        "conv_transpose: bad weight length"
    );
    let a_out = (axis - 1) * stride + kernel;
    let columns = axis * inner;
    let rows = c_out * kernel;
    let mut out = vec![0f32; batch * c_out * a_out * inner];
    // About 4 MB of columns per block, in whole input positions.
    let block = ((1 << 20) / rows.max(1)).max(256).max(inner);
    // Whole input positions per block, so each block scatters into whole output rows.
    let per_block = (block / inner).max(1);
    let mut scratch = vec![0f32; rows * (per_block * inner).min(columns)];
    for b in 0..batch {
        let x = &x[b * c_in * columns..][..c_in * columns];
        let out = &mut out[b * c_out * a_out * inner..][..c_out * a_out * inner];
        for a0 in (0..axis).step_by(per_block) {
            let positions = per_block.min(axis - a0);
            let width = positions * inner;
            let cols = &mut scratch[..rows * width];
            // cols[(co, k), j] = sum_ci w[ci, co, k] x[ci, a0 * inner + j]: the weight read
            // as a [(co, k), ci] matrix is its own memory with strides (1, Cout * K).
            gemm(
                rows,
                width,
                c_in,
                cols,
                (width, 1),
                false,
                weight,
                (1, rows),
                &x[a0 * inner..],
                (columns, 1),
            );
            let cols = &*cols;
            out.par_chunks_mut(a_out * inner)
                .enumerate()
                .for_each(|(co, plane)| {
                    for k in 0..kernel {
                        let src = &cols[(co * kernel + k) * width..][..width];
                        for p in 0..positions {
                            let at = ((a0 + p) * stride + k) * inner;
                            for (o, v) in plane[at..at + inner]
                                .iter_mut()
                                .zip(&src[p * inner..(p + 1) * inner])
                            {
                                *o += v;
                            }
                        }
                    }
                });
        }
    }
    let (start, len) = crop.unwrap_or((0, a_out));
    assert!(
        start + len <= a_out,
        "conv_transpose: crop beyond the output"
    );
    let mut kept = vec![0f32; batch * c_out * len * inner];
    kept.par_chunks_mut(len * inner)
        .enumerate()
        .for_each(|(plane, dst)| {
            let shift = bias.map_or(0.0, |b| b[plane % c_out]);
            let src = &out[plane * a_out * inner + start * inner..][..len * inner];
            affine_slice(dst, src, 1.0, shift, gelu_after);
        });
    (kept, [batch, c_out, len, inner])
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol * scale,
                "{what}: element {i}: {g} vs {w}"
            );
        }
    }

    fn randn(shape: &[usize], seed: u64) -> Tensor {
        // Deterministic, spread over the range activations take.
        let n: usize = shape.iter().product();
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let data: Vec<f32> = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 6.0
            })
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn exp_and_gelu_match_double_precision() {
        for i in -17_400..=17_600 {
            let x = i as f32 * 0.005;
            let (e, want) = (exp(x), (x as f64).exp());
            assert!(
                ((e as f64 - want) / want).abs() <= 4e-7,
                "exp({x}) = {e}, want {want}"
            );
        }
        assert_eq!(exp(-200.0), exp(-87.0));
        assert!(exp(-87.0) < 1e-37);
        for i in -24_000..=24_000 {
            let x = i as f32 * 0.0005;
            let want = 0.5 * x as f64 * erfc_f64(-(x as f64) / std::f64::consts::SQRT_2);
            let got = gelu(x) as f64;
            assert!(
                (got - want).abs() <= 1.5e-7 * (x.abs() as f64).max(1.0),
                "gelu({x}) = {got}, want {want}"
            );
        }
        let x = randn(&[4096], 1);
        let ours: Vec<f32> = values(&x).iter().map(|&v| gelu(v)).collect();
        assert_close(&ours, &values(&x.gelu_erf().unwrap()), 1e-6, "gelu");
    }

    /// erfc in f64: 1 - erf by its Maclaurin series for |x| < 3, a continued fraction beyond.
    fn erfc_f64(x: f64) -> f64 {
        if x.abs() < 3.0 {
            let mut term = x;
            let mut sum = x;
            for n in 1..200 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            1.0 - sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let z = x.abs();
            let mut f = z;
            for k in (1..80).rev() {
                f = z + (k as f64 / 2.0) / f;
            }
            let tail = (-z * z).exp() / (f * std::f64::consts::PI.sqrt());
            if x > 0.0 { tail } else { 2.0 - tail }
        }
    }

    #[test]
    fn softmax_and_glu_match_candle() {
        let x = randn(&[3, 1037], 2);
        let mut ours = values(&x);
        softmax_rows_in_place(&mut ours, 1037);
        let want = candle_nn::ops::softmax_last_dim(&x).unwrap();
        assert_close(&ours, &values(&want), 1e-6, "softmax");

        let x = randn(&[2, 6, 77], 3);
        let ours = glu(&values(&x), 2, 3, 77);
        let halves = x.chunk(2, 1).unwrap();
        let want = (&halves[0] * candle_nn::ops::sigmoid(&halves[1]).unwrap()).unwrap();
        assert_close(&ours, &values(&want), 1e-6, "glu");
    }

    fn plain_group_norm(x: &Tensor, groups: usize, w: &Tensor, b: &Tensor) -> Tensor {
        let dims = x.dims().to_vec();
        let flat = x.reshape((dims[0], groups, ())).unwrap();
        let mean = flat.mean_keepdim(2).unwrap();
        let centred = flat.broadcast_sub(&mean).unwrap();
        let var = centred.sqr().unwrap().mean_keepdim(2).unwrap();
        let normed = centred
            .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
            .unwrap()
            .reshape(dims.as_slice())
            .unwrap();
        let mut shape = vec![1; dims.len()];
        shape[1] = dims[1];
        normed
            .broadcast_mul(&w.reshape(shape.as_slice()).unwrap())
            .unwrap()
            .broadcast_add(&b.reshape(shape.as_slice()).unwrap())
            .unwrap()
    }

    #[test]
    fn group_norm_matches_candle_plain_and_per_row() {
        let (w, b) = (randn(&[8], 4), randn(&[8], 5));
        let x = (randn(&[2, 8, 300], 6) + 0.7).unwrap();
        let shape = NormShape {
            batch: 2,
            channels: 8,
            rows: 1,
            len: 300,
            groups: 4,
        };
        let want = plain_group_norm(&x, 4, &w, &b);
        let ours = group_norm(
            &values(&x),
            shape,
            &values(&w),
            &values(&b),
            Activation::None,
        );
        assert_close(&ours, &values(&want), 2e-6, "group norm");
        let ours = group_norm(
            &values(&x),
            shape,
            &values(&w),
            &values(&b),
            Activation::Gelu,
        );
        assert_close(
            &ours,
            &values(&want.gelu_erf().unwrap()),
            2e-6,
            "group norm + gelu",
        );

        // Per frequency row of [B, C, F, T]: GroupNorm(1) of each [C, T] slice.
        let x = randn(&[1, 8, 5, 40], 7);
        let shape = NormShape {
            batch: 1,
            channels: 8,
            rows: 5,
            len: 40,
            groups: 1,
        };
        let rows = x
            .permute((0, 2, 1, 3))
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((5, 8, 40))
            .unwrap();
        let want = plain_group_norm(&rows, 1, &w, &b)
            .reshape((1, 5, 8, 40))
            .unwrap()
            .permute((0, 2, 1, 3))
            .unwrap();
        let ours = group_norm(
            &values(&x),
            shape,
            &values(&w),
            &values(&b),
            Activation::None,
        );
        assert_close(&ours, &values(&want), 2e-6, "per-row group norm");
    }

    #[test]
    fn group_norm_tokens_matches_the_candle_version() {
        let x = (randn(&[2, 50, 8], 32) + 0.3).unwrap();
        let (w, b) = (randn(&[8], 33), randn(&[8], 34));
        let ours = group_norm_tokens(&values(&x), (2, 50, 8), &values(&w), &values(&b));
        // The definition with plain candle ops: statistics over all of an item's values.
        let flat = x.reshape((2, 400)).unwrap();
        let mean = flat.mean_keepdim(1).unwrap();
        let centred = flat.broadcast_sub(&mean).unwrap();
        let var = centred.sqr().unwrap().mean_keepdim(1).unwrap();
        let want = centred
            .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
            .unwrap()
            .reshape((2, 50, 8))
            .unwrap()
            .broadcast_mul(&w)
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        assert_close(&ours, &values(&want), 2e-6, "token group norm");
    }

    #[test]
    fn group_norm_glu_residual_is_the_dconv_tail() {
        let (w, b, scale) = (randn(&[8], 8), randn(&[8], 9), randn(&[4], 10));
        let x = randn(&[1, 8, 3, 50], 11);
        let residual = randn(&[1, 4, 3, 50], 12);
        let shape = NormShape {
            batch: 1,
            channels: 8,
            rows: 3,
            len: 50,
            groups: 1,
        };
        let mut ours = values(&residual);
        group_norm_glu_residual(
            &values(&x),
            shape,
            &values(&w),
            &values(&b),
            &values(&scale),
            &mut ours,
        );
        let rows = x
            .permute((0, 2, 1, 3))
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((3, 8, 50))
            .unwrap();
        let normed = plain_group_norm(&rows, 1, &w, &b);
        let halves = normed.chunk(2, 1).unwrap();
        let gated = (&halves[0] * candle_nn::ops::sigmoid(&halves[1]).unwrap()).unwrap();
        let gated = gated
            .reshape((1, 3, 4, 50))
            .unwrap()
            .permute((0, 2, 1, 3))
            .unwrap();
        let want = (residual
            + gated
                .broadcast_mul(&scale.reshape((1, 4, 1, 1)).unwrap())
                .unwrap())
        .unwrap();
        assert_close(&ours, &values(&want), 2e-6, "dconv tail");
    }

    #[test]
    fn fused_dconv_tail_equals_projection_then_norm_glu() {
        // Rows of 700 values span several tiles; the time branch is a single row.
        for (rows, len) in [(3, 700), (1, 5000)] {
            let (hidden, channels) = (5, 6);
            let h = randn(&[1, hidden, rows, len], 35);
            let w = randn(&[2 * channels, hidden, 1, 1], 36);
            let b = randn(&[2 * channels], 37);
            let (nw, nb, scale) = (
                randn(&[2 * channels], 38),
                randn(&[2 * channels], 39),
                randn(&[channels], 40),
            );
            let residual = randn(&[1, channels, rows, len], 41);
            let g = ConvGeometry {
                kernel: (1, 1),
                stride: (1, 1),
                padding: (0, 0),
                dilation_t: 1,
            };
            let (z, _) = conv2d(
                &values(&h),
                (1, hidden, rows, len),
                &values(&w),
                Some(&values(&b)),
                2 * channels,
                &g,
                Epilogue::None,
            );
            let shape = NormShape {
                batch: 1,
                channels: 2 * channels,
                rows,
                len,
                groups: 1,
            };
            let mut want = values(&residual);
            group_norm_glu_residual(
                &z,
                shape,
                &values(&nw),
                &values(&nb),
                &values(&scale),
                &mut want,
            );
            let mut ours = values(&residual);
            project_norm_glu_residual(
                &values(&h),
                (hidden, rows, len),
                &values(&w),
                &values(&b),
                (&values(&nw), &values(&nb)),
                &values(&scale),
                &mut ours,
            );
            assert_close(&ours, &want, 2e-6, "fused dconv tail");
        }
    }

    #[test]
    fn conv2d_matches_candle_for_every_geometry_htdemucs_uses() {
        // (shape [B, Cin, F, T], Cout, geometry): frequency conv, 3x3 rewrite, 1x1, a
        // dilated time conv per frequency row, and time-branch convs with a stride.
        let cases = [
            ([1, 4, 64, 9], 6, (8, 1), (4, 1), (2, 0), 1),
            ([2, 3, 7, 11], 5, (3, 3), (1, 1), (1, 1), 1),
            ([1, 5, 4, 13], 7, (1, 1), (1, 1), (0, 0), 1),
            ([1, 6, 3, 40], 2, (1, 3), (1, 1), (0, 4), 4),
            ([1, 2, 1, 1001], 8, (1, 8), (1, 4), (0, 2), 1),
            ([1, 8, 1, 99], 16, (1, 3), (1, 1), (0, 1), 1),
        ];
        for (shape, c_out, kernel, stride, padding, dilation_t) in cases {
            let [b, c_in, f, t] = shape;
            let x = randn(&shape, 13);
            let w = randn(&[c_out, c_in, kernel.0, kernel.1], 14);
            let bias = randn(&[c_out], 15);
            let g = ConvGeometry {
                kernel,
                stride,
                padding,
                dilation_t,
            };
            let (ours, out_shape) = conv2d(
                &values(&x),
                (b, c_in, f, t),
                &values(&w),
                Some(&values(&bias)),
                c_out,
                &g,
                Epilogue::None,
            );
            let want = if kernel.0 == 1 && stride.0 == 1 && padding.0 == 0 {
                // Along time only: a conv1d per frequency row.
                let rows = x
                    .permute((0, 2, 1, 3))
                    .unwrap()
                    .contiguous()
                    .unwrap()
                    .reshape((b * f, c_in, t))
                    .unwrap();
                let y = rows
                    .conv1d(&w.squeeze(2).unwrap(), padding.1, stride.1, dilation_t, 1)
                    .unwrap();
                let to = y.dim(2).unwrap();
                y.reshape((b, f, c_out, to))
                    .unwrap()
                    .permute((0, 2, 1, 3))
                    .unwrap()
            } else if stride == (1, 1) {
                x.conv2d(&w, padding.0, 1, 1, 1).unwrap()
            } else {
                // Strided along frequency: a conv1d over frequency per time step.
                let cols = x
                    .permute((0, 3, 1, 2))
                    .unwrap()
                    .contiguous()
                    .unwrap()
                    .reshape((b * t, c_in, f))
                    .unwrap();
                let y = cols
                    .conv1d(&w.squeeze(3).unwrap(), padding.0, stride.0, 1, 1)
                    .unwrap();
                let fo = y.dim(2).unwrap();
                y.reshape((b, t, c_out, fo))
                    .unwrap()
                    .permute((0, 2, 3, 1))
                    .unwrap()
            };
            let want = want
                .broadcast_add(&bias.reshape((1, c_out, 1, 1)).unwrap())
                .unwrap();
            assert_eq!(out_shape.as_slice(), want.dims(), "{shape:?} {kernel:?}");
            assert_close(
                &ours,
                &values(&want),
                1e-5,
                &format!("conv {shape:?} {kernel:?}"),
            );
        }
    }

    #[test]
    fn conv2d_blocks_larger_inputs_the_same_way() {
        // More output columns than one im2col block holds.
        let x = randn(&[1, 3, 2, 300_000], 16);
        let w = randn(&[4, 3, 1, 3], 17);
        let g = ConvGeometry {
            kernel: (1, 3),
            stride: (1, 1),
            padding: (0, 1),
            dilation_t: 1,
        };
        let (ours, _) = conv2d(
            &values(&x),
            (1, 3, 2, 300_000),
            &values(&w),
            None,
            4,
            &g,
            Epilogue::None,
        );
        let rows = x
            .squeeze(0)
            .unwrap()
            .permute((1, 0, 2))
            .unwrap()
            .contiguous()
            .unwrap();
        let want = rows
            .conv1d(&w.squeeze(2).unwrap(), 1, 1, 1, 1)
            .unwrap()
            .permute((1, 0, 2))
            .unwrap();
        assert_close(&ours, &values(&want), 1e-5, "blocked conv");
    }

    #[test]
    fn conv2d_epilogues_equal_the_separate_ops() {
        let x = randn(&[1, 6, 5, 70], 29);
        let w = randn(&[8, 6, 3, 3], 30);
        let bias = randn(&[8], 31);
        let g = ConvGeometry {
            kernel: (3, 3),
            stride: (1, 1),
            padding: (1, 1),
            dilation_t: 1,
        };
        let run = |e| {
            conv2d(
                &values(&x),
                (1, 6, 5, 70),
                &values(&w),
                Some(&values(&bias)),
                8,
                &g,
                e,
            )
        };
        let (plain, shape) = run(Epilogue::None);
        assert_eq!(shape, [1, 8, 5, 70]);
        let plain_t = Tensor::from_vec(plain.clone(), (1, 8, 5, 70), &Device::Cpu).unwrap();
        let (gelu_out, _) = run(Epilogue::Gelu);
        assert_close(
            &gelu_out,
            &values(&plain_t.gelu_erf().unwrap()),
            1e-6,
            "conv + gelu",
        );
        let (glu_out, shape) = run(Epilogue::Glu);
        assert_eq!(shape, [1, 4, 5, 70]);
        assert_close(&glu_out, &glu(&plain, 1, 4, 350), 1e-6, "conv + glu");
    }

    #[test]
    fn conv_transpose_matches_the_matmul_overlap_add() {
        for (shape, c_out, kernel, stride) in [
            ([1, 5, 9, 7], 3, 8, 4),
            ([2, 4, 33, 1], 6, 8, 4),
            ([1, 3, 5, 2], 2, 3, 1),
        ] {
            let [b, c_in, a, i] = shape;
            let x = randn(&shape, 18);
            let w = randn(&[c_in, c_out, kernel], 19);
            let bias = randn(&[c_out], 20);
            let (ours, out_shape) = conv_transpose(
                &values(&x),
                (b, c_in, a, i),
                &values(&w),
                Some(&values(&bias)),
                (c_out, kernel),
                stride,
                None,
                false,
            );
            // Along the axis for each inner position: candle's conv_transpose1d reference
            // lives in nn.rs; use its definition directly.
            let xs = x
                .permute((0, 3, 1, 2))
                .unwrap()
                .contiguous()
                .unwrap()
                .reshape((b * i, c_in, a))
                .unwrap();
            let y = crate::nn::conv_transpose1d(&xs, &w, stride).unwrap();
            let a_out = y.dim(2).unwrap();
            let want = y
                .reshape((b, i, c_out, a_out))
                .unwrap()
                .permute((0, 2, 3, 1))
                .unwrap()
                .broadcast_add(&bias.reshape((1, c_out, 1, 1)).unwrap())
                .unwrap();
            assert_eq!(out_shape.as_slice(), want.dims());
            assert_close(&ours, &values(&want), 1e-5, "conv transpose");
            // Cropped along the axis, with GELU.
            let (ours, out_shape) = conv_transpose(
                &values(&x),
                (b, c_in, a, i),
                &values(&w),
                Some(&values(&bias)),
                (c_out, kernel),
                stride,
                Some((1, a_out - 3)),
                true,
            );
            let want = want.narrow(2, 1, a_out - 3).unwrap().gelu_erf().unwrap();
            assert_eq!(out_shape.as_slice(), want.dims());
            assert_close(&ours, &values(&want), 1e-5, "cropped conv transpose + gelu");
        }
    }

    #[test]
    fn linear_and_attention_match_candle() {
        let x = randn(&[37, 16], 23);
        let w = randn(&[24, 16], 24);
        let b = randn(&[24], 25);
        let ours = linear(&values(&x), 37, &values(&w), (24, 16), Some(&values(&b)));
        let want = candle_nn::Linear::new(w.clone(), Some(b.clone()));
        let want = candle_core::Module::forward(&want, &x).unwrap();
        assert_close(&ours, &values(&want), 1e-5, "linear");

        let (lq, lk, heads, hd) = (29, 41, 3, 8);
        let q = (randn(&[lq, heads * hd], 26) * 0.3).unwrap();
        let k = randn(&[lk, heads * hd], 27);
        let v = randn(&[lk, heads * hd], 28);
        let ours = attention(&values(&q), &values(&k), &values(&v), (lq, lk), heads);
        let split = |t: &Tensor, l: usize| {
            t.reshape((l, heads, hd))
                .unwrap()
                .transpose(0, 1)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (qh, kh, vh) = (split(&q, lq), split(&k, lk), split(&v, lk));
        let scores = qh.matmul(&kh.transpose(1, 2).unwrap()).unwrap();
        let want = candle_nn::ops::softmax_last_dim(&scores)
            .unwrap()
            .matmul(&vh)
            .unwrap();
        let want = want
            .transpose(0, 1)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((lq, heads * hd))
            .unwrap();
        assert_close(&ours, &values(&want), 1e-5, "attention");
    }

    #[test]
    fn weights_are_kept_in_half_precision_only_when_exact() {
        let exact = Tensor::new(&[0.5f32, -2.0, 0.099_975_586, 1024.0], &Device::Cpu).unwrap();
        let kept = compact(exact.clone()).unwrap();
        assert_eq!(kept.dtype(), DType::F16);
        assert_eq!(values(&kept.to_dtype(DType::F32).unwrap()), values(&exact));
        assert_eq!(with_values(&kept, |v| v.to_vec()).unwrap(), values(&exact));
        // 0.1 is not an f16: the weight stays f32 and bit-exact.
        let inexact = Tensor::new(&[0.5f32, 0.1], &Device::Cpu).unwrap();
        let kept = compact(inexact.clone()).unwrap();
        assert_eq!(kept.dtype(), DType::F32);
        assert_eq!(values(&kept), values(&inexact));
    }

    #[test]
    fn pointwise_and_strided_gemm_agree_with_candle_matmul() {
        let a = randn(&[7, 5], 21);
        let b = randn(&[5, 9], 22);
        let mut c = vec![1f32; 7 * 9];
        gemm(
            7,
            9,
            5,
            &mut c,
            (9, 1),
            true,
            &values(&a),
            (5, 1),
            &values(&b),
            (9, 1),
        );
        let want = (a.matmul(&b).unwrap() + 1.0).unwrap();
        assert_close(&c, &values(&want), 1e-6, "gemm");
        // A transposed operand through strides.
        let at = a.t().unwrap().contiguous().unwrap();
        let mut c = vec![0f32; 7 * 9];
        gemm(
            7,
            9,
            5,
            &mut c,
            (9, 1),
            false,
            &values(&at),
            (1, 7),
            &values(&b),
            (9, 1),
        );
        assert_close(&c, &values(&a.matmul(&b).unwrap()), 1e-6, "gemm transposed");
    }
}
