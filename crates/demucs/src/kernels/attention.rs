//! Linear layers and multi-head attention.

use rayon::prelude::*;

use super::{SharedOut, gemm, gemm_raw, gemm_single, math::softmax_row};

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
}
