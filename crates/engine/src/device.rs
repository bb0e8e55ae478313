//! Where the model runs: the CPU, or a GPU when this build has its backend.

use serde::{Deserialize, Serialize};
use stemdeck_demucs::{Device, Precision};

use crate::error::{EngineError, Result};
use crate::pipeline::options::OptionError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum DeviceChoice {
    #[default]
    Cpu,
    Cuda,
    Metal,
}

impl DeviceChoice {
    pub const ALL: [DeviceChoice; 3] = [DeviceChoice::Cpu, DeviceChoice::Cuda, DeviceChoice::Metal];

    /// The name settings files and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
            DeviceChoice::Metal => "metal",
        }
    }

    /// The devices this build was compiled for, the CPU first.
    pub fn compiled() -> Vec<DeviceChoice> {
        Self::ALL.into_iter().filter(|d| d.is_compiled()).collect()
    }

    pub fn is_compiled(self) -> bool {
        match self {
            DeviceChoice::Cpu => true,
            DeviceChoice::Cuda => cfg!(feature = "cuda"),
            DeviceChoice::Metal => cfg!(feature = "metal"),
        }
    }

    pub fn open(self) -> Result<Device> {
        let opened = match self {
            DeviceChoice::Cpu => return Ok(Device::Cpu),
            _ if !self.is_compiled() => {
                return Err(OptionError::DeviceNotBuilt { device: self }.into());
            }
            DeviceChoice::Cuda => Device::new_cuda(0),
            DeviceChoice::Metal => Device::new_metal(0),
        };
        opened.map_err(|source| EngineError::DeviceUnavailable {
            device: self,
            source,
        })
    }

    /// What `precision` computes with on this device: fast is `bf16` only on a CPU that
    /// has it (GPUs run candle's own `f32` kernels).
    pub fn effective_precision(self, precision: Precision) -> Precision {
        match self {
            DeviceChoice::Cpu => precision.effective(&Device::Cpu),
            DeviceChoice::Cuda | DeviceChoice::Metal => Precision::Exact,
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    /// The device as a musician knows it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceChoice::Cpu => "the CPU",
            DeviceChoice::Cuda => "a CUDA GPU",
            DeviceChoice::Metal => "a Metal GPU",
        })
    }
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| format!("unknown device {s:?}; choose cpu, cuda or metal"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_is_always_built_and_names_round_trip() {
        assert_eq!(DeviceChoice::compiled()[0], DeviceChoice::Cpu);
        for device in DeviceChoice::ALL {
            assert_eq!(device.name().parse::<DeviceChoice>(), Ok(device));
            let json = serde_json::to_string(&device).unwrap();
            assert_eq!(json, format!("\"{}\"", device.name()));
        }
        if !cfg!(feature = "cuda") {
            let err = DeviceChoice::Cuda.open().unwrap_err().to_string();
            assert!(err.contains("cannot run on a CUDA GPU"), "{err}");
        }
    }
}
