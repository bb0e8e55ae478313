//! The HTDemucs hyper-parameters, read from a checkpoint's `kwargs` (never hard-coded).
//!
//! Field names and defaults are those of `demucs.htdemucs.HTDemucs.__init__` in demucs 4.1.0,
//! so a checkpoint's kwargs deserialize directly. Options that only matter for training are
//! accepted and ignored; options that change inference and that we do not implement are
//! refused by [`HTDemucsConfig::validate`] with a clear message.

use serde::Deserialize;

use crate::error::{DemucsError, Result};

/// Seconds of audio the model was trained on; demucs stores it as a `Fraction` (39/5 for
/// htdemucs), and the exact value decides the segment length in samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SegmentSeconds {
    Fraction { numerator: i64, denominator: i64 },
    Float(f64),
}

impl SegmentSeconds {
    pub fn as_f64(&self) -> f64 {
        match *self {
            SegmentSeconds::Fraction {
                numerator,
                denominator,
            } => numerator as f64 / denominator as f64,
            SegmentSeconds::Float(v) => v,
        }
    }

    /// `int(segment * samplerate)` as Python computes it.
    pub fn samples(&self, samplerate: usize) -> usize {
        match *self {
            SegmentSeconds::Fraction {
                numerator,
                denominator,
            } => (numerator * samplerate as i64).div_euclid(denominator) as usize,
            SegmentSeconds::Float(v) => (v * samplerate as f64).floor() as usize,
        }
    }
}

impl<'de> Deserialize<'de> for SegmentSeconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Fraction { numerator: i64, denominator: i64 },
        }
        match Raw::deserialize(d)? {
            Raw::Number(v) => Ok(SegmentSeconds::Float(v)),
            Raw::Fraction {
                numerator,
                denominator,
            } if denominator > 0 => Ok(SegmentSeconds::Fraction {
                numerator,
                denominator,
            }),
            Raw::Fraction { .. } => Err(serde::de::Error::custom(
                "segment fraction has a zero denominator",
            )),
        }
    }
}

fn d_true() -> bool {
    true
}
fn d_audio_channels() -> usize {
    2
}
fn d_channels() -> usize {
    48
}
fn d_growth() -> f64 {
    2.0
}
fn d_nfft() -> usize {
    4096
}
fn d_depth() -> usize {
    4
}
fn d_multi_freqs_depth() -> usize {
    3
}
fn d_freq_emb() -> f64 {
    0.2
}
fn d_emb_scale() -> f64 {
    10.0
}
fn d_kernel_size() -> usize {
    8
}
fn d_time_stride() -> usize {
    2
}
fn d_stride() -> usize {
    4
}
fn d_one() -> usize {
    1
}
fn d_norm_starts() -> usize {
    4
}
fn d_norm_groups() -> usize {
    4
}
fn d_dconv_depth() -> usize {
    2
}
fn d_dconv_comp() -> f64 {
    8.0
}
fn d_dconv_init() -> f64 {
    1e-3
}
fn d_t_layers() -> usize {
    5
}
fn d_t_emb() -> String {
    "sin".into()
}
fn d_t_hidden_scale() -> f64 {
    4.0
}
fn d_t_heads() -> usize {
    8
}
fn d_t_max_period() -> f64 {
    10000.0
}
fn d_t_weight_pos_embed() -> f64 {
    1.0
}
fn d_samplerate() -> usize {
    44100
}
fn d_segment() -> SegmentSeconds {
    SegmentSeconds::Float(10.0)
}

/// `demucs.htdemucs.HTDemucs` constructor arguments.
#[derive(Debug, Clone, Deserialize)]
pub struct HTDemucsConfig {
    pub sources: Vec<String>,
    #[serde(default = "d_audio_channels")]
    pub audio_channels: usize,
    #[serde(default = "d_channels")]
    pub channels: usize,
    #[serde(default)]
    pub channels_time: Option<usize>,
    #[serde(default = "d_growth")]
    pub growth: f64,
    #[serde(default = "d_nfft")]
    pub nfft: usize,
    #[serde(default)]
    pub wiener_iters: i64,
    #[serde(default = "d_true")]
    pub cac: bool,
    #[serde(default = "d_depth")]
    pub depth: usize,
    #[serde(default = "d_true")]
    pub rewrite: bool,
    #[serde(default)]
    pub multi_freqs: Option<Vec<f64>>,
    #[serde(default = "d_multi_freqs_depth")]
    pub multi_freqs_depth: usize,
    #[serde(default = "d_freq_emb")]
    pub freq_emb: f64,
    #[serde(default = "d_emb_scale")]
    pub emb_scale: f64,
    #[serde(default = "d_kernel_size")]
    pub kernel_size: usize,
    #[serde(default = "d_time_stride")]
    pub time_stride: usize,
    #[serde(default = "d_stride")]
    pub stride: usize,
    #[serde(default = "d_one")]
    pub context: usize,
    #[serde(default)]
    pub context_enc: usize,
    #[serde(default = "d_norm_starts")]
    pub norm_starts: usize,
    #[serde(default = "d_norm_groups")]
    pub norm_groups: usize,
    #[serde(default = "d_one")]
    pub dconv_mode: usize,
    #[serde(default = "d_dconv_depth")]
    pub dconv_depth: usize,
    #[serde(default = "d_dconv_comp")]
    pub dconv_comp: f64,
    #[serde(default = "d_dconv_init")]
    pub dconv_init: f64,
    #[serde(default)]
    pub bottom_channels: usize,
    #[serde(default = "d_t_layers")]
    pub t_layers: usize,
    #[serde(default = "d_t_emb")]
    pub t_emb: String,
    #[serde(default = "d_t_hidden_scale")]
    pub t_hidden_scale: f64,
    #[serde(default = "d_t_heads")]
    pub t_heads: usize,
    #[serde(default = "d_true")]
    pub t_norm_in: bool,
    #[serde(default)]
    pub t_norm_in_group: bool,
    #[serde(default)]
    pub t_group_norm: bool,
    #[serde(default = "d_true")]
    pub t_norm_first: bool,
    #[serde(default = "d_true")]
    pub t_norm_out: bool,
    #[serde(default = "d_t_max_period")]
    pub t_max_period: f64,
    #[serde(default = "d_true")]
    pub t_layer_scale: bool,
    #[serde(default = "d_true")]
    pub t_gelu: bool,
    #[serde(default = "d_t_weight_pos_embed")]
    pub t_weight_pos_embed: f64,
    #[serde(default)]
    pub t_sin_random_shift: usize,
    #[serde(default)]
    pub t_sparse_self_attn: bool,
    #[serde(default)]
    pub t_sparse_cross_attn: bool,
    #[serde(default)]
    pub t_cross_first: bool,
    #[serde(default = "d_samplerate")]
    pub samplerate: usize,
    #[serde(default = "d_segment")]
    pub segment: SegmentSeconds,
    #[serde(default = "d_true")]
    pub use_train_segment: bool,
    /// Not a checkpoint setting but how this copy of the model multiplies, like candle
    /// models' `use_flash_attn`; [`crate::HTDemucs::from_checkpoint_with`] sets it.
    #[serde(skip)]
    pub precision: crate::Precision,
}

impl HTDemucsConfig {
    pub fn from_kwargs_json(kwargs: &serde_json::Value) -> Result<Self> {
        let cfg: Self = serde_json::from_value(kwargs.clone()).map_err(|e| {
            DemucsError::Unsupported(format!("model settings not understood ({e})"))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Refuses the HTDemucs options that change inference and that this port does not
    /// implement. None of the published htdemucs models use them.
    pub fn validate(&self) -> Result<()> {
        let unsupported = |what: &str| Err(DemucsError::Unsupported(what.to_string()));
        if self.sources.is_empty() {
            return unsupported("a model with no sources");
        }
        if !self.cac {
            return unsupported("cac=False (magnitude masking with Wiener filtering)");
        }
        if self.multi_freqs.as_ref().is_some_and(|m| !m.is_empty()) {
            return unsupported("multi_freqs (split frequency bands)");
        }
        if self.t_layers > 0 && self.t_emb != "sin" {
            return unsupported(&format!("t_emb={:?} positional embedding", self.t_emb));
        }
        if self.t_sparse_self_attn || self.t_sparse_cross_attn {
            return unsupported("sparse attention (needs xformers)");
        }
        if self.t_norm_in_group || self.t_group_norm {
            return unsupported("group-norm transformer variants");
        }
        if self.nfft / 4 == 0 || self.kernel_size < 4 || self.stride == 0 {
            return unsupported("degenerate STFT or convolution sizes");
        }
        // Layers whose frequency axis collapses within the kernel ("last_freq") merge the
        // branches differently; no released HTDemucs has them.
        let mut freqs = self.nfft / 2;
        for _ in 0..self.depth {
            if freqs > 1 && freqs <= self.kernel_size {
                return unsupported(
                    "a frequency branch that collapses to one bin inside the encoder",
                );
            }
            if freqs > 1 {
                freqs /= self.stride;
            }
        }
        Ok(())
    }

    pub fn num_sources(&self) -> usize {
        self.sources.len()
    }

    pub fn hop_length(&self) -> usize {
        self.nfft / 4
    }

    /// The length in samples that one forward pass processes.
    pub fn segment_samples(&self) -> usize {
        self.segment.samples(self.samplerate)
    }

    pub fn transformer_channels(&self) -> usize {
        (self.channels as f64 * self.growth.powi(self.depth as i32 - 1)) as usize
    }
}
