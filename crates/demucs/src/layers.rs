//! The convolutional blocks of HTDemucs (`demucs/hdemucs.py`, `demucs/demucs.py`):
//! the DConv residual branch and the encoder and decoder layers of both branches.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use crate::Precision;
use crate::kernels::{self, Epilogue};
use crate::nn::{
    Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2dFreq, GroupNorm, OptionalNorm, gelu, glu,
};

/// Settings of the DConv residual branches (`dconv_kw` in demucs).
#[derive(Debug, Clone, Copy)]
pub struct DConvConfig {
    pub depth: usize,
    pub compress: f64,
    pub precision: Precision,
}

#[derive(Debug, Clone)]
struct DConvLayer {
    conv: Conv1d,
    norm1: GroupNorm,
    project: Conv1d,
    norm2: GroupNorm,
    scale: Tensor,
}

/// `demucs.demucs.DConv`: a stack of dilated residual blocks
/// (conv, GroupNorm(1), GELU, 1x1 conv, GroupNorm(1), GLU, LayerScale).
#[derive(Debug, Clone)]
pub struct DConv {
    layers: Vec<DConvLayer>,
}

impl DConv {
    pub fn new(channels: usize, cfg: DConvConfig, vb: VarBuilder) -> Result<Self> {
        let hidden = (channels as f64 / cfg.compress) as usize;
        let vb = vb.pp("layers");
        let layers = (0..cfg.depth)
            .map(|d| {
                let vb = vb.pp(d);
                let dilation = 1 << d;
                Ok(DConvLayer {
                    conv: Conv1d::new(
                        channels,
                        hidden,
                        3,
                        1,
                        dilation,
                        dilation,
                        cfg.precision,
                        vb.pp("0"),
                    )?,
                    norm1: GroupNorm::new(1, hidden, vb.pp("1"))?,
                    project: Conv1d::new(
                        hidden,
                        2 * channels,
                        1,
                        1,
                        0,
                        1,
                        Precision::Exact,
                        vb.pp("3"),
                    )?,
                    norm2: GroupNorm::new(1, 2 * channels, vb.pp("4"))?,
                    scale: vb
                        .pp("6")
                        .get(channels, "scale")?
                        .reshape((1, channels, 1))?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }
}

impl DConv {
    /// The DConv applied to every row of `x` `[B, C, R, T]` on its own (its GroupNorms
    /// normalise each `(batch, row)` over channels and time), without permuting the rows
    /// into the batch. CPU only.
    ///
    /// Rows are independent, so they go through in blocks of a few megabytes: the block's
    /// intermediate tensors (the `2C`-channel projection is the largest) stay small
    /// whatever the number of rows.
    pub fn forward_rows(&self, x: Tensor) -> Result<Tensor> {
        let _p = crate::profile::scope("dconv");
        let (b, c, r, t) = x.dims4()?;
        let mut out = kernels::with_values(&x, |v| v.par_iter().copied().collect::<Vec<f32>>())?;
        // The input's own buffer is not needed past the copy (a large one in the outer
        // frequency layers).
        drop(x);
        let rows_per_block = ((1usize << 20) / (2 * c * t).max(1)).clamp(1, r.max(1));
        let mut block = Vec::new();
        for item in 0..b {
            let planes = &mut out[item * c * r * t..][..c * r * t];
            for r0 in (0..r).step_by(rows_per_block) {
                let rows = rows_per_block.min(r - r0);
                if rows == r {
                    self.forward_block(planes, [c, r, t])?;
                    continue;
                }
                // The block's rows of every channel, gathered and scattered in parallel: at
                // tens of megabytes a layer, one core's copy would be a serial tail.
                block.resize(c * rows * t, 0.0);
                block
                    .par_chunks_mut(rows * t)
                    .zip(planes.par_chunks(r * t))
                    .for_each(|(to, plane)| to.copy_from_slice(&plane[r0 * t..(r0 + rows) * t]));
                self.forward_block(&mut block, [c, rows, t])?;
                planes
                    .par_chunks_mut(r * t)
                    .zip(block.par_chunks(rows * t))
                    .for_each(|(plane, done)| plane[r0 * t..(r0 + rows) * t].copy_from_slice(done));
            }
        }
        kernels::tensor(out, &[b, c, r, t])
    }

    /// Every layer on `x` `[C, R, T]` of one batch item, in place.
    fn forward_block(&self, x: &mut [f32], [c, r, t]: [usize; 3]) -> Result<()> {
        for layer in &self.layers {
            let p = crate::profile::scope("dconv.conv");
            let (h, shape) = layer
                .conv
                .forward_rows(x, [1, c, r, t], kernels::Epilogue::None)?;
            drop(p);
            let hidden = shape[1];
            let h = {
                let _p = crate::profile::scope("dconv.norm_gelu");
                let norm = layer.norm1.norm_shape(&shape, r);
                kernels::with_values(layer.norm1.weight(), |w| {
                    kernels::with_values(layer.norm1.bias(), |bias| {
                        kernels::group_norm(&h, norm, w, bias, kernels::Activation::Gelu)
                    })
                })??
            };
            let _p = crate::profile::scope("dconv.project_norm_glu");
            kernels::with_values(layer.project.weight(), |w| {
                with_values_of(layer.project.bias(), |b| {
                    kernels::with_values(layer.norm2.weight(), |nw| {
                        kernels::with_values(layer.norm2.bias(), |nb| {
                            kernels::with_values(&layer.scale, |scale| {
                                kernels::project_norm_glu_residual(
                                    &h,
                                    (hidden, r, t),
                                    w,
                                    b,
                                    (nw, nb),
                                    scale,
                                    x,
                                )
                            })
                        })
                    })
                })
            })?????;
        }
        Ok(())
    }
}

/// The values of a bias the layer must have.
fn with_values_of<R>(t: Option<&Tensor>, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    match t {
        Some(t) => kernels::with_values(t, f),
        None => candle_core::bail!("DConv projection without a bias"),
    }
}

impl DConv {
    /// [`Module::forward`] taking its input, so that its memory is freed early.
    pub fn forward_owned(&self, x: Tensor) -> Result<Tensor> {
        if !x.device().is_cpu() {
            return self.forward(&x);
        }
        let (b, c, t) = x.dims3()?;
        let rows = x.reshape((b, c, 1, t))?;
        drop(x);
        self.forward_rows(rows)?.reshape((b, c, t))
    }
}

impl Module for DConv {
    /// `x`: `[B, C, T]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() {
            return self.forward_owned(x.clone());
        }
        let mut x = x.clone();
        for layer in &self.layers {
            let y = gelu(&layer.norm1.forward(&layer.conv.forward(&x)?)?)?;
            let y = glu(&layer.norm2.forward(&layer.project.forward(&y)?)?, 1)?;
            x = (x + y.broadcast_mul(&layer.scale)?)?;
        }
        Ok(x)
    }
}

/// Applies a DConv to a frequency-branch tensor `[B, C, F, T]`, each frequency row on its own.
fn dconv_per_freq(dconv: &DConv, y: Tensor) -> Result<Tensor> {
    if y.device().is_cpu() {
        return dconv.forward_rows(y);
    }
    let (b, c, f, t) = y.dims4()?;
    let p = crate::profile::scope("permute");
    let rows = y
        .permute((0, 2, 1, 3))?
        .contiguous()?
        .reshape((b * f, c, t))?;
    drop(p);
    let out = dconv.forward(&rows)?;
    let _p = crate::profile::scope("permute");
    out.reshape((b, f, c, t))?
        .permute((0, 2, 1, 3))?
        .contiguous()
}

/// What one encoder or decoder layer looks like (`HEncLayer`/`HDecLayer` arguments).
#[derive(Debug, Clone, Copy)]
pub struct LayerConfig {
    pub chin: usize,
    pub chout: usize,
    pub kernel_size: usize,
    pub stride: usize,
    pub freq: bool,
    pub norm: bool,
    pub norm_groups: usize,
    pub rewrite: bool,
    pub context: usize,
    pub dconv: Option<DConvConfig>,
    pub precision: Precision,
}

impl LayerConfig {
    fn pad(&self) -> usize {
        self.kernel_size / 4
    }
}

#[derive(Debug, Clone)]
enum EncConv {
    Freq(Conv2d),
    Time(Conv1d),
}

impl EncConv {
    fn forward_with(&self, x: &Tensor, epilogue: Epilogue) -> Result<Tensor> {
        match self {
            Self::Freq(c) => c.forward_with(x, epilogue),
            Self::Time(c) => c.forward_with(x, epilogue),
        }
    }

    /// `act(norm(conv(x)))`, with the activation fused into the convolution when there is
    /// no norm between them.
    fn forward_norm_act(&self, x: &Tensor, norm: &OptionalNorm, act: Epilogue) -> Result<Tensor> {
        match (norm, act) {
            (OptionalNorm::Identity, _) => self.forward_with(x, act),
            (_, Epilogue::Gelu) => norm.forward_gelu(&self.forward_with(x, Epilogue::None)?),
            (_, Epilogue::Glu) => glu(&norm.forward(&self.forward_with(x, Epilogue::None)?)?, 1),
            (_, Epilogue::None) => norm.forward(&self.forward_with(x, Epilogue::None)?),
        }
    }
}

/// `demucs.hdemucs.HEncLayer`.
#[derive(Debug, Clone)]
pub struct HEncLayer {
    cfg: LayerConfig,
    conv: EncConv,
    norm1: OptionalNorm,
    rewrite: Option<(EncConv, OptionalNorm)>,
    dconv: Option<DConv>,
}

impl HEncLayer {
    pub fn new(cfg: LayerConfig, vb: VarBuilder) -> Result<Self> {
        let pad = cfg.pad();
        let conv = if cfg.freq {
            EncConv::Freq(Conv2d::new(
                cfg.chin,
                cfg.chout,
                (cfg.kernel_size, 1),
                cfg.stride,
                (pad, 0),
                cfg.precision,
                vb.pp("conv"),
            )?)
        } else {
            EncConv::Time(Conv1d::new(
                cfg.chin,
                cfg.chout,
                cfg.kernel_size,
                cfg.stride,
                pad,
                1,
                cfg.precision,
                vb.pp("conv"),
            )?)
        };
        let norm1 = OptionalNorm::new(cfg.norm, cfg.norm_groups, cfg.chout, vb.pp("norm1"))?;
        let rewrite = if cfg.rewrite {
            let k = 1 + 2 * cfg.context;
            let conv = if cfg.freq {
                EncConv::Freq(Conv2d::new(
                    cfg.chout,
                    2 * cfg.chout,
                    (k, k),
                    1,
                    (cfg.context, cfg.context),
                    cfg.precision,
                    vb.pp("rewrite"),
                )?)
            } else {
                EncConv::Time(Conv1d::new(
                    cfg.chout,
                    2 * cfg.chout,
                    k,
                    1,
                    cfg.context,
                    1,
                    cfg.precision,
                    vb.pp("rewrite"),
                )?)
            };
            Some((
                conv,
                OptionalNorm::new(cfg.norm, cfg.norm_groups, 2 * cfg.chout, vb.pp("norm2"))?,
            ))
        } else {
            None
        };
        let dconv = cfg
            .dconv
            .map(|d| DConv::new(cfg.chout, d, vb.pp("dconv")))
            .transpose()?;
        Ok(Self {
            cfg,
            conv,
            norm1,
            rewrite,
            dconv,
        })
    }

    /// Frequency layers take `[B, C, F, T]`, time layers `[B, C, T]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = match &self.conv {
            EncConv::Time(_) if x.dim(2)? % self.cfg.stride != 0 => {
                let le = x.dim(2)?;
                x.pad_with_zeros(2, 0, self.cfg.stride - le % self.cfg.stride)?
            }
            _ => x.clone(),
        };
        let mut y = self
            .conv
            .forward_norm_act(&x, &self.norm1, Epilogue::Gelu)?;
        if let Some(dconv) = &self.dconv {
            y = if self.cfg.freq {
                dconv_per_freq(dconv, y)?
            } else {
                dconv.forward_owned(y)?
            };
        }
        match &self.rewrite {
            Some((conv, norm)) => conv.forward_norm_act(&y, norm, Epilogue::Glu),
            None => Ok(y),
        }
    }
}

#[derive(Debug, Clone)]
enum DecConvTr {
    Freq(ConvTranspose2dFreq),
    Time(ConvTranspose1d),
}

/// `demucs.hdemucs.HDecLayer`.
#[derive(Debug, Clone)]
pub struct HDecLayer {
    cfg: LayerConfig,
    last: bool,
    conv_tr: DecConvTr,
    norm2: OptionalNorm,
    rewrite: Option<(EncConv, OptionalNorm)>,
    dconv: Option<DConv>,
}

impl HDecLayer {
    /// `cfg.chin` is the layer's input (the deeper side), `cfg.chout` its output.
    pub fn new(cfg: LayerConfig, last: bool, vb: VarBuilder) -> Result<Self> {
        let conv_tr = if cfg.freq {
            DecConvTr::Freq(ConvTranspose2dFreq::new(
                cfg.chin,
                cfg.chout,
                cfg.kernel_size,
                cfg.stride,
                cfg.precision,
                vb.pp("conv_tr"),
            )?)
        } else {
            DecConvTr::Time(ConvTranspose1d::new(
                cfg.chin,
                cfg.chout,
                cfg.kernel_size,
                cfg.stride,
                cfg.precision,
                vb.pp("conv_tr"),
            )?)
        };
        let norm2 = OptionalNorm::new(cfg.norm, cfg.norm_groups, cfg.chout, vb.pp("norm2"))?;
        let rewrite = if cfg.rewrite {
            let k = 1 + 2 * cfg.context;
            let conv = if cfg.freq {
                EncConv::Freq(Conv2d::new(
                    cfg.chin,
                    2 * cfg.chin,
                    (k, k),
                    1,
                    (cfg.context, cfg.context),
                    cfg.precision,
                    vb.pp("rewrite"),
                )?)
            } else {
                EncConv::Time(Conv1d::new(
                    cfg.chin,
                    2 * cfg.chin,
                    k,
                    1,
                    cfg.context,
                    1,
                    cfg.precision,
                    vb.pp("rewrite"),
                )?)
            };
            Some((
                conv,
                OptionalNorm::new(cfg.norm, cfg.norm_groups, 2 * cfg.chin, vb.pp("norm1"))?,
            ))
        } else {
            None
        };
        let dconv = cfg
            .dconv
            .map(|d| DConv::new(cfg.chin, d, vb.pp("dconv")))
            .transpose()?;
        Ok(Self {
            cfg,
            last,
            conv_tr,
            norm2,
            rewrite,
            dconv,
        })
    }

    /// `length` is the time length the matching encoder layer received (time branch only).
    pub fn forward(&self, x: &Tensor, skip: &Tensor, length: usize) -> Result<Tensor> {
        self.forward_owned(x.clone(), skip.clone(), length)
    }

    /// [`HDecLayer::forward`] taking its inputs, so that each intermediate tensor is freed
    /// as soon as the next one exists (the outer frequency layers' are tens of megabytes).
    pub fn forward_owned(&self, x: Tensor, skip: Tensor, length: usize) -> Result<Tensor> {
        let x = (x + skip)?;
        let mut y = match &self.rewrite {
            Some((conv, norm)) => {
                let y = conv.forward_norm_act(&x, norm, Epilogue::Glu)?;
                drop(x);
                y
            }
            None => x,
        };
        if let Some(dconv) = &self.dconv {
            y = if self.cfg.freq {
                dconv_per_freq(dconv, y)?
            } else {
                dconv.forward_owned(y)?
            };
        }
        let pad = self.cfg.pad();
        if matches!(self.norm2, OptionalNorm::Identity) {
            return match &self.conv_tr {
                DecConvTr::Freq(conv) => {
                    let f = conv.output_length(y.dim(2)?);
                    conv.forward_cropped(&y, (pad, f - 2 * pad), !self.last)
                }
                DecConvTr::Time(conv) => conv.forward_cropped(&y, (pad, length), !self.last),
            };
        }
        let z = match &self.conv_tr {
            DecConvTr::Freq(conv) => {
                let z = self.norm2.forward(&conv.forward(&y)?)?;
                let f = z.dim(2)?;
                z.narrow(2, pad, f - 2 * pad)?
            }
            DecConvTr::Time(conv) => self
                .norm2
                .forward(&conv.forward(&y)?)?
                .narrow(2, pad, length)?,
        };
        if self.last { Ok(z) } else { gelu(&z) }
    }
}
