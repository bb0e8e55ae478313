//! The cross-domain transformer of HTDemucs (`demucs/transformer.py`): self-attention
//! layers per branch alternating with cross-attention between the frequency and the time
//! branch, with sinusoidal positional embeddings.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::Precision;
use crate::kernels;
use crate::nn::{
    LayerNorm, Linear, add_scaled, gelu, group_norm_channels_last, layer_norm, softmax_last_dim,
};

#[derive(Debug, Clone, Copy)]
pub struct TransformerConfig {
    pub dim: usize,
    pub heads: usize,
    pub hidden: usize,
    pub layers: usize,
    pub norm_in: bool,
    pub norm_first: bool,
    pub norm_out: bool,
    pub layer_scale: bool,
    pub gelu: bool,
    pub cross_first: bool,
    pub max_period: f64,
    pub weight_pos_embed: f64,
    pub precision: Precision,
}

/// `torch.nn.MultiheadAttention` with a packed `in_proj` and no masks.
#[derive(Debug, Clone)]
pub struct MultiheadAttention {
    /// The query, key and value parts of `in_proj`.
    in_proj: [Linear; 3],
    out_proj: Linear,
    heads: usize,
    dim: usize,
}

impl MultiheadAttention {
    pub fn new(dim: usize, heads: usize, precision: Precision, vb: VarBuilder) -> Result<Self> {
        let weight = kernels::compact(vb.get((3 * dim, dim), "in_proj_weight")?)?;
        let bias = vb.get(3 * dim, "in_proj_bias")?;
        let part = |i: usize| {
            Linear::from_weight(
                weight.narrow(0, i * dim, dim)?.contiguous()?,
                Some(bias.narrow(0, i * dim, dim)?.contiguous()?),
                precision,
            )
        };
        Ok(Self {
            in_proj: [part(0)?, part(1)?, part(2)?],
            out_proj: Linear::new(dim, dim, precision, vb.pp("out_proj"))?,
            heads,
            dim,
        })
    }

    fn project(&self, x: &Tensor, part: usize) -> Result<Tensor> {
        let _p = crate::profile::scope("attention.in_proj");
        let (batch, len, _) = x.dims3()?;
        self.in_proj[part]
            .forward(x)?
            .reshape((batch, len, self.heads, self.dim / self.heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// `query`: `[B, Lq, E]`, `key_value`: `[B, Lk, E]`.
    pub fn forward(&self, query: &Tensor, key_value: &Tensor) -> Result<Tensor> {
        if query.device().is_cpu() {
            return self.forward_cpu(query, key_value);
        }
        let (batch, len_q, _) = query.dims3()?;
        let head_dim = self.dim / self.heads;
        let q = (self.project(query, 0)? * (1.0 / (head_dim as f64).sqrt()))?;
        let k = self.project(key_value, 1)?;
        let v = self.project(key_value, 2)?;
        // One head at a time keeps the attention matrix at Lq x Lk rather than heads times it.
        let mut outs = Vec::with_capacity(self.heads);
        for h in 0..self.heads {
            let qh = q.narrow(1, h, 1)?.squeeze(1)?;
            let kh = k.narrow(1, h, 1)?.squeeze(1)?;
            let vh = v.narrow(1, h, 1)?.squeeze(1)?;
            let p = crate::profile::scope("attention.scores");
            let scores = qh.matmul(&kh.t()?)?;
            drop(p);
            let weights = softmax_last_dim(&scores)?;
            let _p = crate::profile::scope("attention.values");
            outs.push(weights.matmul(&vh)?);
        }
        let _p = crate::profile::scope("attention.out_proj");
        let attended = Tensor::cat(&outs, 2)?.reshape((batch, len_q, self.dim))?;
        self.out_proj.forward(&attended)
    }
}

impl MultiheadAttention {
    fn forward_cpu(&self, query: &Tensor, key_value: &Tensor) -> Result<Tensor> {
        let (batch, len_q, dim) = query.dims3()?;
        let len_k = key_value.dim(1)?;
        let head_dim = dim / self.heads;
        let scale = (1.0 / (head_dim as f64).sqrt()) as f32;
        // The query projection's precision is the model's: the products of attention follow it.
        let bf16 = self.in_proj[0].is_bf16();
        let out = kernels::with_values(query, |query| {
            kernels::with_values(key_value, |key_value| {
                let mut out = Vec::with_capacity(batch * len_q * dim);
                for item in 0..batch {
                    let x_q = &query[item * len_q * dim..][..len_q * dim];
                    let x_kv = &key_value[item * len_k * dim..][..len_k * dim];
                    let project = |x: &[f32], rows: usize, part: usize| {
                        let _p = crate::profile::scope("attention.in_proj");
                        self.in_proj[part].forward_values(x, rows)
                    };
                    let mut q = project(x_q, len_q, 0)?;
                    q.iter_mut().for_each(|v| *v *= scale);
                    let k = project(x_kv, len_k, 1)?;
                    let v = project(x_kv, len_k, 2)?;
                    let _p = crate::profile::scope("attention.heads");
                    out.extend(kernels::attention(
                        &q,
                        &k,
                        &v,
                        (len_q, len_k),
                        self.heads,
                        bf16,
                    ));
                }
                Ok::<_, candle_core::Error>(out)
            })
        })???;
        let attended = kernels::tensor(out, &[batch, len_q, dim])?;
        let _p = crate::profile::scope("attention.out_proj");
        linear_cpu(&self.out_proj, &attended, false)
    }
}

/// A torch `Linear` on the CPU kernels, with an optional GELU fused after it.
fn linear_cpu(layer: &Linear, x: &Tensor, gelu_after: bool) -> Result<Tensor> {
    let dims = x.dims();
    let d_in = *dims.last().unwrap_or(&0);
    let rows = x.elem_count() / d_in.max(1);
    let mut out = kernels::with_values(x, |x| layer.forward_values(x, rows))??;
    if gelu_after {
        let _p = crate::profile::scope("gelu");
        kernels::gelu_in_place(&mut out);
    }
    let mut shape = dims.to_vec();
    *shape.last_mut().expect("a linear input has an axis") = layer.out_features();
    kernels::tensor(out, &shape)
}

#[derive(Debug, Clone)]
struct FeedForward {
    linear1: Linear,
    linear2: Linear,
    gelu: bool,
}

impl FeedForward {
    fn new(cfg: &TransformerConfig, vb: &VarBuilder) -> Result<Self> {
        Ok(Self {
            linear1: Linear::new(cfg.dim, cfg.hidden, cfg.precision, vb.pp("linear1"))?,
            linear2: Linear::new(cfg.hidden, cfg.dim, cfg.precision, vb.pp("linear2"))?,
            gelu: cfg.gelu,
        })
    }
}

impl Module for FeedForward {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() {
            let h = {
                let _p = crate::profile::scope("ff.linear1");
                if self.gelu {
                    linear_cpu(&self.linear1, x, true)?
                } else {
                    linear_cpu(&self.linear1, x, false)?.relu()?
                }
            };
            let _p = crate::profile::scope("ff.linear2");
            return linear_cpu(&self.linear2, &h, false);
        }
        let p = crate::profile::scope("ff.linear1");
        let h = self.linear1.forward(x)?;
        drop(p);
        let h = if self.gelu { gelu(&h)? } else { h.relu()? };
        let _p = crate::profile::scope("ff.linear2");
        self.linear2.forward(&h)
    }
}

/// LayerScale on `[B, T, C]`, or nothing when the model has none.
#[derive(Debug, Clone)]
struct LayerScale(Option<Tensor>);

impl LayerScale {
    fn new(cfg: &TransformerConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self(if cfg.layer_scale {
            Some(vb.get(cfg.dim, "scale")?)
        } else {
            None
        }))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.0 {
            Some(scale) => x.broadcast_mul(scale),
            None => Ok(x.clone()),
        }
    }

    /// The residual `x + forward(y)`, in one pass where it can.
    fn residual(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        match &self.0 {
            Some(scale) => add_scaled(x, y, scale),
            None => x + y,
        }
    }
}

#[derive(Debug, Clone)]
struct NormOut(Option<(Tensor, Tensor)>);

impl NormOut {
    fn new(cfg: &TransformerConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self(if cfg.norm_first && cfg.norm_out {
            Some((vb.get(cfg.dim, "weight")?, vb.get(cfg.dim, "bias")?))
        } else {
            None
        }))
    }

    fn forward(&self, x: Tensor) -> Result<Tensor> {
        match &self.0 {
            Some((w, b)) => group_norm_channels_last(&x, w, b),
            None => Ok(x),
        }
    }
}

/// `MyTransformerEncoderLayer`: self-attention and feed-forward, batch first.
#[derive(Debug, Clone)]
pub struct SelfAttentionLayer {
    self_attn: MultiheadAttention,
    ff: FeedForward,
    norm1: LayerNorm,
    norm2: LayerNorm,
    norm_out: NormOut,
    gamma_1: LayerScale,
    gamma_2: LayerScale,
    norm_first: bool,
}

impl SelfAttentionLayer {
    pub fn new(cfg: &TransformerConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            self_attn: MultiheadAttention::new(
                cfg.dim,
                cfg.heads,
                cfg.precision,
                vb.pp("self_attn"),
            )?,
            ff: FeedForward::new(cfg, &vb)?,
            norm1: layer_norm(cfg.dim, vb.pp("norm1"))?,
            norm2: layer_norm(cfg.dim, vb.pp("norm2"))?,
            norm_out: NormOut::new(cfg, vb.pp("norm_out"))?,
            gamma_1: LayerScale::new(cfg, vb.pp("gamma_1"))?,
            gamma_2: LayerScale::new(cfg, vb.pp("gamma_2"))?,
            norm_first: cfg.norm_first,
        })
    }
}

impl Module for SelfAttentionLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.norm_first {
            let h = self.norm1.forward(x)?;
            let x = self.gamma_1.residual(x, &self.self_attn.forward(&h, &h)?)?;
            let x = self
                .gamma_2
                .residual(&x, &self.ff.forward(&self.norm2.forward(&x)?)?)?;
            self.norm_out.forward(x)
        } else {
            let x = self
                .norm1
                .forward(&(x + self.gamma_1.forward(&self.self_attn.forward(x, x)?)?)?)?;
            self.norm2
                .forward(&(&x + self.gamma_2.forward(&self.ff.forward(&x)?)?)?)
        }
    }
}

/// `CrossTransformerEncoderLayer`: the queries of one branch attend to the other branch.
#[derive(Debug, Clone)]
pub struct CrossAttentionLayer {
    cross_attn: MultiheadAttention,
    ff: FeedForward,
    norm1: LayerNorm,
    norm2: LayerNorm,
    norm3: LayerNorm,
    norm_out: NormOut,
    gamma_1: LayerScale,
    gamma_2: LayerScale,
    norm_first: bool,
}

impl CrossAttentionLayer {
    pub fn new(cfg: &TransformerConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            cross_attn: MultiheadAttention::new(
                cfg.dim,
                cfg.heads,
                cfg.precision,
                vb.pp("cross_attn"),
            )?,
            ff: FeedForward::new(cfg, &vb)?,
            norm1: layer_norm(cfg.dim, vb.pp("norm1"))?,
            norm2: layer_norm(cfg.dim, vb.pp("norm2"))?,
            norm3: layer_norm(cfg.dim, vb.pp("norm3"))?,
            norm_out: NormOut::new(cfg, vb.pp("norm_out"))?,
            gamma_1: LayerScale::new(cfg, vb.pp("gamma_1"))?,
            gamma_2: LayerScale::new(cfg, vb.pp("gamma_2"))?,
            norm_first: cfg.norm_first,
        })
    }

    /// `q`: `[B, T, C]` of this branch, `k`: `[B, S, C]` of the other branch.
    pub fn forward(&self, q: &Tensor, k: &Tensor) -> Result<Tensor> {
        if self.norm_first {
            let attended = self
                .cross_attn
                .forward(&self.norm1.forward(q)?, &self.norm2.forward(k)?)?;
            let x = self.gamma_1.residual(q, &attended)?;
            let x = self
                .gamma_2
                .residual(&x, &self.ff.forward(&self.norm3.forward(&x)?)?)?;
            self.norm_out.forward(x)
        } else {
            let x = self
                .norm1
                .forward(&(q + self.gamma_1.forward(&self.cross_attn.forward(q, k)?)?)?)?;
            self.norm2
                .forward(&(&x + self.gamma_2.forward(&self.ff.forward(&x)?)?)?)
        }
    }
}

#[derive(Debug, Clone)]
enum LayerPair {
    SelfAttention(SelfAttentionLayer, SelfAttentionLayer),
    CrossAttention(CrossAttentionLayer, CrossAttentionLayer),
}

/// `CrossTransformerEncoder`.
#[derive(Debug)]
pub struct CrossTransformerEncoder {
    cfg: TransformerConfig,
    norm_in: Option<(LayerNorm, LayerNorm)>,
    layers: Vec<LayerPair>,
    /// The weighted positional embeddings of the last shape seen: every segment of a track
    /// has the same shape, and the 2-D one takes a million sines and cosines.
    positions: std::sync::Mutex<Option<(PositionKey, Tensor, Tensor)>>,
}

/// `(channels, frequency rows, frames, time steps, device)` of a positional embedding.
type PositionKey = (usize, usize, usize, usize, candle_core::DeviceLocation);

impl CrossTransformerEncoder {
    pub fn new(cfg: TransformerConfig, vb: VarBuilder) -> Result<Self> {
        let norm_in = if cfg.norm_in {
            Some((
                layer_norm(cfg.dim, vb.pp("norm_in"))?,
                layer_norm(cfg.dim, vb.pp("norm_in_t"))?,
            ))
        } else {
            None
        };
        let classic_parity = usize::from(cfg.cross_first);
        let layers = (0..cfg.layers)
            .map(|i| {
                let (vb_f, vb_t) = (vb.pp("layers").pp(i), vb.pp("layers_t").pp(i));
                Ok(if i % 2 == classic_parity {
                    LayerPair::SelfAttention(
                        SelfAttentionLayer::new(&cfg, vb_f)?,
                        SelfAttentionLayer::new(&cfg, vb_t)?,
                    )
                } else {
                    LayerPair::CrossAttention(
                        CrossAttentionLayer::new(&cfg, vb_f)?,
                        CrossAttentionLayer::new(&cfg, vb_t)?,
                    )
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            cfg,
            norm_in,
            layers,
            positions: std::sync::Mutex::new(None),
        })
    }

    /// Layer `index` of the frequency branch, when it is a self-attention layer.
    pub fn freq_self_attention(&self, index: usize) -> Option<&SelfAttentionLayer> {
        match self.layers.get(index)? {
            LayerPair::SelfAttention(freq, _) => Some(freq),
            LayerPair::CrossAttention(..) => None,
        }
    }

    /// Layer `index` of the frequency branch, when it is a cross-attention layer.
    pub fn freq_cross_attention(&self, index: usize) -> Option<&CrossAttentionLayer> {
        match self.layers.get(index)? {
            LayerPair::CrossAttention(freq, _) => Some(freq),
            LayerPair::SelfAttention(..) => None,
        }
    }

    /// The 2-D (frequency branch) and 1-D (time branch) embeddings, times their weight.
    fn positions(
        &self,
        c: usize,
        fr: usize,
        t1: usize,
        t2: usize,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let key = (c, fr, t1, t2, device.location());
        let mut cache = self.positions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached, pos_2d, pos_1d)) = cache.as_ref()
            && *cached == key
        {
            return Ok((pos_2d.clone(), pos_1d.clone()));
        }
        let w = self.cfg.weight_pos_embed;
        let pos_2d = (sin_embedding_2d(c, fr, t1, self.cfg.max_period, device)? * w)?;
        let pos_1d = (sin_embedding(t2, c, self.cfg.max_period, device)? * w)?;
        *cache = Some((key, pos_2d.clone(), pos_1d.clone()));
        Ok((pos_2d, pos_1d))
    }

    /// `x`: frequency branch `[B, C, F, T1]`; `xt`: time branch `[B, C, T2]`.
    pub fn forward(&self, x: &Tensor, xt: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, c, fr, t1) = x.dims4()?;
        let (_, _, t2) = xt.dims3()?;
        let device = x.device();
        // "b c fr t1 -> b (t1 fr) c"
        let mut x = x
            .permute((0, 3, 2, 1))?
            .contiguous()?
            .reshape((b, t1 * fr, c))?;
        let mut xt = xt.transpose(1, 2)?.contiguous()?;
        if let Some((norm, norm_t)) = &self.norm_in {
            x = norm.forward(&x)?;
            xt = norm_t.forward(&xt)?;
        }
        let (pos_2d, pos_1d) = self.positions(c, fr, t1, t2, device)?;
        x = x.broadcast_add(&pos_2d)?;
        xt = xt.broadcast_add(&pos_1d)?;

        for layer in &self.layers {
            match layer {
                LayerPair::SelfAttention(freq, time) => {
                    x = freq.forward(&x)?;
                    xt = time.forward(&xt)?;
                }
                LayerPair::CrossAttention(freq, time) => {
                    let new_x = freq.forward(&x, &xt)?;
                    xt = time.forward(&xt, &x)?;
                    x = new_x;
                }
            }
        }
        let x = x
            .reshape((b, t1, fr, c))?
            .permute((0, 3, 2, 1))?
            .contiguous()?;
        let xt = xt.transpose(1, 2)?.contiguous()?;
        Ok((x, xt))
    }
}

/// `create_sin_embedding(length, dim)` as `[length, dim]`, computed in f32 like torch.
pub fn sin_embedding(
    length: usize,
    dim: usize,
    max_period: f64,
    device: &Device,
) -> Result<Tensor> {
    let half = dim / 2;
    let mut data = vec![0f32; length * dim];
    for pos in 0..length {
        for a in 0..half {
            let exponent = a as f32 / (half as f32 - 1.0);
            let phase = pos as f32 / (max_period as f32).powf(exponent);
            data[pos * dim + a] = phase.cos();
            data[pos * dim + half + a] = phase.sin();
        }
    }
    Tensor::from_vec(data, (length, dim), device)?.to_dtype(DType::F32)
}

/// `create_2d_sin_embedding(dim, height=fr, width=t1)`, laid out as the transformer's tokens:
/// `[t1 * fr, dim]` with token `t * fr + f`.
pub fn sin_embedding_2d(
    dim: usize,
    fr: usize,
    t1: usize,
    max_period: f64,
    device: &Device,
) -> Result<Tensor> {
    let half = dim / 2;
    let div_term: Vec<f32> = (0..half)
        .step_by(2)
        .map(|i| (i as f32 * -((max_period as f32).ln() / half as f32)).exp())
        .collect();
    let mut data = vec![0f32; t1 * fr * dim];
    for t in 0..t1 {
        for f in 0..fr {
            let row = &mut data[(t * fr + f) * dim..(t * fr + f + 1) * dim];
            for (j, div) in div_term.iter().enumerate() {
                let (pw, ph) = (t as f32 * div, f as f32 * div);
                row[2 * j] = pw.sin();
                row[2 * j + 1] = pw.cos();
                row[half + 2 * j] = ph.sin();
                row[half + 2 * j + 1] = ph.cos();
            }
        }
    }
    Tensor::from_vec(data, (t1 * fr, dim), device)
}
