//! GroupNorm, fused with what follows it: GELU, or the GLU and residual of a DConv tail.

use rayon::prelude::*;

use super::{
    SharedOut, gemm_single,
    math::{gelu, sigmoid},
};

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

multiversion! {
    /// `values += shift`, then GELU when asked: [`affine_slice`] with a scale of 1, in place.
    pub(super) fn shift_in_place(values: &mut [f32], shift: f32, gelu_after: bool) {
        if gelu_after {
            for v in values.iter_mut() {
                *v = gelu(*v + shift);
            }
        } else {
            for v in values.iter_mut() {
                *v += shift;
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
    fn layer_norm_row(out: &mut [f32], x: &[f32], weight: &[f32], bias: &[f32]) {
        // Two passes over a row that stays in L1: the mean, then the variance of the
        // centred values (no cancellation), each summed in 16 lanes.
        let n = x.len().max(1) as f32;
        let mean = lane_sum(x, |v| v) / n;
        let var = lane_sum(x, |v| (v - mean) * (v - mean)) / n;
        let rstd = 1.0 / (var + 1e-5).sqrt();
        for (((o, &v), &w), &b) in out.iter_mut().zip(x).zip(weight).zip(bias) {
            *o = (v - mean) * rstd * w + b;
        }
    }
}

/// The first and second moments of a stretch of hidden columns: `sum` of each hidden
/// channel and the Gram matrix `gram[k * hidden + l]` of the channels, in f64.
struct HiddenMoments {
    sum: Vec<f64>,
    gram: Vec<f64>,
}

impl HiddenMoments {
    fn zero(hidden: usize) -> Self {
        Self {
            sum: vec![0.0; hidden],
            gram: vec![0.0; hidden * hidden],
        }
    }

    /// Of columns `j0..j0 + w` of `h` `[hidden, columns]`.
    fn of(h: &[f32], hidden: usize, columns: usize, j0: usize, w: usize) -> Self {
        let mut m = Self::zero(hidden);
        let line = |k: usize| &h[k * columns + j0..][..w];
        for k in 0..hidden {
            m.sum[k] = lane_sum(line(k), |v| v) as f64;
            for l in k..hidden {
                let g = dot(line(k), line(l)) as f64;
                m.gram[k * hidden + l] = g;
                m.gram[l * hidden + k] = g;
            }
        }
        m
    }

    fn add(&mut self, other: &Self) {
        self.sum
            .iter_mut()
            .zip(&other.sum)
            .for_each(|(a, b)| *a += b);
        self.gram
            .iter_mut()
            .zip(&other.gram)
            .for_each(|(a, b)| *a += b);
    }
}

multiversion! {
    fn dot_into(a: &[f32], b: &[f32], out: &mut f32) {
        let mut acc = [0f32; 16];
        let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
        let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
        for (x, y) in ca.zip(cb) {
            for ((a, &x), &y) in acc.iter_mut().zip(x).zip(y) {
                *a += x * y;
            }
        }
        *out = acc.iter().sum::<f32>() + tail;
    }
}

multiversion! {
    /// `out = gram * w` for a symmetric `[n, n]` `gram`.
    fn gram_times(gram: &[f64], w: &[f64], out: &mut [f64]) {
        let n = w.len();
        out.fill(0.0);
        for (k, &wk) in w.iter().enumerate() {
            for (o, &g) in out.iter_mut().zip(&gram[k * n..][..n]) {
                *o += g * wk;
            }
        }
    }
}

fn dot64(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `a . b` in 16 lanes.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut out = 0.0;
    dot_into(a, b, &mut out);
    out
}

/// `sum(f(v))` over `x`, in 16 lanes so that it vectorises.
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `torch.nn.LayerNorm(width)` (`eps` 1e-5) over each row of `x` `[rows, width]`.
pub fn layer_norm_rows(x: &[f32], width: usize, weight: &[f32], bias: &[f32]) -> Vec<f32> {
    assert!(
        weight.len() == width && bias.len() == width && x.len().is_multiple_of(width.max(1)),
        "layer_norm: bad shapes"
    );
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(width * ROWS_PER_TASK)
        .zip(x.par_chunks(width * ROWS_PER_TASK))
        .for_each(|(out, x)| {
            for (out, x) in out.chunks_mut(width).zip(x.chunks(width)) {
                layer_norm_row(out, x, weight, bias);
            }
        });
    out
}

multiversion! {
    fn add_scaled_row(out: &mut [f32], x: &[f32], y: &[f32], scale: &[f32]) {
        for (((o, &x), &y), &s) in out.iter_mut().zip(x).zip(y).zip(scale) {
            *o = x + s * y;
        }
    }
}

/// A residual with LayerScale, `x + scale * y` over rows `[rows, width]` (`scale` `[width]`),
/// in one parallel pass.
pub fn add_scaled_rows(x: &[f32], y: &[f32], scale: &[f32]) -> Vec<f32> {
    let width = scale.len().max(1);
    assert!(
        x.len() == y.len() && x.len().is_multiple_of(width),
        "add_scaled: bad shapes"
    );
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(width * ROWS_PER_TASK)
        .zip(x.par_chunks(width * ROWS_PER_TASK))
        .zip(y.par_chunks(width * ROWS_PER_TASK))
        .for_each(|((out, x), y)| {
            for ((out, x), y) in out
                .chunks_mut(width)
                .zip(x.chunks(width))
                .zip(y.chunks(width))
            {
                add_scaled_row(out, x, y, scale);
            }
        });
    out
}

/// Token rows a task takes: enough to outweigh a task's cost, few enough to share out.
const ROWS_PER_TASK: usize = 64;

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
    // The GroupNorm's statistics come from the hidden values, not from the projection:
    // with z_t = W h_t + b, sum z = sum_c (w_c . S + L b_c) and sum z^2 =
    // sum_c (w_c^T G w_c + 2 b_c w_c . S + L b_c^2), where S = sum_t h_t and G = sum_t h_t
    // h_t^T. G costs hidden^2 / 2 products a column against the projection's 2C hidden
    // (2C = 16 hidden in HTDemucs), so the projection runs once, in the pass that uses it.
    let partial: Vec<HiddenMoments> = (0..tiles)
        .into_par_iter()
        .map(|tile| {
            let (_, j0, w) = tile_range(tile);
            HiddenMoments::of(h, hidden, columns, j0, w)
        })
        .collect();
    let weight64: Vec<f64> = weight.iter().map(|&w| w as f64).collect();
    let stats: Vec<(f32, f32)> = partial
        .chunks(per_row)
        .map(|row| {
            let mut moments = HiddenMoments::zero(hidden);
            row.iter().for_each(|m| moments.add(m));
            // The quadratic forms are c2 hidden^2 products a row: in parallel, and in
            // vectorised f64, or they would cost the deepest layers more than they save.
            let (s, q) = weight64
                .par_chunks(hidden * 32)
                .zip(bias.par_chunks(32))
                .map(|(ws, bs)| {
                    let mut gw = vec![0f64; hidden];
                    let (mut s, mut q) = (0.0, 0.0);
                    for (w, &b) in ws.chunks(hidden).zip(bs) {
                        let b = b as f64;
                        gram_times(&moments.gram, w, &mut gw);
                        let ws = dot64(w, &moments.sum);
                        s += ws + len as f64 * b;
                        q += dot64(w, &gw) + 2.0 * b * ws + len as f64 * b * b;
                    }
                    (s, q)
                })
                .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
            let n = (c2 * len) as f64;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::*;
    use crate::kernels::*;
    use candle_core::Tensor;

    #[test]
    fn layer_norm_and_scaled_residual_match_candle() {
        let (rows, width) = (203, 512);
        let x = (randn(&[rows, width], 71) * 3.0).unwrap();
        let x = (x + 1.5).unwrap();
        let w = randn(&[width], 72);
        let b = randn(&[width], 73);
        let ours = layer_norm_rows(&values(&x), width, &values(&w), &values(&b));
        let norm = candle_nn::LayerNorm::new(w.clone(), b.clone(), 1e-5);
        let want = candle_core::Module::forward(&norm, &x).unwrap();
        assert_close(&ours, &values(&want), 1e-5, "layer_norm");

        let y = randn(&[rows, width], 74);
        let ours = add_scaled_rows(&values(&x), &values(&y), &values(&w));
        let want = (&x + y.broadcast_mul(&w).unwrap()).unwrap();
        assert_close(&ours, &values(&want), 1e-6, "add_scaled");
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
                Matrix::F32(&values(&w)),
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
}
