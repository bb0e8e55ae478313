//! `demucs.htdemucs.HTDemucs`: the hybrid (spectrogram + waveform) transformer Demucs.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use realfft::num_complex::Complex32;

use crate::Precision;
use crate::config::HTDemucsConfig;
use crate::error::DemucsError;
use crate::layers::{DConvConfig, HDecLayer, HEncLayer, LayerConfig};
use crate::nn::{Conv1d, mean_std_per_item};
use crate::stft::{Spectrogram, Stft};
use crate::transformer::{CrossTransformerEncoder, TransformerConfig};
use crate::weights::Checkpoint;

#[derive(Debug, Clone)]
struct BottomChannels {
    upsampler: Conv1d,
    downsampler: Conv1d,
    upsampler_t: Conv1d,
    downsampler_t: Conv1d,
}

#[derive(Debug)]
pub struct HTDemucs {
    cfg: HTDemucsConfig,
    encoder: Vec<HEncLayer>,
    decoder: Vec<HDecLayer>,
    tencoder: Vec<HEncLayer>,
    tdecoder: Vec<HDecLayer>,
    /// The frequency embedding, already multiplied by `emb_scale * freq_emb`, as `[1, C, F, 1]`.
    freq_emb: Option<Tensor>,
    bottom: Option<BottomChannels>,
    crosstransformer: Option<CrossTransformerEncoder>,
    stft: Stft,
    device: Device,
}

impl HTDemucs {
    pub fn new(cfg: &HTDemucsConfig, vb: VarBuilder) -> Result<Self> {
        let audio_channels = cfg.audio_channels;
        let mut chin = audio_channels;
        let mut chin_z = chin * 2; // complex as channels
        let mut chout = cfg.channels_time.unwrap_or(cfg.channels);
        let mut chout_z = cfg.channels;
        let mut freqs = cfg.nfft / 2;
        let dconv = DConvConfig {
            depth: cfg.dconv_depth,
            compress: cfg.dconv_comp,
            precision: cfg.precision,
        };
        let mut encoder = Vec::new();
        let mut decoder = Vec::new();
        let mut tencoder = Vec::new();
        let mut tdecoder = Vec::new();
        let mut freq_emb = None;

        for index in 0..cfg.depth {
            let freq = freqs > 1;
            let (kernel_size, stride) = if freq {
                (cfg.kernel_size, cfg.stride)
            } else {
                (cfg.time_stride * 2, cfg.time_stride)
            };
            let base = LayerConfig {
                chin: chin_z,
                chout: chout_z,
                kernel_size,
                stride,
                freq,
                norm: index >= cfg.norm_starts,
                norm_groups: cfg.norm_groups,
                rewrite: cfg.rewrite,
                context: cfg.context_enc,
                dconv: (cfg.dconv_mode & 1 != 0).then_some(dconv),
                precision: cfg.precision,
            };
            encoder.push(HEncLayer::new(base, vb.pp("encoder").pp(index))?);
            if freq {
                let time = LayerConfig {
                    chin,
                    chout,
                    kernel_size: cfg.kernel_size,
                    stride: cfg.stride,
                    freq: false,
                    ..base
                };
                tencoder.push(HEncLayer::new(time, vb.pp("tencoder").pp(index))?);
            }
            if index == 0 {
                chin = audio_channels * cfg.num_sources();
                chin_z = chin * 2;
            }
            let dec_dconv = (cfg.dconv_mode & 2 != 0).then_some(dconv);
            let dec = LayerConfig {
                chin: chout_z,
                chout: chin_z,
                context: cfg.context,
                dconv: dec_dconv,
                ..base
            };
            decoder.insert(0, (index, dec));
            if freq {
                let tdec = LayerConfig {
                    chin: chout,
                    chout: chin,
                    kernel_size: cfg.kernel_size,
                    stride: cfg.stride,
                    freq: false,
                    context: cfg.context,
                    dconv: dec_dconv,
                    ..base
                };
                tdecoder.insert(0, (index, tdec));
            }
            chin = chout;
            chin_z = chout_z;
            chout = (cfg.growth * chout as f64) as usize;
            chout_z = (cfg.growth * chout_z as f64) as usize;
            if freq {
                freqs = if freqs <= cfg.kernel_size {
                    1
                } else {
                    freqs / cfg.stride
                };
            }
            if index == 0 && cfg.freq_emb > 0.0 {
                let weight = vb
                    .pp("freq_emb")
                    .pp("embedding")
                    .get((freqs, chin_z), "weight")?;
                let scaled = (weight * (cfg.emb_scale * cfg.freq_emb))?;
                freq_emb = Some(scaled.t()?.reshape((1, chin_z, freqs, 1))?);
            }
        }
        // Decoder layers are numbered from the bottom up, the reverse of their construction.
        let decoder = decoder
            .into_iter()
            .enumerate()
            .map(|(i, (index, c))| HDecLayer::new(c, index == 0, vb.pp("decoder").pp(i)))
            .collect::<Result<_>>()?;
        let tdecoder = tdecoder
            .into_iter()
            .enumerate()
            .map(|(i, (index, c))| HDecLayer::new(c, index == 0, vb.pp("tdecoder").pp(i)))
            .collect::<Result<_>>()?;

        let mut transformer_channels = cfg.transformer_channels();
        let bottom = if cfg.bottom_channels > 0 {
            let (t, b, p) = (transformer_channels, cfg.bottom_channels, cfg.precision);
            transformer_channels = b;
            Some(BottomChannels {
                upsampler: Conv1d::new(t, b, 1, 1, 0, 1, p, vb.pp("channel_upsampler"))?,
                downsampler: Conv1d::new(b, t, 1, 1, 0, 1, p, vb.pp("channel_downsampler"))?,
                upsampler_t: Conv1d::new(t, b, 1, 1, 0, 1, p, vb.pp("channel_upsampler_t"))?,
                downsampler_t: Conv1d::new(b, t, 1, 1, 0, 1, p, vb.pp("channel_downsampler_t"))?,
            })
        } else {
            None
        };
        let crosstransformer = if cfg.t_layers > 0 {
            let tcfg = TransformerConfig {
                dim: transformer_channels,
                heads: cfg.t_heads,
                hidden: (transformer_channels as f64 * cfg.t_hidden_scale) as usize,
                layers: cfg.t_layers,
                norm_in: cfg.t_norm_in,
                norm_first: cfg.t_norm_first,
                norm_out: cfg.t_norm_out,
                layer_scale: cfg.t_layer_scale,
                gelu: cfg.t_gelu,
                cross_first: cfg.t_cross_first,
                max_period: cfg.t_max_period,
                weight_pos_embed: cfg.t_weight_pos_embed,
                precision: cfg.precision,
            };
            Some(CrossTransformerEncoder::new(
                tcfg,
                vb.pp("crosstransformer"),
            )?)
        } else {
            None
        };
        Ok(Self {
            cfg: cfg.clone(),
            encoder,
            decoder,
            tencoder,
            tdecoder,
            freq_emb,
            bottom,
            crosstransformer,
            stft: Stft::new(cfg.nfft, cfg.hop_length()),
            device: vb.device().clone(),
        })
    }

    /// Builds the model from a checkpoint's tensors, checking every name and shape, in
    /// exact `f32` precision.
    pub fn from_checkpoint(checkpoint: &Checkpoint, device: &Device) -> crate::Result<Self> {
        Self::from_checkpoint_with(checkpoint, device, Precision::Exact)
    }

    /// [`HTDemucs::from_checkpoint`] multiplying in `precision`; with [`Precision::Fast`]
    /// the weights' `bf16` copies are packed here, once.
    pub fn from_checkpoint_with(
        checkpoint: &Checkpoint,
        device: &Device,
        precision: Precision,
    ) -> crate::Result<Self> {
        let cfg = HTDemucsConfig {
            precision,
            ..checkpoint.config.clone()
        };
        let tensors = checkpoint
            .tensors
            .iter()
            .map(|(k, t)| Ok((k.clone(), t.to_device(device)?)))
            .collect::<Result<_>>()?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        Self::new(&cfg, vb).map_err(|e| DemucsError::WeightMismatch(e.to_string()))
    }

    pub fn config(&self) -> &HTDemucsConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// What this model really multiplies with (fast falls back to exact without `bf16`).
    pub fn precision(&self) -> Precision {
        self.cfg.precision.effective(&self.device)
    }

    /// `mix`: `[B, C, L]` with `L` at most the training segment. Returns `[B, S, C, L]`.
    pub fn forward(&self, mix: &Tensor) -> Result<Tensor> {
        let _p = crate::profile::scope(crate::profile::FORWARD);
        let (batch, channels, length) = mix.dims3()?;
        let training_length = self.cfg.segment_samples();
        let mix = if self.cfg.use_train_segment && length < training_length {
            mix.pad_with_zeros(2, 0, training_length - length)?
        } else {
            mix.clone()
        };
        let padded_length = mix.dim(2)?;

        let p = crate::profile::scope("stft");
        let spec = self.spectrogram(&mix)?;
        drop(p);
        let (mean, std) = mean_std_per_item(&spec)?;
        let mut x = spec.broadcast_sub(&mean)?.broadcast_div(&(&std + 1e-5)?)?;
        drop(spec);
        let (_, _, freq_bins, frames) = x.dims4()?;

        let (meant, stdt) = mean_std_per_item(&mix)?;
        let mut xt = mix.broadcast_sub(&meant)?.broadcast_div(&(&stdt + 1e-5)?)?;

        let mut saved = Vec::with_capacity(self.encoder.len());
        let mut saved_t = Vec::with_capacity(self.tencoder.len());
        let mut lengths_t = Vec::with_capacity(self.tencoder.len());
        for (idx, encode) in self.encoder.iter().enumerate() {
            if let Some(tenc) = self.tencoder.get(idx) {
                lengths_t.push(xt.dim(2)?);
                xt = tenc.forward(&xt)?;
                saved_t.push(xt.clone());
            }
            x = encode.forward(&x)?;
            if idx == 0
                && let Some(emb) = &self.freq_emb
            {
                x = x.broadcast_add(emb)?;
            }
            saved.push(x.clone());
        }

        if let Some(transformer) = &self.crosstransformer {
            let (b, c, f, t) = x.dims4()?;
            if let Some(bottom) = &self.bottom {
                x = bottom
                    .upsampler
                    .forward(&x.reshape((b, c, f * t))?)?
                    .reshape((b, (), f, t))?;
                xt = bottom.upsampler_t.forward(&xt)?;
            }
            let _p = crate::profile::scope("transformer (other)");
            (x, xt) = transformer.forward(&x, &xt)?;
            if let Some(bottom) = &self.bottom {
                let c_bottom = x.dim(1)?;
                x = bottom
                    .downsampler
                    .forward(&x.reshape((b, c_bottom, f * t))?)?
                    .reshape((b, c, f, t))?;
                xt = bottom.downsampler_t.forward(&xt)?;
            }
        }

        let offset = self.decoder.len() - self.tdecoder.len();
        for (idx, decode) in self.decoder.iter().enumerate() {
            let skip = saved.pop().expect("one skip per encoder layer");
            x = decode.forward_owned(x, skip, 0)?;
            if idx >= offset {
                let tdec = &self.tdecoder[idx - offset];
                let length_t = lengths_t.pop().expect("one length per time layer");
                let skip = saved_t.pop().expect("one skip per time layer");
                xt = tdec.forward_owned(xt, skip, length_t)?;
            }
        }

        let sources = self.cfg.num_sources();
        let x = x.reshape((batch, sources, channels * 2, freq_bins, frames))?;
        let p = crate::profile::scope("istft");
        // The spectrogram's normalisation is undone as the inverse STFT reads it.
        let x = self.inverse_spectrogram_scaled(&x, padded_length, &per_item(&std, &mean)?)?;
        drop(p);
        let xt = xt.reshape((batch, sources, channels, padded_length))?;
        if self.device.is_cpu() {
            // The waveform's too, in the one pass that adds the two branches.
            return denormalise_and_add(&xt, &per_item(&stdt, &meant)?, &x, length);
        }
        let xt = xt
            .broadcast_mul(&stdt.unsqueeze(1)?)?
            .broadcast_add(&meant.unsqueeze(1)?)?;
        (xt + x)?.narrow(3, 0, length)
    }

    /// `_spec` + `_magnitude` (complex as channels): `[B, C, L]` to `[B, 2C, F, T]` with
    /// channels ordered `c0.re, c0.im, c1.re, ...`.
    pub fn spectrogram(&self, mix: &Tensor) -> Result<Tensor> {
        let (batch, channels, _) = mix.dims3()?;
        let signals = mix
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .to_vec3::<f32>()?;
        // One signal per thread.
        let specs: Vec<Spectrogram> = signals
            .iter()
            .flatten()
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|signal| self.stft.model_spec(signal))
            .collect();
        let (bins, frames) = specs.first().map_or((0, 0), |s| (s.bins, s.frames));
        let mut data = vec![0f32; specs.len() * 2 * bins * frames];
        data.par_chunks_mut(2 * bins * frames)
            .zip(&specs)
            .for_each(|(out, spec)| {
                let (re, im) = out.split_at_mut(bins * frames);
                for ((r, i), c) in re.iter_mut().zip(im).zip(&spec.data) {
                    (*r, *i) = (c.re, c.im);
                }
            });
        Tensor::from_vec(data, (batch, channels * 2, bins, frames), &self.device)
    }

    /// `_mask` (complex as channels) + `_ispec`: `[B, S, 2C, F, T]` to `[B, S, C, length]`.
    pub fn inverse_spectrogram(&self, z: &Tensor, length: usize) -> Result<Tensor> {
        let batch = z.dim(0)?;
        self.inverse_spectrogram_scaled(z, length, &vec![(1.0, 0.0); batch])
    }

    /// [`HTDemucs::inverse_spectrogram`] of `z * scale + shift`, `(scale, shift)` per item.
    fn inverse_spectrogram_scaled(
        &self,
        z: &Tensor,
        length: usize,
        affine: &[(f32, f32)],
    ) -> Result<Tensor> {
        let (batch, sources, cac_channels, bins, frames) = z.dims5()?;
        let channels = cac_channels / 2;
        let flat = z
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let plane = bins * frames;
        // Every (item, source, channel) signal is its own inverse STFT: one per thread.
        let mut out = vec![0f32; batch * sources * channels * length];
        out.par_chunks_mut(length.max(1))
            .enumerate()
            .for_each(|(signal, out)| {
                let (bs, c) = (signal / channels, signal % channels);
                let (scale, shift) = affine[bs / sources];
                let re = &flat[(bs * cac_channels + 2 * c) * plane..][..plane];
                let im = &flat[(bs * cac_channels + 2 * c + 1) * plane..][..plane];
                let spec = Spectrogram {
                    bins,
                    frames,
                    data: re
                        .iter()
                        .zip(im)
                        .map(|(&r, &i)| Complex32::new(r * scale + shift, i * scale + shift))
                        .collect(),
                };
                out.copy_from_slice(&self.stft.model_ispec(&spec, length));
            });
        Tensor::from_vec(out, (batch, sources, channels, length), &self.device)
    }

    /// Encoder layer `index` of the frequency branch, for component tests.
    pub fn encoder_layer(&self, index: usize) -> &HEncLayer {
        &self.encoder[index]
    }

    pub fn time_encoder_layer(&self, index: usize) -> &HEncLayer {
        &self.tencoder[index]
    }

    pub fn decoder_layer(&self, index: usize) -> &HDecLayer {
        &self.decoder[index]
    }

    pub fn transformer(&self) -> Option<&CrossTransformerEncoder> {
        self.crosstransformer.as_ref()
    }

    pub fn stft(&self) -> &Stft {
        &self.stft
    }
}

/// Each batch item's `(std, mean)` from tensors of one value per item.
fn per_item(std: &Tensor, mean: &Tensor) -> Result<Vec<(f32, f32)>> {
    let std = std.flatten_all()?.to_vec1::<f32>()?;
    let mean = mean.flatten_all()?.to_vec1::<f32>()?;
    Ok(std.into_iter().zip(mean).collect())
}

/// `xt * std + mean + x` over `[B, S, C, L]`, cut to `length` frames, in one parallel pass
/// (the time branch denormalised by its item's statistics, plus the frequency branch).
fn denormalise_and_add(
    xt: &Tensor,
    affine: &[(f32, f32)],
    x: &Tensor,
    length: usize,
) -> Result<Tensor> {
    let (batch, sources, channels, padded) = xt.dims4()?;
    let out = crate::kernels::with_values(xt, |xt| {
        crate::kernels::with_values(x, |x| {
            let mut out = vec![0f32; batch * sources * channels * length];
            out.par_chunks_mut(length.max(1))
                .enumerate()
                .for_each(|(signal, out)| {
                    let (scale, shift) = affine[signal / (sources * channels)];
                    let at = signal * padded;
                    for ((o, &t), &f) in out.iter_mut().zip(&xt[at..at + length]).zip(&x[at..]) {
                        *o = t * scale + shift + f;
                    }
                });
            out
        })
    })??;
    Tensor::from_vec(out, (batch, sources, channels, length), xt.device())
}
