//! The audio device side: a thin cpal stream whose callback pulls frames from a
//! [`MixerRenderer`]. Everything audible is decided in the renderer; this only adapts the
//! sample format and channel count.

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use std::sync::mpsc;

use cpal::{SampleFormat, StreamConfig};

use crate::mixer::MixerRenderer;
use crate::rate::RateAdapter;

/// Why sound cannot be played: the system's own account, which the app keeps behind a
/// "details" toggle under its one-line notice.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("the system reports no audio output device")]
    NoDevice,
    #[error("{device}: {reason}")]
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

    /// The rate the device runs at (the mix is converted to it when the stems differ).
    pub fn sample_rate(&self) -> u32 {
        self.config.sample_rate
    }

    /// Starts pulling audio from `renderer`; playback lasts as long as the returned value.
    ///
    /// The stream lives on its own thread, because cpal streams may not cross threads and
    /// the app keeps the player in shared state. When the device refuses, the renderer
    /// comes back with the error so that playback can go on without sound.
    pub fn start(self, renderer: MixerRenderer) -> Result<AudioOutput, StartFailure> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let name = self.name.clone();
        let sample_rate = self.config.sample_rate;
        let spawned = std::thread::Builder::new()
            .name("stemdeck-audio-out".into())
            .spawn(move || {
                // The callback takes the renderer only once the stream runs, so a failed
                // start still owns it and can hand it back.
                let (mut handoff, pickup) = rtrb::RingBuffer::new(1);
                let stems_rate = renderer.sample_rate();
                match self.build_stream(pickup, stems_rate) {
                    Err(error) => {
                        let _ = ready_tx.send(Err(StartFailure {
                            error,
                            renderer: Some(Box::new(renderer)),
                        }));
                    }
                    Ok(stream) => {
                        let _ = handoff.push(renderer);
                        let _ = ready_tx.send(Ok(()));
                        // Keep the stream until the output is dropped.
                        let _ = stop_rx.recv();
                        drop(stream);
                    }
                }
            });
        let thread_failed = |reason: String| StartFailure {
            error: OutputError::Unavailable {
                device: name.clone(),
                reason,
            },
            renderer: None,
        };
        if let Err(e) = spawned {
            return Err(thread_failed(e.to_string()));
        }
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(AudioOutput {
                _stop: stop_tx,
                name,
                sample_rate,
            }),
            Ok(Err(failure)) => Err(failure),
            Err(_) => Err(thread_failed("the audio thread stopped".into())),
        }
    }

    fn build_stream(
        self,
        mut pickup: rtrb::Consumer<MixerRenderer>,
        stems_rate: u32,
    ) -> Result<cpal::Stream, OutputError> {
        let unavailable = |reason: String| OutputError::Unavailable {
            device: self.name.clone(),
            reason,
        };
        let channels = self.config.channels as usize;
        let mut renderer: Option<MixerRenderer> = None;
        let mut stereo: Vec<f32> = Vec::new();
        let mut adapter = if stems_rate == self.config.sample_rate {
            None
        } else {
            Some(
                RateAdapter::new(stems_rate, self.config.sample_rate).ok_or_else(|| {
                    unavailable(format!(
                        "cannot convert {stems_rate} Hz to the device's {} Hz",
                        self.config.sample_rate
                    ))
                })?,
            )
        };
        let on_error = |e: cpal::Error| tracing::warn!("audio output error: {e}");
        let mut pull = move |samples: usize, put: &mut dyn FnMut(usize, f32)| {
            if renderer.is_none() {
                renderer = pickup.pop().ok();
            }
            match renderer.as_mut() {
                Some(r) => fill(r, adapter.as_mut(), &mut stereo, channels, samples, put),
                None => (0..samples).for_each(|i| put(i, 0.0)),
            }
        };
        let stream = match self.format {
            SampleFormat::I16 => self.device.build_output_stream(
                self.config,
                move |out: &mut [i16], _: &cpal::OutputCallbackInfo| {
                    pull(out.len(), &mut |i, v| {
                        out[i] = (v.clamp(-1.0, 1.0) * i16::MAX as f32) as i16
                    })
                },
                on_error,
                None,
            ),
            _ => self.device.build_output_stream(
                self.config,
                move |out: &mut [f32], _: &cpal::OutputCallbackInfo| {
                    pull(out.len(), &mut |i, v| out[i] = v)
                },
                on_error,
                None,
            ),
        }
        .map_err(|e| unavailable(e.to_string()))?;
        stream.play().map_err(|e| unavailable(e.to_string()))?;
        Ok(stream)
    }
}

/// A device that would not start, with the renderer it was given (when it survived).
pub struct StartFailure {
    pub error: OutputError,
    pub renderer: Option<Box<MixerRenderer>>,
}

impl std::fmt::Debug for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StartFailure({})", self.error)
    }
}

/// Renders stereo and spreads it over the device's channels: mono gets the average, extra
/// channels stay silent.
fn fill(
    renderer: &mut MixerRenderer,
    adapter: Option<&mut RateAdapter>,
    stereo: &mut Vec<f32>,
    channels: usize,
    samples: usize,
    put: &mut dyn FnMut(usize, f32),
) {
    let frames = samples / channels.max(1);
    stereo.resize(frames * 2, 0.0);
    match adapter {
        Some(adapter) => adapter.render(renderer, stereo),
        None => renderer.render(stereo),
    }
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

/// A running output stream; dropping it stops the sound.
pub struct AudioOutput {
    /// Dropping this ends the audio thread, which drops the stream.
    _stop: mpsc::Sender<()>,
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
