//! What the user chose: the app's settings and the separation settings a job runs with.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stemdeck_audio::{ClipMode, DEFAULT_MP3_KBPS, OutputFormat};
use stemdeck_demucs::{ApplyOptions, Precision};

use crate::device::DeviceChoice;
use crate::pipeline::options::{self, FileFormat, OptionError, OutputOptions, SampleFormat};

/// The settings one job runs with, copied from the app settings when it is queued so that
/// changing them later does not change a finished job's meaning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct JobSettings {
    pub model: String,
    pub device: DeviceChoice,
    /// Settings saved before the choice existed get the recommended one.
    #[serde(default = "Precision::recommended")]
    #[cfg_attr(feature = "ts", ts(as = "crate::pipeline::options::PrecisionName"))]
    pub precision: Precision,
    pub overlap: f64,
    pub shifts: usize,
    /// WAV: any; FLAC: 16 or 24-bit; ignored by MP3.
    pub sample_format: SampleFormat,
    #[serde(default)]
    pub format: FileFormat,
    #[serde(default = "default_mp3_kbps")]
    pub mp3_kbps: u32,
    /// Peak level each file is normalised to; `None` leaves levels as separated.
    #[serde(default)]
    pub normalize_dbfs: Option<f64>,
    pub two_stems: Option<String>,
    /// Mixes of some stems to write beside them ("drums+bass", "all-vocals").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mixes: Vec<String>,
}

fn default_mp3_kbps() -> u32 {
    DEFAULT_MP3_KBPS
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            model: "htdemucs".into(),
            device: DeviceChoice::Cpu,
            precision: Precision::recommended(),
            overlap: 0.25,
            shifts: 0,
            sample_format: SampleFormat::Int16,
            format: FileFormat::Wav,
            mp3_kbps: DEFAULT_MP3_KBPS,
            normalize_dbfs: None,
            two_stems: None,
            mixes: Vec::new(),
        }
    }
}

impl JobSettings {
    pub fn apply_options(&self) -> ApplyOptions {
        ApplyOptions {
            overlap: self.overlap,
            shifts: self.shifts,
            ..Default::default()
        }
    }

    /// The file format the choices make, or why they cannot be combined.
    pub fn output_format(&self) -> Result<OutputFormat, OptionError> {
        options::output_format(self.format, self.sample_format, self.mp3_kbps)
    }

    pub fn output_options(&self) -> crate::Result<OutputOptions> {
        Ok(OutputOptions {
            format: self.output_format()?,
            clip: ClipMode::Rescale,
            normalize_dbfs: self.normalize_dbfs.map(|d| d as f32),
            two_stems: self.two_stems.clone(),
            mixes: self
                .mixes
                .iter()
                .map(|spec| crate::outputs::mix::MixRecipe::parse(spec))
                .collect::<crate::Result<_>>()?,
        })
    }

    /// Checks the choices a user could combine wrongly or type out of range.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let model = crate::models::manifest::find(&self.model)?;
        options::check_device(self.device)?;
        self.output_format()?;
        // Mixes are of the stems the job writes: two-stems leaves only two.
        let stems = match &self.two_stems {
            Some(keep) => vec![keep.clone(), format!("no_{keep}")],
            None => model.sources.clone(),
        };
        for spec in &self.mixes {
            crate::outputs::mix::MixRecipe::parse(spec)
                .and_then(|recipe| recipe.gains(&stems))
                .map_err(SettingsError::Mix)?;
        }
        if let Some(dbfs) = self.normalize_dbfs {
            options::check_peak_level(dbfs)?;
        }
        options::check_overlap(self.overlap)?;
        options::check_shifts(self.shifts)?;
        Ok(())
    }
}

/// Why settings were not accepted or not kept.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    UnknownModel(#[from] crate::models::manifest::UnknownModel),
    #[error(transparent)]
    Option(#[from] OptionError),
    #[error(transparent)]
    Mix(crate::EngineError),
    #[error("the settings could not be saved: {0}")]
    Save(#[source] stemdeck_audio::AudioError),
}

/// The app's settings, persisted as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AppSettings {
    pub job: JobSettings,
    /// Where stems are written; `None` means the default (`~/Music/Stemdeck`).
    pub output_dir: Option<PathBuf>,
    /// The yt-dlp links fall back to; `None` looks for it on `PATH`.
    pub ytdlp_path: Option<PathBuf>,
    /// Mixer presets the user saved.
    pub mix_presets: Vec<crate::player::MixPreset>,
}

impl AppSettings {
    pub const FILE_NAME: &'static str = "settings.json";

    /// Reads the settings in `dir`; missing or unreadable settings give the defaults.
    pub fn load(dir: &Path) -> Self {
        std::fs::read(dir.join(Self::FILE_NAME))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, dir: &Path) -> Result<(), SettingsError> {
        let json = serde_json::to_vec_pretty(self).expect("settings serialise");
        stemdeck_audio::write_bytes_atomically(&dir.join(Self::FILE_NAME), &json)
            .map_err(SettingsError::Save)
    }

    /// Checks values a user could have typed.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.job.validate()?;
        if let Some(path) = &self.ytdlp_path {
            options::check_ytdlp(path)?;
        }
        Ok(())
    }

    pub fn output_dir_or_default(&self) -> PathBuf {
        self.output_dir.clone().unwrap_or_else(|| {
            directories::UserDirs::new()
                .and_then(|u| u.audio_dir().map(Path::to_path_buf))
                .or_else(|| directories::UserDirs::new().map(|u| u.home_dir().join("Music")))
                .unwrap_or_else(|| PathBuf::from("."))
                .join("Stemdeck")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_saved_before_formats_existed_still_load_as_wav() {
        let old = r#"{"job":{"model":"htdemucs","device":"cpu","overlap":0.25,"shifts":0,"sample_format":"int24","two_stems":null}}"#;
        let settings: AppSettings = serde_json::from_str(old).unwrap();
        assert_eq!(settings.job.format, FileFormat::Wav);
        assert_eq!(settings.job.mp3_kbps, 320);
        assert_eq!(
            settings.job.output_format(),
            Ok(OutputFormat::Wav(stemdeck_audio::WavFormat::Int24))
        );
    }

    #[test]
    fn settings_round_trip_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(AppSettings::load(dir.path()), AppSettings::default());
        let mut s = AppSettings::default();
        s.job.model = "htdemucs_6s".into();
        s.job.sample_format = SampleFormat::Int24;
        s.output_dir = Some("/tmp/stems".into());
        s.save(dir.path()).unwrap();
        assert_eq!(AppSettings::load(dir.path()), s);
        s.job.overlap = 1.5;
        assert!(s.validate().unwrap_err().to_string().contains("overlap"));
        s.job.overlap = 0.25;
        s.job.model = "nope".into();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("unknown model")
        );
        s.job.model = "htdemucs".into();
        s.job.format = FileFormat::Flac;
        s.job.sample_format = SampleFormat::Float32;
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "FLAC stores 16- or 24-bit samples; choose 16-bit or 24-bit"
        );
        s.job.sample_format = SampleFormat::Int24;
        assert_eq!(
            s.job.output_format(),
            Ok(OutputFormat::Flac(stemdeck_audio::FlacDepth::Bits24))
        );
        s.job.format = FileFormat::Mp3;
        s.job.mp3_kbps = 96;
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("MP3 bitrate 96 kbps")
        );
        s.job.mp3_kbps = 192;
        assert_eq!(s.job.output_format(), Ok(OutputFormat::Mp3 { kbps: 192 }));
        s.job.normalize_dbfs = Some(3.0);
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("between -24 and 0 dBFS")
        );
        s.job.normalize_dbfs = Some(-1.0);
        assert!(s.validate().is_ok());
        assert_eq!(s.job.output_options().unwrap().normalize_dbfs, Some(-1.0));
        s.ytdlp_path = Some(dir.path().join("no-yt-dlp"));
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("yt-dlp program was not found at")
        );
    }
}
