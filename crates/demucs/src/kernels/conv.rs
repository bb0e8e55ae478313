//! Convolutions and transposed convolutions as blocked im2col and gemm.

use rayon::prelude::*;

use super::{
    Matrix, SharedOut,
    bf16::{self, Packed},
    math::{gelu_slice, glu_slice},
    norm::shift_in_place,
    threads, weight_times,
};

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
    weight: Matrix,
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
    weight.assert_shape(c_out, patch, "conv2d");
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
        || (Vec::new(), Vec::new(), Packed::default()),
        |(cols, tile, packed): &mut (Vec<f32>, Vec<f32>, Packed), task| {
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
                weight_times(
                    weight,
                    (c_in, 1),
                    (c_out, w, c_in),
                    tile,
                    bias.is_some(),
                    (&x[j0..], columns),
                    packed,
                    false,
                );
            } else if let Matrix::Bf16(weight) = weight {
                // The im2col goes straight into the packed bf16 panels, a pair of rows at
                // a time: no f32 copy of it is written and read back.
                packed.repack_right_rows((patch, w), |p, row| {
                    let (ci, k) = (p / (kf * kt), p % (kf * kt));
                    let plane = &x[ci * f_in * t_in..][..f_in * t_in];
                    fill_patch_row(row, plane, (f_in, t_in), t_out, g, (k / kt, k % kt), j0);
                });
                bf16::matmul(weight, packed, tile, w, bias.is_some(), false);
            } else {
                cols.resize(patch * w, 0.0);
                for (p, row) in cols.chunks_mut(w).enumerate() {
                    let (ci, k) = (p / (kf * kt), p % (kf * kt));
                    let plane = &x[ci * f_in * t_in..][..f_in * t_in];
                    fill_patch_row(row, plane, (f_in, t_in), t_out, g, (k / kt, k % kt), j0);
                }
                weight_times(
                    weight,
                    (patch, 1),
                    (c_out, w, patch),
                    tile,
                    bias.is_some(),
                    (cols, w),
                    packed,
                    false,
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
    weight: Matrix,
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
    let a_out = (axis - 1) * stride + kernel;
    let columns = axis * inner;
    let rows = c_out * kernel;
    weight.assert_shape(rows, c_in, "conv_transpose");
    let (start, len) = crop.unwrap_or((0, a_out));
    assert!(
        start + len <= a_out,
        "conv_transpose: crop beyond the output"
    );
    let mut out = vec![0f32; batch * c_out * len * inner];
    // Tasks take a block of input positions and a run of the inner values, about 512 KB of
    // columns, so that the product and its overlap-add stay in L2: whole runs of positions
    // when `inner` is short (time), one position and part of its run when it is long
    // (frequency, with time riding along).
    let budget = ((1 << 17) / rows.max(1)).max(32);
    let (per_block, chunk) = if inner >= budget {
        (1, (budget / 32 * 32).max(32).min(inner))
    } else {
        ((budget / inner).max(1), inner)
    };
    let blocks = axis.div_ceil(per_block);
    let chunks = inner.div_ceil(chunk);
    let shared = SharedOut(out.as_mut_ptr(), out.len());
    // A block writes output positions a0 * stride .. (a0 + P - 1) * stride + K, reaching into
    // the next blocks' ranges; blocks `phases` apart never meet, so they run together, one
    // phase after the other. With HTDemucs' K = 2 * stride that is the even blocks, then the
    // odd ones, and every output value receives its two taps as a sequential overlap-add
    // would.
    let phases = 1 + kernel.saturating_sub(stride).div_ceil(per_block * stride);
    for b in 0..batch {
        let x = &x[b * c_in * columns..][..c_in * columns];
        for phase in 0..phases {
            let tasks: Vec<(usize, usize)> = (phase..blocks)
                .step_by(phases)
                .flat_map(|block| (0..chunks).map(move |c| (block, c)))
                .collect();
            tasks.into_par_iter().for_each_init(
                || (Vec::new(), Packed::default()),
                |(cols, packed): &mut (Vec<f32>, Packed), (block, c)| {
                    let a0 = block * per_block;
                    let positions = per_block.min(axis - a0);
                    let (i0, run) = (c * chunk, chunk.min(inner - c * chunk));
                    // One position with part of its run, or whole runs: either way each input
                    // channel's values are one stretch of x.
                    let width = positions * run;
                    cols.resize(rows * width, 0.0);
                    // cols[(co, k), j] = sum_ci w[ci, co, k] x[ci, a0 * inner + i0 + j]: the
                    // weight read as a [(co, k), ci] matrix is its own memory with strides
                    // (1, Cout * K).
                    weight_times(
                        weight,
                        (1, rows),
                        (rows, width, c_in),
                        cols,
                        false,
                        (&x[a0 * inner + i0..], columns),
                        packed,
                        false,
                    );
                    let (base, total) = shared.base();
                    for co in 0..c_out {
                        let plane = (b * c_out + co) * len;
                        for k in 0..kernel {
                            let src = &cols[(co * kernel + k) * width..][..width];
                            for (p, src) in src.chunks_exact(run).enumerate() {
                                let at = (a0 + p) * stride + k;
                                if at < start || at >= start + len {
                                    continue;
                                }
                                let offset = (plane + at - start) * inner + i0;
                                assert!(offset + run <= total, "conv_transpose: out of bounds");
                                // SAFETY: in bounds (checked), and no other task writes these
                                // values in this phase (the blocks of one phase are disjoint
                                // and the runs do not overlap).
                                let dst = unsafe {
                                    std::slice::from_raw_parts_mut(base.add(offset), run)
                                };
                                for (o, v) in dst.iter_mut().zip(src) {
                                    *o += v;
                                }
                            }
                        }
                    }
                },
            );
        }
    }
    out.par_chunks_mut(len * inner)
        .enumerate()
        .for_each(|(plane, values)| {
            let shift = bias.map_or(0.0, |b| b[plane % c_out]);
            shift_in_place(values, shift, gelu_after);
        });
    (out, [batch, c_out, len, inner])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::*;
    use crate::kernels::*;
    use candle_core::{Device, Tensor};

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
                Matrix::F32(&values(&w)),
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
            Matrix::F32(&values(&w)),
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
                Matrix::F32(&values(&w)),
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
                Matrix::F32(&values(&w)),
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
                Matrix::F32(&values(&w)),
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

    fn abs(v: &[f32]) -> Vec<f32> {
        v.iter().map(|x| x.abs()).collect()
    }

    /// Every HTDemucs geometry at its real channel counts, with odd lengths: the bf16
    /// convolutions stay within bf16 rounding of the f32 ones.
    #[test]
    fn bf16_convolutions_stay_within_rounding_of_f32() {
        if !bf16::supported() {
            eprintln!("this CPU has no avx512_bf16: the bf16 path is not built; skipped");
            return;
        }
        let cases = [
            // The first frequency layer (4 -> 48) and a deeper one, (8, 1) kernels stride 4.
            ([1, 4, 64, 37], 48, (8, 1), (4, 1), (2, 0), 1),
            ([1, 96, 32, 13], 192, (8, 1), (4, 1), (2, 0), 1),
            // A decoder's 3x3 rewrite at 384 channels (doubled for its GLU).
            ([1, 384, 8, 21], 768, (3, 3), (1, 1), (1, 1), 1),
            // A DConv's dilated k = 3 per frequency row, 48 -> 6.
            ([1, 48, 5, 101], 6, (1, 3), (1, 1), (0, 2), 2),
            // The time branch's first stride-4 layer, and the bottom 1x1 384 -> 512.
            ([1, 2, 1, 1001], 48, (1, 8), (1, 4), (0, 2), 1),
            ([1, 384, 1, 333], 512, (1, 1), (1, 1), (0, 0), 1),
        ];
        for (shape, c_out, kernel, stride, padding, dilation_t) in cases {
            let [b, c_in, f, t] = shape;
            let patch = c_in * kernel.0 * kernel.1;
            let x = values(&randn(&shape, 61));
            let w = values(&(randn(&[c_out, patch], 62) * (1.0 / patch as f64).sqrt()).unwrap());
            let bias = values(&randn(&[c_out], 63));
            let g = ConvGeometry {
                kernel,
                stride,
                padding,
                dilation_t,
            };
            let packed = Packed::left(&w, (c_out, patch), (patch, 1));
            let run = |x: &[f32], w: Matrix, bias: Option<&[f32]>| {
                conv2d(x, (b, c_in, f, t), w, bias, c_out, &g, Epilogue::None).0
            };
            let exact = run(&x, Matrix::F32(&w), Some(&bias));
            let fast = run(&x, Matrix::Bf16(&packed), Some(&bias));
            let magnitude = run(&abs(&x), Matrix::F32(&abs(&w)), None);
            for (i, ((f, e), m)) in fast.iter().zip(&exact).zip(&magnitude).enumerate() {
                assert!(
                    (f - e).abs() <= m * 2f32.powi(-8) + 1e-5,
                    "conv {shape:?} {kernel:?} element {i}: {f} vs {e} (bound {m})"
                );
            }
            assert_ne!(fast, exact, "the bf16 path must have run");
        }
        // The frequency decoder's transposed convolution, 384 -> 192 along 8 bins.
        let (c_in, c_out, kernel, axis, inner) = (384, 192, 8, 8, 21);
        let x = values(&randn(&[1, c_in, axis, inner], 64));
        let w = values(&(randn(&[c_in, c_out, kernel], 65) * 0.05).unwrap());
        let rows = c_out * kernel;
        let packed = Packed::left(&w, (rows, c_in), (1, rows));
        let run = |x: &[f32], w: Matrix| {
            conv_transpose(
                x,
                (1, c_in, axis, inner),
                w,
                None,
                (c_out, kernel),
                4,
                None,
                false,
            )
            .0
        };
        let exact = run(&x, Matrix::F32(&w));
        let fast = run(&x, Matrix::Bf16(&packed));
        let magnitude = run(&abs(&x), Matrix::F32(&abs(&w)));
        for ((f, e), m) in fast.iter().zip(&exact).zip(&magnitude) {
            assert!(
                (f - e).abs() <= m * 2f32.powi(-8) + 1e-5,
                "conv_transpose: {f} vs {e}"
            );
        }
    }
}
