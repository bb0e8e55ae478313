//! The primitive layers and activations every HTDemucs block is built from.
//!
//! Every hot operation of the forward pass goes through this module, so that faster
//! kernels can replace a body here without touching the model code. Candle has no per-axis
//! conv2d stride, so the `(k, 1)` frequency convolutions run as 1-D convolutions over the
//! frequency axis with time folded into the batch.

use std::sync::Arc;

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::kernels::{self, Matrix, bf16::Packed};
use crate::{Precision, profile};

/// A weight's `bf16` copy, packed once when the layer is built, for a model that multiplies
/// in `bf16` ([`Precision::effective`]); `None` otherwise. `outputs` is the weight's side
/// of the product (output channels or features); `operand` packs the weight's `f32` values.
fn packed_weight(
    weight: &Tensor,
    precision: Precision,
    outputs: usize,
    operand: impl FnOnce(&[f32]) -> Packed,
) -> Result<Option<Arc<Packed>>> {
    // With few outputs (a DConv's C/8 hidden channels) the product costs less than packing
    // the activations into bf16, so the f32 multiply is faster.
    const FEWEST_OUTPUTS: usize = 32;
    if precision.effective(weight.device()) != Precision::Fast || outputs < FEWEST_OUTPUTS {
        return Ok(None);
    }
    Ok(Some(Arc::new(kernels::with_values(weight, operand)?)))
}

/// Runs `f` on the weight as the kernels multiply by it: its packed `bf16` copy when there
/// is one, else its `f32` values.
fn with_matrix<R>(
    weight: &Tensor,
    packed: Option<&Arc<Packed>>,
    f: impl FnOnce(Matrix) -> R,
) -> Result<R> {
    match packed {
        Some(packed) => Ok(f(Matrix::Bf16(packed))),
        None => kernels::with_values(weight, |w| f(Matrix::F32(w))),
    }
}

/// Exact (erf) GELU, as `torch.nn.functional.gelu` computes it by default.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    let _p = profile::scope("gelu");
    if x.device().is_cpu() {
        let mut values = kernels::with_values(x, <[f32]>::to_vec)?;
        kernels::gelu_in_place(&mut values);
        return kernels::tensor(values, x.dims());
    }
    x.gelu_erf()
}

/// `torch.nn.functional.glu(x, dim)`: first half times the sigmoid of the second half.
pub fn glu(x: &Tensor, dim: usize) -> Result<Tensor> {
    let _p = profile::scope("glu");
    if x.device().is_cpu() && dim == 1 {
        let dims = x.dims();
        let (batch, channels) = (dims[0], dims[1] / 2);
        let inner = x.elem_count() / (batch * dims[1]).max(1);
        let out = kernels::with_values(x, |v| kernels::glu(v, batch, channels, inner))?;
        let mut shape = dims.to_vec();
        shape[1] = channels;
        return kernels::tensor(out, &shape);
    }
    let halves = x.chunk(2, dim)?;
    halves[0].mul(&candle_nn::ops::sigmoid(&halves[1])?)
}

/// `torch.nn.Conv1d`.
#[derive(Debug, Clone)]
pub struct Conv1d {
    weight: Tensor,
    packed: Option<Arc<Packed>>,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
    dilation: usize,
}

impl Conv1d {
    /// `torch.nn.Conv1d`'s arguments, and how the model multiplies.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
        precision: Precision,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = kernels::compact(vb.get((c_out, c_in, kernel), "weight")?)?;
        let patch = c_in * kernel;
        let packed = packed_weight(&weight, precision, c_out, |w| {
            Packed::left(w, (c_out, patch), (patch, 1))
        })?;
        let bias = Some(vb.get(c_out, "bias")?);
        Ok(Self {
            weight,
            packed,
            bias,
            stride,
            padding,
            dilation,
        })
    }

    pub fn kernel_size(&self) -> usize {
        self.weight.dim(2).unwrap_or(0)
    }

    pub(crate) fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub(crate) fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The convolution as a [`kernels::ConvGeometry`] over a `[C, 1, T]` plane.
    fn geometry(&self) -> kernels::ConvGeometry {
        kernels::ConvGeometry {
            kernel: (1, self.kernel_size()),
            stride: (1, self.stride),
            padding: (0, self.padding),
            dilation_t: self.dilation,
        }
    }

    /// Runs the convolution along the last axis of every row of `x` `[B, Cin, R, T]`, with
    /// zero padding at the ends of each row. CPU only.
    pub fn forward_rows(
        &self,
        x: &[f32],
        shape: [usize; 4],
        epilogue: kernels::Epilogue,
    ) -> Result<(Vec<f32>, [usize; 4])> {
        let c_out = self.weight.dim(0)?;
        let [b, c, r, t] = shape;
        with_matrix(&self.weight, self.packed.as_ref(), |w| {
            with_optional_values(self.bias.as_ref(), |bias| {
                kernels::conv2d(x, (b, c, r, t), w, bias, c_out, &self.geometry(), epilogue)
            })
        })?
    }

    /// The convolution followed by `epilogue`, fused on the CPU.
    pub fn forward_with(&self, x: &Tensor, epilogue: kernels::Epilogue) -> Result<Tensor> {
        if !x.device().is_cpu() {
            return apply_epilogue(self.forward(x)?, epilogue);
        }
        let _p = profile::scope(if self.kernel_size() == 1 {
            "conv1d.1x1"
        } else {
            "conv1d"
        });
        let (b, c, t) = x.dims3()?;
        let (y, [b, c_out, _, t_out]) =
            kernels::with_values(x, |v| self.forward_rows(v, [b, c, 1, t], epilogue))??;
        kernels::tensor(y, &[b, c_out, t_out])
    }
}

impl Module for Conv1d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() {
            return self.forward_with(x, kernels::Epilogue::None);
        }
        let _p = profile::scope(if self.kernel_size() == 1 {
            "conv1d.1x1"
        } else {
            "conv1d"
        });
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
    packed: Option<Arc<Packed>>,
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
        precision: Precision,
        vb: VarBuilder,
    ) -> Result<Self> {
        if kernel.1 != 1 && (stride_freq != 1 || padding.0 != padding.1) {
            candle_core::bail!("conv2d: only (k,1) kernels may have a frequency stride")
        }
        let weight = kernels::compact(vb.get((c_out, c_in, kernel.0, kernel.1), "weight")?)?;
        let patch = c_in * kernel.0 * kernel.1;
        let packed = packed_weight(&weight, precision, c_out, |w| {
            Packed::left(w, (c_out, patch), (patch, 1))
        })?;
        let bias = Some(vb.get(c_out, "bias")?);
        Ok(Self {
            weight,
            packed,
            bias,
            stride_freq,
            padding,
        })
    }
}

impl Conv2d {
    /// The convolution followed by `epilogue`, fused on the CPU.
    pub fn forward_with(&self, x: &Tensor, epilogue: kernels::Epilogue) -> Result<Tensor> {
        let (_, _, kh, kw) = self.weight.dims4()?;
        if !x.device().is_cpu() {
            return apply_epilogue(self.forward(x)?, epilogue);
        }
        let _p = profile::scope(match (kh, kw) {
            (1, 1) => "conv2d.1x1",
            (_, 1) => "conv2d.freq",
            _ => "conv2d.square",
        });
        let (b, c, f, t) = x.dims4()?;
        let geometry = kernels::ConvGeometry {
            kernel: (kh, kw),
            stride: (self.stride_freq, 1),
            padding: self.padding,
            dilation_t: 1,
        };
        let c_out = self.weight.dim(0)?;
        let (y, shape) = kernels::with_values(x, |v| {
            with_matrix(&self.weight, self.packed.as_ref(), |w| {
                with_optional_values(self.bias.as_ref(), |bias| {
                    kernels::conv2d(v, (b, c, f, t), w, bias, c_out, &geometry, epilogue)
                })
            })
        })???;
        kernels::tensor(y, &shape)
    }
}

impl Module for Conv2d {
    /// `x`: `[B, C, F, T]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() {
            return self.forward_with(x, kernels::Epilogue::None);
        }
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
    packed: Option<Arc<Packed>>,
    bias: Option<Tensor>,
    stride: usize,
}

impl ConvTranspose1d {
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        precision: Precision,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = kernels::compact(vb.get((c_in, c_out, kernel), "weight")?)?;
        let packed = packed_weight(&weight, precision, c_out * kernel, |w| {
            transposed_conv_operand(w, c_in, c_out * kernel)
        })?;
        let bias = Some(vb.get(c_out, "bias")?);
        Ok(Self {
            weight,
            packed,
            bias,
            stride,
        })
    }
}

impl ConvTranspose1d {
    /// The transposed convolution, cropped to `crop` `(start, len)` along time and with
    /// GELU after it when asked; fused on the CPU.
    pub fn forward_cropped(
        &self,
        x: &Tensor,
        crop: (usize, usize),
        gelu_after: bool,
    ) -> Result<Tensor> {
        if !x.device().is_cpu() {
            let y = self.forward(x)?.narrow(2, crop.0, crop.1)?;
            return if gelu_after { gelu(&y) } else { Ok(y) };
        }
        let _p = profile::scope("conv_tr.time");
        let (b, c, l) = x.dims3()?;
        let (y, [b, c_out, l_out, _]) = conv_transpose_cpu(
            x,
            (&self.weight, self.packed.as_ref(), self.bias.as_ref()),
            self.stride,
            (b, c, l, 1),
            crop,
            gelu_after,
        )?;
        kernels::tensor(y, &[b, c_out, l_out])
    }

    pub fn output_length(&self, input: usize) -> usize {
        (input.max(1) - 1) * self.stride + self.weight.dim(2).unwrap_or(0)
    }
}

impl Module for ConvTranspose1d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() {
            let full = self.output_length(x.dim(2)?);
            return self.forward_cropped(x, (0, full), false);
        }
        let y = conv_transpose1d(x, &self.weight, self.stride)?;
        add_channel_bias(y, self.bias.as_ref())
    }
}

/// `torch.nn.ConvTranspose2d` with a `(k, 1)` kernel and a `(stride, 1)` stride.
#[derive(Debug, Clone)]
pub struct ConvTranspose2dFreq {
    weight: Tensor,
    packed: Option<Arc<Packed>>,
    bias: Option<Tensor>,
    stride: usize,
}

impl ConvTranspose2dFreq {
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        precision: Precision,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = kernels::compact(vb.get((c_in, c_out, kernel, 1), "weight")?.squeeze(3)?)?;
        let packed = packed_weight(&weight, precision, c_out * kernel, |w| {
            transposed_conv_operand(w, c_in, c_out * kernel)
        })?;
        let bias = Some(vb.get(c_out, "bias")?);
        Ok(Self {
            weight,
            packed,
            bias,
            stride,
        })
    }
}

impl ConvTranspose2dFreq {
    /// The transposed convolution, cropped to `crop` `(start, len)` along frequency and
    /// with GELU after it when asked; fused on the CPU.
    pub fn forward_cropped(
        &self,
        x: &Tensor,
        crop: (usize, usize),
        gelu_after: bool,
    ) -> Result<Tensor> {
        if !x.device().is_cpu() {
            let y = self.forward(x)?.narrow(2, crop.0, crop.1)?;
            return if gelu_after { gelu(&y) } else { Ok(y) };
        }
        let _p = profile::scope("conv_tr.freq");
        let (b, c, f, t) = x.dims4()?;
        let (y, shape) = conv_transpose_cpu(
            x,
            (&self.weight, self.packed.as_ref(), self.bias.as_ref()),
            self.stride,
            (b, c, f, t),
            crop,
            gelu_after,
        )?;
        kernels::tensor(y, &shape)
    }

    pub fn output_length(&self, input: usize) -> usize {
        (input.max(1) - 1) * self.stride + self.weight.dim(2).unwrap_or(0)
    }
}

impl Module for ConvTranspose2dFreq {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() {
            let full = self.output_length(x.dim(2)?);
            return self.forward_cropped(x, (0, full), false);
        }
        let _p = profile::scope("conv_tr.freq");
        let y = along_freq(x, |x| conv_transpose1d(x, &self.weight, self.stride))?;
        add_channel_bias(y, self.bias.as_ref())
    }
}

/// A torch `[Cin, Cout, K]` transposed-convolution weight as the left operand of
/// [`kernels::conv_transpose`]'s multiply: `[(Cout, K), Cin]`, its own memory read with
/// strides `(1, Cout * K)`.
fn transposed_conv_operand(weight: &[f32], c_in: usize, rows: usize) -> Packed {
    Packed::left(weight, (rows, c_in), (1, rows))
}

/// [`kernels::conv_transpose`] on the values of `x` (`shape` as that function reads it)
/// with a torch `[Cin, Cout, K]` weight.
fn conv_transpose_cpu(
    x: &Tensor,
    (weight, packed, bias): (&Tensor, Option<&Arc<Packed>>, Option<&Tensor>),
    stride: usize,
    shape: (usize, usize, usize, usize),
    crop: (usize, usize),
    gelu_after: bool,
) -> Result<(Vec<f32>, [usize; 4])> {
    let (_, c_out, k) = weight.dims3()?;
    kernels::with_values(x, |v| {
        with_matrix(weight, packed, |w| {
            with_optional_values(bias, |bias| {
                kernels::conv_transpose(
                    v,
                    shape,
                    w,
                    bias,
                    (c_out, k),
                    stride,
                    Some(crop),
                    gelu_after,
                )
            })
        })
    })??
}

/// `torch.nn.GroupNorm` (eps 1e-5) over `[B, C, ...]`.
///
/// Not `candle_nn::GroupNorm`: its f32 sums drift over long groups (see [`sum_last_axis`]),
/// and the time branch's DConv normalises groups of millions of values.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
}

impl GroupNorm {
    pub fn new(groups: usize, channels: usize, vb: VarBuilder) -> Result<Self> {
        if channels.checked_rem(groups) != Some(0) {
            candle_core::bail!("GroupNorm: {channels} channels do not split into {groups} groups")
        }
        let weight = vb.get(channels, "weight")?;
        let bias = vb.get(channels, "bias")?;
        Ok(Self {
            weight,
            bias,
            groups,
        })
    }
}

impl GroupNorm {
    /// The GroupNorm on the CPU kernels, then `activation`, fused.
    pub fn forward_cpu(&self, x: &Tensor, activation: kernels::Activation) -> Result<Vec<f32>> {
        let shape = self.norm_shape(x.dims(), 1);
        kernels::with_values(x, |v| {
            kernels::with_values(&self.weight, |w| {
                kernels::with_values(&self.bias, |b| {
                    kernels::group_norm(v, shape, w, b, activation)
                })
            })
        })??
    }

    pub(crate) fn norm_shape(&self, dims: &[usize], rows: usize) -> kernels::NormShape {
        let (batch, channels) = (dims[0], dims[1]);
        let len = dims.iter().product::<usize>() / (batch * channels * rows).max(1);
        kernels::NormShape {
            batch,
            channels,
            rows,
            len,
            groups: self.groups,
        }
    }

    pub(crate) fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub(crate) fn bias(&self) -> &Tensor {
        &self.bias
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let _p = profile::scope("group_norm");
        let dims = x.dims();
        if dims.len() < 3 || dims[1] != self.weight.dim(0)? {
            candle_core::bail!("GroupNorm: unexpected input shape {dims:?}")
        }
        if x.device().is_cpu() {
            let y = self.forward_cpu(x, kernels::Activation::None)?;
            return kernels::tensor(y, dims);
        }
        let b = dims[0];
        let n = x.elem_count() / (b * self.groups);
        let flat = x.reshape((b, self.groups, n))?;
        let mean = (sum_last_axis(&flat)? / n as f64)?;
        let centred = flat.broadcast_sub(&mean)?;
        let var = (sum_last_axis(&centred.sqr()?)? / n as f64)?;
        let normed = centred
            .broadcast_div(&(var + 1e-5)?.sqrt()?)?
            .reshape(dims)?;
        let mut shape = vec![1; dims.len()];
        shape[1] = dims[1];
        normed
            .broadcast_mul(&self.weight.reshape(shape.as_slice())?)?
            .broadcast_add(&self.bias.reshape(shape.as_slice())?)
    }
}

/// The sum over the last axis, kept as an axis of size 1, accurate to a few f32 roundings
/// however long the axis: it is summed in blocks of at most [`SUM_BLOCK`] values, then the
/// block sums likewise. Candle's f32 sum runs 32 accumulators straight down the axis, so over the
/// millions of values of one 7.8 s segment (the time branch's DConv GroupNorms, HTDemucs'
/// input statistics) each accumulator adds hundreds of thousands of terms and the sum
/// drifts by up to ~1e-4 relative, most where the values repeat (the silence a short clip
/// is padded with rounds the same way every time); PyTorch sums such rows in cascade. In
/// the DConv GroupNorms of a full-size model that drift cost ~50 dB of SNR against PyTorch
/// (tests/six_stems.rs: 55 dB with candle's sums, 100-103 dB with these).
pub fn sum_last_axis(x: &Tensor) -> Result<Tensor> {
    let last = x.rank() - 1;
    let mut x = x.clone();
    loop {
        let n = x.dim(last)?;
        if n <= SUM_BLOCK {
            return x.sum_keepdim(last);
        }
        // A block length that divides the axis makes the split a free reshape; otherwise
        // pad with zeros, which leave the sum as it is.
        let (block, padded) = match (SUM_BLOCK / 4..=SUM_BLOCK).rev().find(|d| n % d == 0) {
            Some(block) => (block, x),
            None => {
                let pad = n.div_ceil(SUM_BLOCK) * SUM_BLOCK - n;
                (SUM_BLOCK, x.pad_with_zeros(last, 0, pad)?)
            }
        };
        let mut shape = padded.dims().to_vec();
        shape[last] = padded.dim(last)? / block;
        shape.push(block);
        x = padded.reshape(shape)?.sum(last + 1)?;
    }
}

/// The most values [`sum_last_axis`] adds up in one go.
pub const SUM_BLOCK: usize = 1024;

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

impl OptionalNorm {
    /// `gelu(norm(x))`, fused into one pass on the CPU.
    pub fn forward_gelu(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Identity => gelu(x),
            Self::Group(n) if x.device().is_cpu() => {
                let _p = profile::scope("group_norm");
                let y = n.forward_cpu(x, kernels::Activation::Gelu)?;
                kernels::tensor(y, x.dims())
            }
            Self::Group(n) => gelu(&n.forward(x)?),
        }
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
pub fn layer_norm(dim: usize, vb: VarBuilder) -> Result<LayerNorm> {
    let weight = vb.get(dim, "weight")?;
    let bias = vb.get(dim, "bias")?;
    Ok(LayerNorm(candle_nn::LayerNorm::new(weight, bias, 1e-5)))
}

/// `torch.nn.LayerNorm` over the last axis: on the CPU one parallel pass of our kernel
/// (candle's runs on one thread), elsewhere candle's.
#[derive(Debug, Clone)]
pub struct LayerNorm(candle_nn::LayerNorm);

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let _p = profile::scope("layer_norm");
        if !x.device().is_cpu() || x.dtype() != DType::F32 {
            return self.0.forward(x);
        }
        let width = x.dim(D::Minus1)?;
        let bias = self.0.bias().expect("built with a bias");
        let y = kernels::with_values(x, |x| {
            kernels::with_values(self.0.weight(), |w| {
                kernels::with_values(bias, |b| kernels::layer_norm_rows(x, width, w, b))
            })
        })???;
        kernels::tensor(y, x.dims())
    }
}

/// `x + scale * y` for `x` and `y` `[..., C]` and a LayerScale `scale` `[C]`: on the CPU one
/// parallel pass, elsewhere candle's two ops.
pub fn add_scaled(x: &Tensor, y: &Tensor, scale: &Tensor) -> Result<Tensor> {
    let _p = profile::scope("residual");
    if !x.device().is_cpu() || x.dtype() != DType::F32 || x.dims() != y.dims() {
        return x + y.broadcast_mul(scale)?;
    }
    let out = kernels::with_values(x, |x| {
        kernels::with_values(y, |y| {
            kernels::with_values(scale, |s| kernels::add_scaled_rows(x, y, s))
        })
    })???;
    kernels::tensor(out, x.dims())
}

/// `torch.nn.Linear`, with torch's `[out, in]` weight layout.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    packed: Option<Arc<Packed>>,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn new(d_in: usize, d_out: usize, precision: Precision, vb: VarBuilder) -> Result<Self> {
        let weight = kernels::compact(vb.get((d_out, d_in), "weight")?)?;
        Self::from_weight(weight, Some(vb.get(d_out, "bias")?), precision)
    }

    /// A linear layer of an `[out, in]` weight and an optional `[out]` bias.
    pub fn from_weight(weight: Tensor, bias: Option<Tensor>, precision: Precision) -> Result<Self> {
        let (d_out, d_in) = weight.dims2()?;
        // x [rows, in] * weight^T: weight^T [in, out] is the weight read with strides (1, in).
        let packed = packed_weight(&weight, precision, d_out, |w| {
            Packed::right(w, (d_in, d_out), (1, d_in))
        })?;
        Ok(Self {
            weight,
            packed,
            bias,
        })
    }

    /// `x [rows, in]` times the layer on the CPU kernels: `[rows, out]`.
    pub fn forward_values(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let (d_out, d_in) = self.weight.dims2()?;
        with_matrix(&self.weight, self.packed.as_ref(), |w| {
            with_optional_values(self.bias.as_ref(), |b| {
                kernels::linear(x, rows, w, (d_out, d_in), b)
            })
        })?
    }

    pub fn out_features(&self) -> usize {
        self.weight.dim(0).unwrap_or(0)
    }

    /// Whether the layer multiplies in `bf16`.
    pub fn is_bf16(&self) -> bool {
        self.packed.is_some()
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let d_in = *dims.last().unwrap_or(&0);
        if x.device().is_cpu() {
            let rows = x.elem_count() / d_in.max(1);
            let out = kernels::with_values(x, |x| self.forward_values(x, rows))??;
            let mut shape = dims.to_vec();
            *shape.last_mut().expect("a linear input has an axis") = self.out_features();
            return kernels::tensor(out, &shape);
        }
        let rows = x.elem_count() / d_in.max(1);
        let y = x.reshape((rows, d_in))?.matmul(&self.weight.t()?)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("a linear input has an axis") = self.out_features();
        y.reshape(shape)
    }
}

/// Normalises each batch item over all of its (time, channel) values, with a per-channel
/// affine: demucs' `MyGroupNorm(1, C)` on `[B, T, C]`.
pub fn group_norm_channels_last(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let _p = profile::scope("group_norm.tokens");
    let (b, t, c) = x.dims3()?;
    if x.device().is_cpu() {
        let y = kernels::with_values(x, |x| {
            kernels::with_values(weight, |w| {
                kernels::with_values(bias, |bias| {
                    kernels::group_norm_tokens(x, (b, t, c), w, bias)
                })
            })
        })???;
        return kernels::tensor(y, &[b, t, c]);
    }
    let flat = x.reshape((b, t * c))?;
    let mean = (sum_last_axis(&flat)? / (t * c) as f64)?;
    let centred = flat.broadcast_sub(&mean)?;
    let var = (sum_last_axis(&centred.sqr()?)? / (t * c) as f64)?;
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

/// The epilogue as separate ops, for devices without the fused kernels.
fn apply_epilogue(y: Tensor, epilogue: kernels::Epilogue) -> Result<Tensor> {
    match epilogue {
        kernels::Epilogue::None => Ok(y),
        kernels::Epilogue::Gelu => gelu(&y),
        kernels::Epilogue::Glu => glu(&y, 1),
    }
}

fn with_optional_values<R>(t: Option<&Tensor>, f: impl FnOnce(Option<&[f32]>) -> R) -> Result<R> {
    match t {
        Some(t) => kernels::with_values(t, |v| f(Some(v))),
        None => Ok(f(None)),
    }
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
    let p = profile::scope("permute");
    let folded = x
        .permute((0, 3, 1, 2))?
        .contiguous()?
        .reshape((b * t, c, f))?;
    drop(p);
    let y = op(&folded)?;
    let (_, c_out, f_out) = y.dims3()?;
    let _p = profile::scope("permute");
    y.reshape((b, t, c_out, f_out))?
        .permute((0, 2, 3, 1))?
        .contiguous()
}

/// Mean and unbiased standard deviation over every axis but the first, kept as `[B, 1, ..]`.
pub fn mean_std_per_item(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let b = x.dim(0)?;
    let n = x.elem_count() / b;
    let flat = x.reshape((b, n))?;
    let mean = (sum_last_axis(&flat)? / n as f64)?;
    let var =
        (sum_last_axis(&flat.broadcast_sub(&mean)?.sqr()?)? / (n.saturating_sub(1).max(1)) as f64)?;
    let mut shape = vec![1; x.rank()];
    shape[0] = b;
    Ok((mean.reshape(shape.clone())?, var.sqrt()?.reshape(shape)?))
}

/// Softmax over the last axis.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let _p = profile::scope("softmax");
    if x.device().is_cpu() {
        let mut values = kernels::with_values(x, <[f32]>::to_vec)?;
        kernels::softmax_rows_in_place(&mut values, x.dims().last().copied().unwrap_or(1));
        return kernels::tensor(values, x.dims());
    }
    candle_nn::ops::softmax_last_dim(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn sum_last_axis_stays_exact_over_millions_of_values() {
        // Two rows of ~3M values, like a long GroupNorm over a segment padded with silence:
        // a constant row, whose rounding errors all go the same way (candle's own sum is off
        // by 1e-4 here), and a nearly constant one. 3_000_000 splits into blocks of 1000,
        // 3_000_007 has no divisor near the block length and is padded.
        for n in [3_000_000, 3_000_007] {
            let values: Vec<f32> = (0..2 * n)
                .map(|i| {
                    if i < n {
                        0.1
                    } else {
                        0.3 + 0.001 * (i % 7) as f32
                    }
                })
                .collect();
            let exact: Vec<f64> = values
                .chunks(n)
                .map(|row| row.iter().map(|&v| v as f64).sum())
                .collect();
            let x = Tensor::from_vec(values, (2, 1, n), &Device::Cpu).unwrap();
            let sums = sum_last_axis(&x).unwrap();
            assert_eq!(sums.dims(), &[2, 1, 1]);
            let got = sums.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (got, want) in got.iter().zip(&exact) {
                let rel = ((*got as f64 - want) / want).abs();
                assert!(rel < 1e-6, "{n} values: relative error {rel:e}");
            }
        }
        // Short axes are a plain sum.
        let short = Tensor::new(&[[1f32, 2., 3.], [4., 5., 6.]], &Device::Cpu).unwrap();
        assert_eq!(
            sum_last_axis(&short).unwrap().to_vec2::<f32>().unwrap(),
            [[6.0], [15.0]]
        );
    }

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
            packed: None,
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
