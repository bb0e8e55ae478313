//! Linear layers and multi-head attention.

use rayon::prelude::*;

use super::{
    Matrix, SharedOut,
    bf16::{self, Packed},
    gemm, gemm_raw, gemm_single,
    math::exp_shifted_row,
};

/// `x [rows, in] * weight^T + bias` for torch's `[out, in]` weight layout: `[rows, out]`.
/// A `bf16` weight is packed as the right operand `weight^T`.
pub fn linear(
    x: &[f32],
    rows: usize,
    weight: Matrix,
    (d_out, d_in): (usize, usize),
    bias: Option<&[f32]>,
) -> Vec<f32> {
    assert_eq!(x.len(), rows * d_in, "linear: bad input length");
    weight.assert_shape(d_out, d_in, "linear");
    let mut out = vec![0f32; rows * d_out];
    if let Some(bias) = bias {
        out.par_chunks_mut(d_out)
            .for_each(|row| row.copy_from_slice(bias));
    }
    match weight {
        Matrix::F32(w) => gemm(
            rows,
            d_out,
            d_in,
            &mut out,
            (d_out, 1),
            bias.is_some(),
            x,
            (d_in, 1),
            w,
            (1, d_in),
        ),
        Matrix::Bf16(w) => {
            let x = Packed::left(x, (rows, d_in), (d_in, 1));
            bf16::matmul(&x, w, &mut out, d_out, bias.is_some(), true);
        }
    }
    out
}

/// Multi-head attention without masks over packed projections: `q` `[lq, heads * hd]`,
/// `k` and `v` `[lk, heads * hd]` (queries already scaled). Returns `[lq, heads * hd]`.
/// With `bf16`, both multiplies take `bf16` inputs (the softmax stays `f32`).
///
/// Tasks take one head and a block of query rows each: the block's scores (about 1 MB) are
/// computed, exponentiated and multiplied by the values while they are still in L2, and no
/// `lq x lk` matrix is ever written. The softmax is never normalised in place: each output
/// row is divided by its sum after the product, `hd` values instead of `lk`. In bf16 the
/// exponentials go straight into the packed operand of the second product, so the block
/// is read once after the first product and never rewritten in f32. A whole row of keys
/// fits a block at HTDemucs' sizes, so no running maximum (online softmax) is needed.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (lq, lk): (usize, usize),
    heads: usize,
    bf16: bool,
) -> Vec<f32> {
    let dim = q.len() / lq.max(1);
    let hd = dim / heads.max(1);
    assert_eq!(q.len(), lq * dim, "attention: bad query length");
    assert_eq!(k.len(), lk * dim, "attention: bad key length");
    assert_eq!(v.len(), lk * dim, "attention: bad value length");
    let mut out = vec![0f32; lq * dim];
    if lq == 0 || lk == 0 {
        return out;
    }
    // Each head's keys (k_h^T, k read with strides (1, dim)) and values, packed once for all
    // its blocks of queries.
    let packed: Vec<(Packed, Packed)> = if bf16 {
        (0..heads)
            .into_par_iter()
            .map(|h| {
                (
                    Packed::right(&k[h * hd..], (hd, lk), (1, dim)),
                    Packed::right(&v[h * hd..], (lk, hd), (dim, 1)),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    // About 1 MB of scores per task, which stays in L2 from the product that makes it to
    // the one that uses it (the scores of a whole head would be 29 MB at 2688 tokens).
    let budget = 1 << 18;
    let rows = (budget / lk.max(1)).clamp(8, 1024).min(lq.max(1));
    let blocks = lq.div_ceil(rows);
    let shared = SharedOut(out.as_mut_ptr(), out.len());
    (0..heads * blocks).into_par_iter().for_each_init(
        || (Vec::new(), Packed::default(), Vec::new()),
        |(scores, left, sums): &mut (Vec<f32>, Packed, Vec<f32>), task| {
            let (h, block) = (task / blocks, task % blocks);
            let (r0, n) = (block * rows, rows.min(lq - block * rows));
            let offset = h * hd;
            let q_block = &q[r0 * dim + offset..];
            scores.resize(n * lk, 0.0);
            // scores = q_h k_h^T: k_h^T is k read with strides (1, dim).
            if let Some((keys, _)) = packed.get(h) {
                left.repack_left(q_block, (n, hd), (dim, 1));
                bf16::matmul(left, keys, scores, lk, false, false);
            } else {
                gemm_single(
                    n,
                    lk,
                    hd,
                    scores,
                    (lk, 1),
                    false,
                    q_block,
                    (dim, 1),
                    &k[offset..],
                    (1, dim),
                );
            }
            let bf16_packs = packed.get(h);
            if bf16_packs.is_some() {
                // Unnormalised, and straight into the bf16 operand of the product with the
                // values: each output row is divided by its sum after the product, which
                // touches hd values a row instead of lk.
                left.repack_left_exp_shifted(scores, (n, lk), sums);
            } else {
                // Unnormalised here too: the product's rows are divided by their sums.
                sums.clear();
                for row in scores.chunks_mut(lk) {
                    let mut sum = 0.0;
                    exp_shifted_row(row, &mut sum);
                    sums.push(sum);
                }
            }
            let (base, len) = shared.base();
            let start = r0 * dim + offset;
            let reach = (n - 1) * dim + hd;
            assert!(start + reach <= len, "attention: output out of bounds");
            // SAFETY: in bounds (checked); of the values in reach, this product writes only
            // rows r0..r0 + n of columns offset..offset + hd, which no other task touches (other
            // heads interleave their columns but write none of these).
            unsafe {
                let dst = (base.add(start), reach);
                if let Some((_, values)) = bf16_packs {
                    bf16::matmul_raw(left, values, dst, dim, false, false);
                } else {
                    gemm_raw(
                        n,
                        hd,
                        lk,
                        dst,
                        (dim, 1),
                        false,
                        scores,
                        (lk, 1),
                        &v[offset..],
                        (dim, 1),
                        false,
                    );
                }
                for (r, sum) in sums.iter().enumerate() {
                    // SAFETY: this task's own row r0 + r, columns offset..offset + hd.
                    let row = shared.row(r0 + r, dim, offset, hd);
                    let inv = 1.0 / sum;
                    row.iter_mut().for_each(|v| *v *= inv);
                }
            }
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::*;
    use candle_core::Tensor;

    #[test]
    fn linear_and_attention_match_candle() {
        let x = randn(&[37, 16], 23);
        let w = randn(&[24, 16], 24);
        let b = randn(&[24], 25);
        let ours = linear(
            &values(&x),
            37,
            Matrix::F32(&values(&w)),
            (24, 16),
            Some(&values(&b)),
        );
        let want = candle_nn::Linear::new(w.clone(), Some(b.clone()));
        let want = candle_core::Module::forward(&want, &x).unwrap();
        assert_close(&ours, &values(&want), 1e-5, "linear");

        let (lq, lk, heads, hd) = (29, 41, 3, 8);
        let q = (randn(&[lq, heads * hd], 26) * 0.3).unwrap();
        let k = randn(&[lk, heads * hd], 27);
        let v = randn(&[lk, heads * hd], 28);
        let ours = attention(
            &values(&q),
            &values(&k),
            &values(&v),
            (lq, lk),
            heads,
            false,
        );
        let want = plain_attention(&q, &k, &v, heads);
        assert_close(&ours, &values(&want), 1e-5, "attention");
    }

    fn plain_attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize) -> Tensor {
        let (lq, dim) = q.dims2().unwrap();
        let hd = dim / heads;
        let split = |t: &Tensor| {
            let l = t.dim(0).unwrap();
            t.reshape((l, heads, hd))
                .unwrap()
                .transpose(0, 1)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (qh, kh, vh) = (split(q), split(k), split(v));
        let scores = qh.matmul(&kh.transpose(1, 2).unwrap()).unwrap();
        candle_nn::ops::softmax_last_dim(&scores)
            .unwrap()
            .matmul(&vh)
            .unwrap()
            .transpose(0, 1)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((lq, dim))
            .unwrap()
    }

    /// The transformer's shapes (512 wide, 8 heads, feed-forward 2048) with odd token
    /// counts: bf16 stays within its rounding bound of the f32 kernels.
    #[test]
    fn bf16_linear_and_attention_stay_within_rounding_of_f32() {
        if !bf16::supported() {
            eprintln!("this CPU has no avx512_bf16: the bf16 path is not built; skipped");
            return;
        }
        let (rows, d_in, d_out) = (101, 512, 2048);
        let x = values(&(randn(&[rows, d_in], 51) * 0.5).unwrap());
        let w = values(&(randn(&[d_out, d_in], 52) * 0.05).unwrap());
        let b = values(&randn(&[d_out], 53));
        let exact = linear(&x, rows, Matrix::F32(&w), (d_out, d_in), Some(&b));
        let packed = Packed::right(&w, (d_in, d_out), (1, d_in));
        let fast = linear(&x, rows, Matrix::Bf16(&packed), (d_out, d_in), Some(&b));
        // |x| |w|^T bounds each product sum; bf16 inputs are off by 2^-9 each.
        let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
        let magnitude = linear(&abs(&x), rows, Matrix::F32(&abs(&w)), (d_out, d_in), None);
        for ((f, e), m) in fast.iter().zip(&exact).zip(&magnitude) {
            assert!(
                (f - e).abs() <= m * 2f32.powi(-8) + 1e-5,
                "linear: {f} vs {e}"
            );
        }
        assert_ne!(fast, exact, "the bf16 path must have run");

        // 1344 time tokens attending to 2688 frequency tokens, and an odd short case.
        for (lq, lk) in [(1344, 2688), (37, 53)] {
            let heads = 8;
            let q = values(&(randn(&[lq, 512], 54) * 0.125).unwrap());
            let k = values(&randn(&[lk, 512], 55));
            let v = values(&randn(&[lk, 512], 56));
            let exact = attention(&q, &k, &v, (lq, lk), heads, false);
            let fast = attention(&q, &k, &v, (lq, lk), heads, true);
            // Scores are off by at most |q||k| 2^-8 (~0.1 here), which moves the softmax
            // weights by about that relative amount; the outputs are weighted means of
            // values of magnitude <= 3.
            let worst = fast
                .iter()
                .zip(&exact)
                .map(|(f, e)| (f - e).abs())
                .fold(0f32, f32::max);
            let mean = fast
                .iter()
                .zip(&exact)
                .map(|(f, e)| (f - e).abs())
                .sum::<f32>()
                / fast.len() as f32;
            assert!(
                worst < 0.1 && mean < 0.01,
                "attention {lq}x{lk}: worst {worst}, mean {mean}"
            );
        }
    }
}
