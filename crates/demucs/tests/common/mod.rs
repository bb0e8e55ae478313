//! Test support for the parity fixtures whose model weights are generated, not stored
//! (`six_stems.fixture`, `bag.fixture`; made by `tools/make_fixtures.py`).
//!
//! Such a fixture holds the model's kwargs and its parameter names and shapes in its
//! safetensors metadata, plus an input and PyTorch's output. The weights are rebuilt here,
//! bit for bit as numpy makes them, by the generator "splitmix64-uniform-v1":
//!
//! ```text
//! tensor_seed = fnv1a64(utf-8 name) ^ mix64(model_seed)
//! z_i         = mix64(tensor_seed + (i + 1) * 0x9E3779B97F4A7C15)   (wrapping u64)
//! u_i         = ((z_i >> 40) - 2^23) / 2^23                        (exact f32 in [-1, 1))
//! value_i     = f32(offset + factor * u_i)                          (offset, factor in f64)
//! ```
//!
//! `mix64` is SplitMix64's finaliser, so `z_i` is the `(i+1)`-th output of a SplitMix64
//! seeded with `tensor_seed`, `i` the row-major flat index. Per tensor:
//! - 2-D or more (conv, linear, embedding): offset 0, factor `sqrt(3 / fan_in)` (standard
//!   deviation `1/sqrt(fan_in)`, `fan_in = shape[1] * prod(shape[2..])` as torch counts it);
//! - 1-D whose name ends in `weight` or `scale` (norm gains, LayerScale): `1 + 0.5 u`;
//! - other 1-D (biases): `0.2 u`.
//!
//! That keeps the activations healthy and every branch of the model audible in its output.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use serde_json::Value;
use stemdeck_demucs::{Checkpoint, HTDemucs, HTDemucsConfig, Planar};

/// The generator's name as the fixtures record it.
pub const GENERATOR: &str = "splitmix64-uniform-v1";

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01B3)
    })
}

pub fn tensor_seed(model_seed: u64, name: &str) -> u64 {
    fnv1a64(name) ^ mix64(model_seed)
}

/// The values of parameter `name` of shape `shape` for the model seeded `model_seed`,
/// row-major, exactly as `generated_tensor` in tools/make_fixtures.py.
pub fn generated_values(model_seed: u64, name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let (offset, factor) = if shape.len() >= 2 {
        let fan_in: usize = shape[1..].iter().product();
        (0.0, (3.0 / fan_in as f64).sqrt())
    } else if name.ends_with("weight") || name.ends_with("scale") {
        (1.0, 0.5)
    } else {
        (0.0, 0.2)
    };
    let seed = tensor_seed(model_seed, name);
    (1..=n as u64)
        .map(|i| {
            let z = mix64(seed.wrapping_add(i.wrapping_mul(GAMMA)));
            let u = ((z >> 40) as i64 - (1 << 23)) as f64 / (1u64 << 23) as f64;
            (offset + factor * u) as f32
        })
        .collect()
}

/// A generated-weights fixture: the model description and the tensors it carries.
pub struct GeneratedFixture {
    pub metadata: HashMap<String, String>,
    pub kwargs: Value,
    pub params: Vec<(String, Vec<usize>)>,
    pub tensors: HashMap<String, Tensor>,
}

impl GeneratedFixture {
    pub fn load(name: &str) -> Self {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let metadata = header.metadata().clone().expect("fixture metadata");
        assert_eq!(
            metadata.get("generator").map(String::as_str),
            Some(GENERATOR),
            "{name} was made with another weight generator"
        );
        let kwargs: Value = serde_json::from_str(&metadata["kwargs"]).unwrap();
        let params: Vec<(String, Vec<usize>)> = serde_json::from_str(&metadata["params"]).unwrap();
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
        Self {
            metadata,
            kwargs,
            params,
            tensors,
        }
    }

    /// A metadata entry, parsed from its JSON.
    pub fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> T {
        serde_json::from_str(
            self.metadata
                .get(key)
                .unwrap_or_else(|| panic!("no {key} in the fixture metadata")),
        )
        .unwrap()
    }

    pub fn config(&self) -> HTDemucsConfig {
        HTDemucsConfig::from_kwargs_json(&self.kwargs).unwrap()
    }

    /// The checkpoint of the model seeded `model_seed`: the fixture's config, every listed
    /// parameter from the generator.
    pub fn checkpoint(&self, model_seed: u64) -> Checkpoint {
        let tensors = self
            .params
            .iter()
            .map(|(name, shape)| {
                let values = generated_values(model_seed, name, shape);
                let tensor = Tensor::from_vec(values, shape.as_slice(), &Device::Cpu).unwrap();
                (name.clone(), tensor)
            })
            .collect();
        Checkpoint {
            config: self.config(),
            tensors,
        }
    }

    pub fn model(&self, model_seed: u64) -> HTDemucs {
        HTDemucs::from_checkpoint(&self.checkpoint(model_seed), &Device::Cpu).unwrap()
    }

    /// A `[channels, length]` tensor as planar audio.
    pub fn planar(&self, key: &str) -> Planar {
        self.tensors[key].to_vec2::<f32>().unwrap()
    }

    /// A `[sources, channels, length]` tensor as one planar buffer per source.
    pub fn stems(&self, key: &str) -> Vec<Planar> {
        self.tensors[key].to_vec3::<f32>().unwrap()
    }
}

/// How close one estimate is to its reference.
#[derive(Debug, Clone, Copy)]
pub struct Parity {
    pub max_abs_error: f32,
    /// Reference energy over error energy, in dB.
    pub snr_db: f64,
    pub reference_peak: f32,
}

pub fn parity(ours: &Planar, reference: &Planar) -> Parity {
    assert_eq!(ours.len(), reference.len(), "channel counts differ");
    let (mut signal, mut noise, mut max_abs_error, mut reference_peak) = (0f64, 0f64, 0f32, 0f32);
    for (a, b) in ours.iter().zip(reference) {
        assert_eq!(a.len(), b.len(), "lengths differ");
        for (&x, &y) in a.iter().zip(b) {
            let e = x - y;
            max_abs_error = max_abs_error.max(e.abs());
            reference_peak = reference_peak.max(y.abs());
            signal += (y as f64).powi(2);
            noise += (e as f64).powi(2);
        }
    }
    Parity {
        max_abs_error,
        snr_db: 10.0 * (signal / noise.max(1e-300)).log10(),
        reference_peak,
    }
}
