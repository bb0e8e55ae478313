//! The audio device side: a thin cpal stream whose callback pulls frames from a
//! [`MixerRenderer`]. Everything audible is decided in the renderer; this only adapts the
//! sample format and channel count.

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{SampleFormat, StreamConfig};

use crate::mixer::MixerRenderer;

/// Why sound cannot be played. The app shows these as they are.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("no audio output device was found; playback is off, export still works")]
    NoDevice,
    #[error(
        "the audio output {device} cannot be used ({reason}); playback is off, export still works"
    )]
    Unavailable { device: String, reason: String },
}

/// An output device and the stream settings Stemdeck will use on it.
pub struct OutputDevice {
    device: cpal::Device,
    name: String,
    config: StreamConfig,
    format: SampleFormat,
}

impl OutputDevice {
    /// The system's default output, at `preferred_rate` when the device supports it.
    pub fn default_output(preferred_rate: u32) -> Result<Self, OutputError> {
        let device = cpal::default_host()
            .default_output_device()
            .ok_or(OutputError::NoDevice)?;
        Self::configure(device, preferred_rate)
    }

    /// The output with this id, bare (`null`) or with its host (`alsa:null`, ALSA's sink
    /// that accepts audio unpaced, which tests use).
    pub fn by_id(id: &str, preferred_rate: u32) -> Result<Self, OutputError> {
        let host = cpal::default_host();
        let devices = host
            .output_devices()
            .map_err(|e| OutputError::Unavailable {
                device: id.into(),
                reason: e.to_string(),
            })?;
        let device = devices
            .into_iter()
            .find(|d| {
                d.id()
                    .is_ok_and(|d| d.id() == id || d.to_string().eq_ignore_ascii_case(id))
            })
            .ok_or(OutputError::NoDevice)?;
        Self::configure(device, preferred_rate)
    }

    fn configure(device: cpal::Device, preferred_rate: u32) -> Result<Self, OutputError> {
        let name = device
            .description()
            .map(|d| d.name().to_string())
            .unwrap_or_else(|_| "output".into());
        let unavailable = |reason: String| OutputError::Unavailable {
            device: name.clone(),
            reason,
        };
        let supported = device
            .supported_output_configs()
            .map_err(|e| unavailable(e.to_string()))?
            .filter(|c| matches!(c.sample_format(), SampleFormat::F32 | SampleFormat::I16))
            .find(|c| {
                c.channels() >= 1
                    && c.min_sample_rate() <= preferred_rate
                    && preferred_rate <= c.max_sample_rate()
            })
            .map(|c| c.with_sample_rate(preferred_rate));
        let chosen = match supported {
            Some(config) => config,
            None => device
                .default_output_config()
                .map_err(|e| unavailable(e.to_string()))?,
        };
        Ok(Self {
            name,
            format: chosen.sample_format(),
            config: chosen.config(),
            device,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rate the stems must be at for this device.
    pub fn sample_rate(&self) -> u32 {
        self.config.sample_rate
    }

    /// Starts pulling audio from `renderer`; playback lasts as long as the returned value.
    pub fn start(self, mut renderer: MixerRenderer) -> Result<AudioOutput, OutputError> {
        let unavailable = |reason: String| OutputError::Unavailable {
            device: self.name.clone(),
            reason,
        };
        let channels = self.config.channels as usize;
        let mut stereo: Vec<f32> = Vec::new();
        let on_error = |e: cpal::Error| tracing::warn!("audio output error: {e}");
        let stream = match self.format {
            SampleFormat::I16 => self.device.build_output_stream(
                self.config,
                move |out: &mut [i16], _: &cpal::OutputCallbackInfo| {
                    fill(&mut renderer, &mut stereo, channels, out.len(), |i, v| {
                        out[i] = (v.clamp(-1.0, 1.0) * i16::MAX as f32) as i16
                    })
                },
                on_error,
                None,
            ),
            _ => self.device.build_output_stream(
                self.config,
                move |out: &mut [f32], _: &cpal::OutputCallbackInfo| {
                    fill(&mut renderer, &mut stereo, channels, out.len(), |i, v| {
                        out[i] = v
                    })
                },
                on_error,
                None,
            ),
        }
        .map_err(|e| unavailable(e.to_string()))?;
        stream.play().map_err(|e| unavailable(e.to_string()))?;
        Ok(AudioOutput {
            _stream: stream,
            name: self.name,
            sample_rate: self.config.sample_rate,
        })
    }
}

/// Renders stereo and spreads it over the device's channels: mono gets the average, extra
/// channels stay silent.
fn fill(
    renderer: &mut MixerRenderer,
    stereo: &mut Vec<f32>,
    channels: usize,
    samples: usize,
    mut put: impl FnMut(usize, f32),
) {
    let frames = samples / channels.max(1);
    stereo.resize(frames * 2, 0.0);
    renderer.render(stereo);
    for f in 0..frames {
        let (l, r) = (stereo[2 * f], stereo[2 * f + 1]);
        match channels {
            1 => put(f, 0.5 * (l + r)),
            _ => {
                put(f * channels, l);
                put(f * channels + 1, r);
                for c in 2..channels {
                    put(f * channels + c, 0.0);
                }
            }
        }
    }
}

/// A running output stream.
pub struct AudioOutput {
    _stream: cpal::Stream,
    name: String,
    sample_rate: u32,
}

impl AudioOutput {
    pub fn device_name(&self) -> &str {
        &self.name
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }
}
