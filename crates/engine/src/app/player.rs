//! Listening to a finished job: its stem files loaded into the synced mixer, with waveform
//! overviews, on the system's audio output or, without one, on a silent clock so that the
//! transport still works while the user is told that nothing can be heard.

use std::path::PathBuf;

use serde::Serialize;
use stemdeck_audio::{AudioBuffer, MODEL_SAMPLE_RATE};
use stemdeck_playback::{
    AudioOutput, MixerControl, MixerRenderer, OutputDevice, OutputError, SilentOutput, StemAudio,
    mixer,
};

use crate::app::library::Job;
use crate::error::{EngineError, Result};

/// Picks the output: `STEMDECK_AUDIO_OUTPUT=none` forces the silent clock, any other value
/// names a device (`null` is ALSA's unpaced sink); unset means the system default.
pub const AUDIO_OUTPUT_ENV: &str = "STEMDECK_AUDIO_OUTPUT";

/// Waveform buckets per stem: enough for a full-width row on a large screen.
pub const PEAK_BUCKETS: usize = 1600;

/// What the results view draws for one stem.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct StemOverview {
    pub name: String,
    pub path: PathBuf,
    /// `[min, max]` per bucket, over both channels.
    pub peaks: Vec<[f32; 2]>,
}

/// Where the sound goes.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct OutputStatus {
    /// The device's name, or `None` when playback is silent.
    pub device: Option<String>,
    /// Why there is no sound, in the user's words; `None` when there is.
    pub problem: Option<String>,
}

/// Kept only so that dropping the player stops the sound.
enum Sink {
    Device { _output: AudioOutput },
    Silent { _clock: SilentOutput },
}

/// A job's stems, ready to play.
pub struct StemPlayer {
    job_id: u64,
    control: MixerControl,
    stems: Vec<StemOverview>,
    output: OutputStatus,
    _sink: Sink,
}

/// The mixer's state as the UI shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PlayerState {
    pub job_id: u64,
    pub position_secs: f64,
    pub duration_secs: f64,
    pub playing: bool,
    /// The gain the renderer applies to each stem now, mute and solo included.
    pub levels: Vec<f32>,
}

impl StemPlayer {
    /// Loads `job`'s stems and starts an output for them (paused at the start).
    pub fn open(job: &Job) -> Result<Self> {
        if job.stems.is_empty() {
            return Err(EngineError::NothingToPlay {
                title: job.title.clone(),
            });
        }
        let preference = std::env::var(AUDIO_OUTPUT_ENV).unwrap_or_default();
        let device = match preference.as_str() {
            "none" => Err(OutputError::NoDevice),
            "" => OutputDevice::default_output(MODEL_SAMPLE_RATE),
            id => OutputDevice::by_id(id, MODEL_SAMPLE_RATE),
        };
        let rate = device
            .as_ref()
            .map_or(MODEL_SAMPLE_RATE, OutputDevice::sample_rate);

        let mut overviews = Vec::with_capacity(job.stems.len());
        let mut audio = Vec::with_capacity(job.stems.len());
        for stem in &job.stems {
            let decoded = stemdeck_audio::decode_file(&stem.path)?;
            let stereo = stemdeck_audio::resample(decoded, rate)?;
            overviews.push(StemOverview {
                name: stem.name.clone(),
                path: stem.path.clone(),
                peaks: stemdeck_audio::waveform_peaks(&stereo, PEAK_BUCKETS)
                    .into_iter()
                    .map(|(lo, hi)| [lo, hi])
                    .collect(),
            });
            audio.push(into_stem(stem.name.clone(), stereo));
        }
        let (control, renderer) = mixer(audio, rate);
        let (sink, output) = match device {
            Ok(device) => match device.start(renderer) {
                Ok(out) => {
                    let device = Some(out.device_name().to_string());
                    (
                        Sink::Device { _output: out },
                        OutputStatus {
                            device,
                            problem: None,
                        },
                    )
                }
                Err(failure) => match failure.renderer {
                    Some(renderer) => silent(*renderer, rate, &failure.error),
                    None => return Err(failure.error.into()),
                },
            },
            Err(error) => silent(renderer, rate, &error),
        };
        Ok(Self {
            job_id: job.id,
            control,
            stems: overviews,
            output,
            _sink: sink,
        })
    }

    pub fn job_id(&self) -> u64 {
        self.job_id
    }

    pub fn stems(&self) -> &[StemOverview] {
        &self.stems
    }

    pub fn output(&self) -> &OutputStatus {
        &self.output
    }

    pub fn state(&self) -> PlayerState {
        let rate = self.control.sample_rate().max(1) as f64;
        PlayerState {
            job_id: self.job_id,
            position_secs: self.control.position() as f64 / rate,
            duration_secs: self.control.frames() as f64 / rate,
            playing: self.control.is_playing(),
            levels: self.control.levels(),
        }
    }

    pub fn play(&mut self) -> Result<()> {
        self.control.play().map_err(EngineError::from)
    }

    pub fn pause(&mut self) -> Result<()> {
        self.control.pause().map_err(EngineError::from)
    }

    pub fn seek(&mut self, secs: f64) -> Result<()> {
        let frame = self.frames_at(secs);
        self.control.seek(frame).map_err(EngineError::from)
    }

    pub fn set_gain(&mut self, stem: usize, gain: f32) -> Result<()> {
        self.control.set_gain(stem, gain).map_err(EngineError::from)
    }

    pub fn set_mute(&mut self, stem: usize, muted: bool) -> Result<()> {
        self.control
            .set_mute(stem, muted)
            .map_err(EngineError::from)
    }

    pub fn set_solo(&mut self, stem: usize, soloed: bool) -> Result<()> {
        self.control
            .set_solo(stem, soloed)
            .map_err(EngineError::from)
    }

    /// Loops `[start, end)` in seconds; `None` clears the loop.
    pub fn set_loop(&mut self, region: Option<(f64, f64)>) -> Result<()> {
        let region = region.map(|(start, end)| (self.frames_at(start), self.frames_at(end)));
        self.control.set_loop(region).map_err(EngineError::from)
    }

    fn frames_at(&self, secs: f64) -> u64 {
        (secs.max(0.0) * self.control.sample_rate() as f64).round() as u64
    }
}

fn silent(renderer: MixerRenderer, rate: u32, why: &OutputError) -> (Sink, OutputStatus) {
    tracing::info!("playing silently: {why}");
    (
        Sink::Silent {
            _clock: SilentOutput::start(renderer, rate),
        },
        OutputStatus {
            device: None,
            problem: Some(why.to_string()),
        },
    )
}

fn into_stem(name: String, audio: AudioBuffer) -> StemAudio {
    let mut channels = audio.channels.into_iter();
    let left = channels.next().unwrap_or_default();
    let right = channels.next().unwrap_or_else(|| left.clone());
    StemAudio { name, left, right }
}
