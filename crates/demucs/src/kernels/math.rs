//! Scalar math that vectorises: exp, erfc, sigmoid, GELU, GLU and softmax.

use rayon::prelude::*;

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
    pub(super) fn gelu_slice(values: &mut [f32]) {
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
    pub(super) fn glu_slice(out: &mut [f32], a: &[f32], b: &[f32]) {
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
    /// The numerators of a row's softmax, `e^(v - max)`, in place; their sum in `sum`.
    pub(super) fn exp_shifted_row(row: &mut [f32], sum: &mut f32) {
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
        let mut total: f32 = 0.0;
        for v in chunks.into_remainder() {
            *v = exp(*v - max);
            total += *v;
        }
        *sum = total + sums.iter().sum::<f32>();
    }
}

multiversion! {
    fn scale_slice(values: &mut [f32], factor: f32) {
        for v in values.iter_mut() {
            *v *= factor;
        }
    }
}

pub(super) fn softmax_row(row: &mut [f32]) {
    let mut sum = 0.0;
    exp_shifted_row(row, &mut sum);
    scale_slice(row, 1.0 / sum);
}

/// Softmax over every row of `row_len` values, in place.
pub fn softmax_rows_in_place(values: &mut [f32], row_len: usize) {
    assert_eq!(values.len() % row_len.max(1), 0, "softmax: ragged rows");
    values.par_chunks_mut(row_len.max(1)).for_each(softmax_row);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::*;

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
}
