//! The primitive layers and activations every HTDemucs block is built from.
//!
//! Every hot operation of the forward pass goes through this module, so that faster
//! kernels can replace a body here without touching the model code. Candle has no per-axis
//! conv2d stride, so the `(k, 1)` frequency convolutions run as 1-D convolutions over the
//! frequency axis with time folded into the batch.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// Exact (erf) GELU, as `torch.nn.functional.gelu` computes it by default.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    x.gelu_erf()
}

/// `torch.nn.functional.glu(x, dim)`: first half times the sigmoid of the second half.
pub fn glu(x: &Tensor, dim: usize) -> Result<Tensor> {
    let halves = x.chunk(2, dim)?;
    halves[0].mul(&candle_nn::ops::sigmoid(&halves[1])?)
}

/// `torch.nn.Conv1d`.
#[derive(Debug, Clone)]
pub struct Conv1d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
    dilation: usize,
}

impl Conv1d {
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get((c_out, c_in, kernel), "weight")?;
        let bias = Some(vb.get(c_out, "bias")?);
        Ok(Self {
            weight,
            bias,
            stride,
            padding,
            dilation,
        })
    }

    pub fn kernel_size(&self) -> usize {
        self.weight.dim(2).unwrap_or(0)
    }
}

impl Module for Conv1d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = if self.kernel_size() == 1 && self.stride == 1 && self.padding == 0 {
            pointwise(x, &self.weight.squeeze(2)?)?
        } else {
            x.conv1d(&self.weight, self.padding, self.stride, self.dilation, 1)?
        };
        add_channel_bias(y, self.bias.as_ref())
    }
}

/// `torch.nn.Conv2d` with the shapes HTDemucs uses: `(k, 1)` kernels strided along
/// frequency only, and square stride-1 kernels (the decoder's 3x3 rewrite).
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride_freq: usize,
    padding: (usize, usize),
}

impl Conv2d {
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: (usize, usize),
        stride_freq: usize,
        padding: (usize, usize),
        vb: VarBuilder,
    ) -> Result<Self> {
        if kernel.1 != 1 && (stride_freq != 1 || padding.0 != padding.1) {
            candle_core::bail!("conv2d: only (k,1) kernels may have a frequency stride")
        }
        let weight = vb.get((c_out, c_in, kernel.0, kernel.1), "weight")?;
        let bias = Some(vb.get(c_out, "bias")?);
        Ok(Self {
            weight,
            bias,
            stride_freq,
            padding,
        })
    }
}

impl Module for Conv2d {
    /// `x`: `[B, C, F, T]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, kh, kw) = self.weight.dims4()?;
        let y = if kh == 1 && kw == 1 && self.stride_freq == 1 {
            let (b, c, f, t) = x.dims4()?;
            let w = self.weight.reshape((self.weight.dim(0)?, c))?;
            pointwise(&x.reshape((b, c, f * t))?, &w)?.reshape((b, (), f, t))?
        } else if kw == 1 {
            let w = self.weight.squeeze(3)?;
            along_freq(x, |x| x.conv1d(&w, self.padding.0, self.stride_freq, 1, 1))?
        } else {
            x.conv2d(&self.weight, self.padding.0, 1, 1, 1)?
        };
        add_channel_bias(y, self.bias.as_ref())
    }
}

/// `torch.nn.ConvTranspose1d` without padding.
#[derive(Debug, Clone)]
pub struct ConvTranspose1d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
}

impl ConvTranspose1d {
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get((c_in, c_out, kernel), "weight")?;
        let bias = Some(vb.get(c_out, "bias")?);
        Ok(Self {
            weight,
            bias,
            stride,
        })
    }
}

impl Module for ConvTranspose1d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = conv_transpose1d(x, &self.weight, self.stride)?;
        add_channel_bias(y, self.bias.as_ref())
    }
}

/// `torch.nn.ConvTranspose2d` with a `(k, 1)` kernel and a `(stride, 1)` stride.
#[derive(Debug, Clone)]
pub struct ConvTranspose2dFreq {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
}

impl ConvTranspose2dFreq {
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get((c_in, c_out, kernel, 1), "weight")?.squeeze(3)?;
        let bias = Some(vb.get(c_out, "bias")?);
        Ok(Self {
            weight,
            bias,
            stride,
        })
    }
}

impl Module for ConvTranspose2dFreq {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = along_freq(x, |x| conv_transpose1d(x, &self.weight, self.stride))?;
        add_channel_bias(y, self.bias.as_ref())
    }
}

/// `torch.nn.GroupNorm` (eps 1e-5) over `[B, C, ...]`.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    inner: candle_nn::GroupNorm,
}

impl GroupNorm {
    pub fn new(groups: usize, channels: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get(channels, "weight")?;
        let bias = vb.get(channels, "bias")?;
        Ok(Self {
            inner: candle_nn::GroupNorm::new(weight, bias, channels, groups, 1e-5)?,
        })
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.inner.forward(x)
    }
}

/// A GroupNorm that the config may switch off (`nn.Identity` in demucs).
#[derive(Debug, Clone)]
pub enum OptionalNorm {
    Identity,
    Group(GroupNorm),
}

impl OptionalNorm {
    pub fn new(enabled: bool, groups: usize, channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(if enabled {
            Self::Group(GroupNorm::new(groups, channels, vb)?)
        } else {
            Self::Identity
        })
    }
}

impl Module for OptionalNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Identity => Ok(x.clone()),
            Self::Group(n) => n.forward(x),
        }
    }
}

/// `torch.nn.LayerNorm` (eps 1e-5) over the last axis.
pub fn layer_norm(dim: usize, vb: VarBuilder) -> Result<candle_nn::LayerNorm> {
    let weight = vb.get(dim, "weight")?;
    let bias = vb.get(dim, "bias")?;
    Ok(candle_nn::LayerNorm::new(weight, bias, 1e-5))
}

/// Linear layer with torch's `[out, in]` weight layout.
pub fn linear(d_in: usize, d_out: usize, vb: VarBuilder) -> Result<candle_nn::Linear> {
    let weight = vb.get((d_out, d_in), "weight")?;
    let bias = vb.get(d_out, "bias")?;
    Ok(candle_nn::Linear::new(weight, Some(bias)))
}

/// Normalises each batch item over all of its (time, channel) values, with a per-channel
/// affine: demucs' `MyGroupNorm(1, C)` on `[B, T, C]`.
pub fn group_norm_channels_last(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (b, t, c) = x.dims3()?;
    let flat = x.reshape((b, t * c))?;
    let mean = flat.mean_keepdim(1)?;
    let centred = flat.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(1)?;
    let normed = centred
        .broadcast_div(&(var + 1e-5)?.sqrt()?)?
        .reshape((b, t, c))?;
    normed.broadcast_mul(weight)?.broadcast_add(bias)
}

/// Transposed 1-D convolution without padding: `x` `[N, Cin, L]`, `w` `[Cin, Cout, K]`.
///
/// Candle's own `conv_transpose1d` returned wrong values for HTDemucs' kernel 8 / stride 4
/// (candle 0.11.1), so this is a matmul followed by an overlap-add: every input frame
/// contributes `K` output samples, and with `K` a multiple of the stride those land on
/// `K / stride` consecutive output blocks of `stride` samples.
pub fn conv_transpose1d(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    let (n, c_in, l) = x.dims3()?;
    let (_, c_out, k) = w.dims3()?;
    if k % stride != 0 {
        candle_core::bail!("conv_transpose1d: kernel {k} is not a multiple of stride {stride}")
    }
    let taps = k / stride;
    // cols[n, co * K + j, l] = sum_ci w[ci, co, j] * x[n, ci, l]
    let wt = w.reshape((c_in, c_out * k))?.t()?.contiguous()?;
    let cols = wt
        .unsqueeze(0)?
        .broadcast_as((n, c_out * k, c_in))?
        .matmul(&x.contiguous()?)?;
    // -> [n, co, l, taps, stride]: output block (l + q) gets tap q.
    let cols = cols
        .reshape((n, c_out, taps, stride, l))?
        .permute((0, 1, 2, 4, 3))?;
    let mut out: Option<Tensor> = None;
    for q in 0..taps {
        let tap = cols
            .narrow(2, q, 1)?
            .squeeze(2)?
            .pad_with_zeros(2, q, taps - 1 - q)?;
        out = Some(match out {
            None => tap,
            Some(acc) => (acc + tap)?,
        });
    }
    let out = out.expect("kernel has at least one tap");
    out.reshape((n, c_out, (l + taps - 1) * stride))
}

/// `w @ x` for every batch item: a 1x1 convolution without the im2col detour.
fn pointwise(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (b, c_in, _) = x.dims3()?;
    let c_out = w.dim(0)?;
    w.unsqueeze(0)?
        .broadcast_as((b, c_out, c_in))?
        .matmul(&x.contiguous()?)
}

fn add_channel_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        None => Ok(y),
        Some(bias) => {
            let mut shape = vec![1; y.rank()];
            shape[1] = bias.dim(0)?;
            y.broadcast_add(&bias.reshape(shape)?)
        }
    }
}

/// Runs a 1-D operation over the frequency axis of `[B, C, F, T]`, with time folded into
/// the batch.
fn along_freq(x: &Tensor, op: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let (b, c, f, t) = x.dims4()?;
    let folded = x
        .permute((0, 3, 1, 2))?
        .contiguous()?
        .reshape((b * t, c, f))?;
    let y = op(&folded)?;
    let (_, c_out, f_out) = y.dims3()?;
    y.reshape((b, t, c_out, f_out))?
        .permute((0, 2, 3, 1))?
        .contiguous()
}

/// Mean and unbiased standard deviation over every axis but the first, kept as `[B, 1, ..]`.
pub fn mean_std_per_item(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let b = x.dim(0)?;
    let n = x.elem_count() / b;
    let flat = x.reshape((b, n))?;
    let mean = flat.mean_keepdim(1)?;
    let var =
        (flat.broadcast_sub(&mean)?.sqr()?.sum_keepdim(1)? / (n.saturating_sub(1).max(1)) as f64)?;
    let mut shape = vec![1; x.rank()];
    shape[0] = b;
    Ok((mean.reshape(shape.clone())?, var.sqrt()?.reshape(shape)?))
}

/// Softmax over the last axis.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax_last_dim(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The definition: out[n, co, l * stride + j] += x[n, ci, l] * w[ci, co, j].
    fn naive_conv_transpose1d(
        x: &[Vec<Vec<f32>>],
        w: &[Vec<Vec<f32>>],
        stride: usize,
    ) -> Vec<Vec<Vec<f32>>> {
        let (c_out, k) = (w[0].len(), w[0][0].len());
        let l = x[0][0].len();
        x.iter()
            .map(|item| {
                let mut out = vec![vec![0f32; (l - 1) * stride + k]; c_out];
                for (ci, row) in item.iter().enumerate() {
                    for (pos, v) in row.iter().enumerate() {
                        for co in 0..c_out {
                            for j in 0..k {
                                out[co][pos * stride + j] += v * w[ci][co][j];
                            }
                        }
                    }
                }
                out
            })
            .collect()
    }

    #[test]
    fn conv_transpose1d_matches_its_definition() {
        let dev = Device::Cpu;
        for (stride, k) in [(4, 8), (2, 4), (1, 3)] {
            let x = Tensor::randn(0f32, 1.0, (3, 5, 7), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (5, 2, k), &dev).unwrap();
            let ours = conv_transpose1d(&x, &w, stride)
                .unwrap()
                .to_vec3::<f32>()
                .unwrap();
            let want = naive_conv_transpose1d(&x.to_vec3().unwrap(), &w.to_vec3().unwrap(), stride);
            for (a, b) in ours
                .iter()
                .flatten()
                .flatten()
                .zip(want.iter().flatten().flatten())
            {
                assert!(
                    (a - b).abs() < 1e-4,
                    "stride {stride} kernel {k}: {a} vs {b}"
                );
            }
            assert_eq!(ours[0][0].len(), (7 - 1) * stride + k);
        }
    }

    #[test]
    fn frequency_conv2d_equals_a_conv_over_frequency_per_time_step() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 3, 16, 2), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (4, 3, 8, 1), &dev).unwrap();
        let bias = Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap();
        let conv = Conv2d {
            weight: w.clone(),
            bias: Some(bias),
            stride_freq: 4,
            padding: (2, 0),
        };
        let ours = conv.forward(&x).unwrap();
        for t in 0..2 {
            let column = x.narrow(3, t, 1).unwrap().squeeze(3).unwrap();
            let want = column.conv1d(&w.squeeze(3).unwrap(), 2, 4, 1, 1).unwrap();
            let got = ours.narrow(3, t, 1).unwrap().squeeze(3).unwrap();
            let err = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap();
            assert!(err.to_scalar::<f32>().unwrap() < 1e-5);
        }
    }
}
