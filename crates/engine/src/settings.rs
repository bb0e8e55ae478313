//! What the user chose: the app's settings and the separation settings a job runs with.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stemdeck_audio::{ClipMode, WavFormat};
use stemdeck_demucs::ApplyOptions;

use crate::separate::{DeviceChoice, OutputOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SampleFormat {
    #[default]
    Int16,
    Int24,
    Float32,
}

impl From<SampleFormat> for WavFormat {
    fn from(f: SampleFormat) -> Self {
        match f {
            SampleFormat::Int16 => WavFormat::Int16,
            SampleFormat::Int24 => WavFormat::Int24,
            SampleFormat::Float32 => WavFormat::Float32,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeviceSetting {
    #[default]
    Cpu,
    Cuda,
    Metal,
}

impl From<DeviceSetting> for DeviceChoice {
    fn from(d: DeviceSetting) -> Self {
        match d {
            DeviceSetting::Cpu => DeviceChoice::Cpu,
            DeviceSetting::Cuda => DeviceChoice::Cuda,
            DeviceSetting::Metal => DeviceChoice::Metal,
        }
    }
}

/// The settings one job runs with, copied from the app settings when it is queued so that
/// changing them later does not change a finished job's meaning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSettings {
    pub model: String,
    pub device: DeviceSetting,
    pub overlap: f64,
    pub shifts: usize,
    pub sample_format: SampleFormat,
    pub two_stems: Option<String>,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            model: "htdemucs".into(),
            device: DeviceSetting::Cpu,
            overlap: 0.25,
            shifts: 0,
            sample_format: SampleFormat::Int16,
            two_stems: None,
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

    pub fn output_options(&self) -> OutputOptions {
        OutputOptions {
            wav_format: self.sample_format.into(),
            clip: ClipMode::Rescale,
            two_stems: self.two_stems.clone(),
        }
    }
}

/// The app's settings, persisted as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct AppSettings {
    pub job: JobSettings,
    /// Where stems are written; `None` means the default (`~/Music/Stemdeck`).
    pub output_dir: Option<PathBuf>,
    /// The yt-dlp links fall back to; `None` looks for it on `PATH`.
    pub ytdlp_path: Option<PathBuf>,
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

    pub fn save(&self, dir: &Path) -> std::result::Result<(), String> {
        let json = serde_json::to_vec_pretty(self).expect("settings serialise");
        stemdeck_audio::write_atomically(&dir.join(Self::FILE_NAME), |mut f| {
            std::io::Write::write_all(&mut f, &json).map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())
    }

    /// Checks values a user could have typed.
    pub fn validate(&self) -> std::result::Result<(), String> {
        crate::manifest::find(&self.job.model).map_err(|e| e.to_string())?;
        if !(0.0..1.0).contains(&self.job.overlap) {
            return Err(format!(
                "overlap must be at least 0 and below 1, got {}",
                self.job.overlap
            ));
        }
        if let Some(path) = &self.ytdlp_path
            && !path.is_file()
        {
            return Err(format!(
                "the yt-dlp program was not found at {}",
                path.display()
            ));
        }
        if self.job.shifts > 20 {
            return Err(format!(
                "shifts must be 20 or fewer, got {}",
                self.job.shifts
            ));
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
        assert!(s.validate().unwrap_err().contains("overlap"));
        s.job.overlap = 0.25;
        s.job.model = "nope".into();
        assert!(s.validate().unwrap_err().contains("unknown model"));
        s.job.model = "htdemucs".into();
        s.ytdlp_path = Some(dir.path().join("no-yt-dlp"));
        assert!(
            s.validate()
                .unwrap_err()
                .contains("yt-dlp program was not found at")
        );
    }
}
