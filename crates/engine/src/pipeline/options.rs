//! The rules for what a job may be asked to do, in one place for every front end: which
//! file formats hold which samples, the offered MP3 bitrates, the peak levels, overlap and
//! shifts a separation accepts. Front ends check with these and show [`SettingChoices`].

use std::path::Path;

use serde::{Deserialize, Serialize};
use stemdeck_audio::{AudioBuffer, ClipMode, FlacDepth, LevelGain, OutputFormat, WavFormat};

pub use stemdeck_audio::{DEFAULT_MP3_KBPS, MP3_BITRATES_KBPS};

use crate::device::DeviceChoice;
use crate::outputs::mix::MixRecipe;

/// The file format of stems and mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum FileFormat {
    #[default]
    Wav,
    Flac,
    Mp3,
}

impl FileFormat {
    pub const ALL: [FileFormat; 3] = [FileFormat::Wav, FileFormat::Flac, FileFormat::Mp3];

    /// The sample formats it can store: FLAC holds integers only, and MP3 has no bit
    /// depth of its own.
    pub fn sample_formats(self) -> &'static [SampleFormat] {
        match self {
            FileFormat::Wav => &[
                SampleFormat::Int16,
                SampleFormat::Int24,
                SampleFormat::Float32,
            ],
            FileFormat::Flac => &[SampleFormat::Int16, SampleFormat::Int24],
            FileFormat::Mp3 => &[],
        }
    }

    /// The name settings files and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Wav => "wav",
            FileFormat::Flac => "flac",
            FileFormat::Mp3 => "mp3",
        }
    }
}

impl std::str::FromStr for FileFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown file format {s:?}; choose wav, flac or mp3"))
    }
}

/// How [`Precision`](stemdeck_demucs::Precision) is declared to the UI: the model crate
/// knows nothing of TypeScript.
#[cfg(feature = "ts")]
#[derive(ts_rs::TS)]
#[ts(rename = "Precision")]
#[allow(dead_code)]
pub enum PrecisionName {
    #[ts(rename = "fast")]
    Fast,
    #[ts(rename = "exact")]
    Exact,
}

/// The samples of a WAV or FLAC file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum SampleFormat {
    #[default]
    Int16,
    Int24,
    Float32,
}

/// The loudest a normalised file may be set to, and the quietest that still makes sense.
pub const PEAK_DBFS_MIN: f64 = -24.0;
pub const PEAK_DBFS_MAX: f64 = 0.0;
/// The level a plain "normalise" means.
pub const DEFAULT_PEAK_DBFS: f64 = -1.0;
/// More shifts than this only cost time: the average has settled long before.
pub const MAX_SHIFTS: usize = 20;

/// Why a combination of job options cannot be run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptionError {
    #[error("FLAC stores 16- or 24-bit samples; choose 16-bit or 24-bit")]
    FlacFloat,
    #[error(
        "MP3 bitrate {kbps} kbps is not offered; choose {}",
        offered_bitrates()
    )]
    Mp3Bitrate { kbps: u32 },
    #[error("the peak level must be between {PEAK_DBFS_MIN} and {PEAK_DBFS_MAX} dBFS, got {dbfs}")]
    PeakLevel { dbfs: f64 },
    #[error("overlap must be at least 0 and below 1, got {overlap}")]
    Overlap { overlap: f64 },
    #[error("shifts must be {MAX_SHIFTS} or fewer, got {shifts}")]
    Shifts { shifts: usize },
    #[error("the yt-dlp program was not found at {}", path.display())]
    NoYtDlp { path: std::path::PathBuf },
    #[error(
        "this build of Stemdeck cannot run on {device}; it was built for {}",
        built_devices()
    )]
    DeviceNotBuilt { device: DeviceChoice },
}

fn offered_bitrates() -> String {
    let (last, rest) = MP3_BITRATES_KBPS
        .split_last()
        .expect("bitrates are offered");
    let rest: Vec<String> = rest.iter().map(u32::to_string).collect();
    format!("{} or {last}", rest.join(", "))
}

fn built_devices() -> String {
    let built: Vec<String> = DeviceChoice::compiled()
        .iter()
        .map(|d| d.to_string())
        .collect();
    built.join(", ")
}

/// The file format `format` with `samples`, or why the pair cannot be written.
pub fn output_format(
    format: FileFormat,
    samples: SampleFormat,
    mp3_kbps: u32,
) -> Result<OutputFormat, OptionError> {
    Ok(match format {
        FileFormat::Wav => OutputFormat::Wav(match samples {
            SampleFormat::Int16 => WavFormat::Int16,
            SampleFormat::Int24 => WavFormat::Int24,
            SampleFormat::Float32 => WavFormat::Float32,
        }),
        FileFormat::Flac => OutputFormat::Flac(match samples {
            SampleFormat::Int16 => FlacDepth::Bits16,
            SampleFormat::Int24 => FlacDepth::Bits24,
            SampleFormat::Float32 => return Err(OptionError::FlacFloat),
        }),
        FileFormat::Mp3 if MP3_BITRATES_KBPS.contains(&mp3_kbps) => {
            OutputFormat::Mp3 { kbps: mp3_kbps }
        }
        FileFormat::Mp3 => return Err(OptionError::Mp3Bitrate { kbps: mp3_kbps }),
    })
}

pub fn check_peak_level(dbfs: f64) -> Result<(), OptionError> {
    if (PEAK_DBFS_MIN..=PEAK_DBFS_MAX).contains(&dbfs) {
        Ok(())
    } else {
        Err(OptionError::PeakLevel { dbfs })
    }
}

pub fn check_overlap(overlap: f64) -> Result<(), OptionError> {
    if (0.0..1.0).contains(&overlap) {
        Ok(())
    } else {
        Err(OptionError::Overlap { overlap })
    }
}

pub fn check_shifts(shifts: usize) -> Result<(), OptionError> {
    if shifts <= MAX_SHIFTS {
        Ok(())
    } else {
        Err(OptionError::Shifts { shifts })
    }
}

pub fn check_device(device: DeviceChoice) -> Result<(), OptionError> {
    if device.is_compiled() {
        Ok(())
    } else {
        Err(OptionError::DeviceNotBuilt { device })
    }
}

pub fn check_ytdlp(path: &Path) -> Result<(), OptionError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(OptionError::NoYtDlp {
            path: path.to_owned(),
        })
    }
}

/// What a settings screen may offer, from the rules above.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SettingChoices {
    /// The devices this build runs on.
    pub devices: Vec<DeviceChoice>,
    /// Each file format and the sample formats it holds.
    pub formats: Vec<FormatChoice>,
    pub mp3_bitrates_kbps: Vec<u32>,
    pub peak_dbfs_min: f64,
    pub peak_dbfs_max: f64,
    pub default_peak_dbfs: f64,
    /// Shifts above this are refused; overlap is always at least 0 and below 1.
    pub max_shifts: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct FormatChoice {
    pub format: FileFormat,
    pub sample_formats: Vec<SampleFormat>,
}

impl SettingChoices {
    pub fn of_this_build() -> Self {
        Self {
            devices: DeviceChoice::compiled(),
            formats: FileFormat::ALL
                .into_iter()
                .map(|format| FormatChoice {
                    format,
                    sample_formats: format.sample_formats().to_vec(),
                })
                .collect(),
            mp3_bitrates_kbps: MP3_BITRATES_KBPS.to_vec(),
            peak_dbfs_min: PEAK_DBFS_MIN,
            peak_dbfs_max: PEAK_DBFS_MAX,
            default_peak_dbfs: DEFAULT_PEAK_DBFS,
            max_shifts: MAX_SHIFTS,
        }
    }
}

/// How stems are written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OutputOptions {
    pub format: OutputFormat,
    pub clip: ClipMode,
    /// Scale each file so that its peak sits at this level (dBFS) instead of only keeping it
    /// from clipping. `None`, the default, keeps the stems adding up to the mix.
    pub normalize_dbfs: Option<f32>,
    /// Write only this source and the sum of all others (`no_<source>`).
    pub two_stems: Option<String>,
    /// Custom mixes written beside the stems (`mix-drums+bass.wav`).
    pub mixes: Vec<MixRecipe>,
}

/// Either normalises `audio` or keeps it from clipping, as `output` asks.
pub fn finish_levels(audio: &mut AudioBuffer, output: &OutputOptions) {
    let gain = level_gain(audio.peak(), output);
    audio.channels.iter_mut().for_each(|c| gain.apply(c));
}

/// What [`finish_levels`] does to audio peaking at `peak`, to apply block by block.
pub fn level_gain(peak: f32, output: &OutputOptions) -> LevelGain {
    match output.normalize_dbfs {
        Some(dbfs) => LevelGain::normalize_peak(dbfs, peak),
        None => LevelGain::prevent_clip(output.clip, peak),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offered_format_and_sample_pair_can_be_written_and_no_other() {
        for format in FileFormat::ALL {
            for samples in [
                SampleFormat::Int16,
                SampleFormat::Int24,
                SampleFormat::Float32,
            ] {
                let result = output_format(format, samples, 320);
                let offered =
                    format == FileFormat::Mp3 || format.sample_formats().contains(&samples);
                assert_eq!(
                    result.is_ok(),
                    offered,
                    "{format:?} {samples:?}: {result:?}"
                );
            }
        }
        assert_eq!(
            output_format(FileFormat::Mp3, SampleFormat::Int16, 96),
            Err(OptionError::Mp3Bitrate { kbps: 96 })
        );
        assert_eq!(
            OptionError::Mp3Bitrate { kbps: 96 }.to_string(),
            "MP3 bitrate 96 kbps is not offered; choose 128, 160, 192, 224, 256 or 320"
        );
        assert!(check_peak_level(-24.0).is_ok() && check_peak_level(0.0).is_ok());
        assert!(
            check_peak_level(0.5)
                .unwrap_err()
                .to_string()
                .contains("between -24 and 0 dBFS")
        );
        assert!(check_overlap(0.0).is_ok() && check_overlap(1.0).is_err());
        assert!(check_shifts(MAX_SHIFTS).is_ok() && check_shifts(MAX_SHIFTS + 1).is_err());
        let choices = SettingChoices::of_this_build();
        assert_eq!(choices.devices[0], DeviceChoice::Cpu);
        assert_eq!(
            choices.formats[1].sample_formats,
            FileFormat::Flac.sample_formats()
        );
    }
}
