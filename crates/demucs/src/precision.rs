//! How the model multiplies its matrices: bit-faithful `f32`, or `bf16` inputs where the
//! CPU multiplies them natively.

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::kernels::bf16;

/// The arithmetic of the large matrix multiplies (convolutions, attention, linears).
/// Norms, softmax, residual sums, the STFT and the mask stay `f32` in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// `bf16` inputs with `f32` accumulation on CPUs with `avx512_bf16` (about twice as
    /// fast; separation quality within 0.02 dB SDR of PyTorch), `f32` elsewhere.
    Fast,
    /// `f32` throughout, as PyTorch computes: the stems match PyTorch's to over 80 dB.
    #[default]
    Exact,
}

impl Precision {
    /// Whether this CPU has the `bf16` multiplies that make [`Precision::Fast`] faster.
    pub fn fast_is_available() -> bool {
        bf16::supported()
    }

    /// The precision to use when the user has not chosen: fast where the CPU has it.
    pub fn recommended() -> Self {
        if Self::fast_is_available() {
            Self::Fast
        } else {
            Self::Exact
        }
    }

    /// What a model on `device` really computes with: [`Precision::Fast`] falls back to
    /// exact `f32` without `bf16` on the CPU, and on other devices (whose kernels are
    /// candle's).
    pub fn effective(self, device: &Device) -> Self {
        if self == Self::Fast && device.is_cpu() && bf16::supported() {
            Self::Fast
        } else {
            Self::Exact
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Exact => "exact",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fast" => Ok(Self::Fast),
            "exact" => Ok(Self::Exact),
            _ => Err(format!("unknown precision {s:?}: use fast or exact")),
        }
    }
}
