//! What the user chose: the app's settings and the separation settings a job runs with.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stemdeck_audio::{
    ClipMode, DEFAULT_MP3_KBPS, FlacDepth, MP3_BITRATES_KBPS, OutputFormat, WavFormat,
};
use stemdeck_demucs::{ApplyOptions, Precision};

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

/// The file format of stems and mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    #[default]
    Wav,
    Flac,
    Mp3,
}

/// The loudest a normalised file may be set to, and the quietest that still makes sense.
pub const NORMALIZE_DBFS_RANGE: std::ops::RangeInclusive<f64> = -24.0..=0.0;

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
    /// Settings saved before the choice existed get the recommended one.
    #[serde(default = "Precision::recommended")]
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
}

fn default_mp3_kbps() -> u32 {
    DEFAULT_MP3_KBPS
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            model: "htdemucs".into(),
            device: DeviceSetting::Cpu,
            precision: Precision::recommended(),
            overlap: 0.25,
            shifts: 0,
            sample_format: SampleFormat::Int16,
            format: FileFormat::Wav,
            mp3_kbps: DEFAULT_MP3_KBPS,
            normalize_dbfs: None,
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

    pub fn output_format(&self) -> OutputFormat {
        match self.format {
            FileFormat::Wav => OutputFormat::Wav(self.sample_format.into()),
            FileFormat::Flac => OutputFormat::Flac(match self.sample_format {
                SampleFormat::Int16 => FlacDepth::Bits16,
                // validate() refuses float; 24-bit is the closest if it slips through.
                SampleFormat::Int24 | SampleFormat::Float32 => FlacDepth::Bits24,
            }),
            FileFormat::Mp3 => OutputFormat::Mp3 {
                kbps: self.mp3_kbps,
            },
        }
    }

    pub fn output_options(&self) -> OutputOptions {
        OutputOptions {
            format: self.output_format(),
            clip: ClipMode::Rescale,
            normalize_dbfs: self.normalize_dbfs.map(|d| d as f32),
            two_stems: self.two_stems.clone(),
            mixes: Vec::new(),
        }
    }

    /// Checks the output choices a user could combine wrongly.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.format == FileFormat::Flac && self.sample_format == SampleFormat::Float32 {
            return Err("FLAC stores 16- or 24-bit samples; choose 16-bit or 24-bit".into());
        }
        if self.format == FileFormat::Mp3 && !MP3_BITRATES_KBPS.contains(&self.mp3_kbps) {
            return Err(format!(
                "MP3 bitrate {} kbps is not offered; choose 128, 160, 192, 224, 256 or 320",
                self.mp3_kbps
            ));
        }
        if let Some(dbfs) = self.normalize_dbfs
            && !NORMALIZE_DBFS_RANGE.contains(&dbfs)
        {
            return Err(format!(
                "the peak level must be between -24 and 0 dBFS, got {dbfs}"
            ));
        }
        Ok(())
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
        self.job.validate()?;
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
    fn settings_saved_before_formats_existed_still_load_as_wav() {
        let old = r#"{"job":{"model":"htdemucs","device":"cpu","overlap":0.25,"shifts":0,"sample_format":"int24","two_stems":null}}"#;
        let settings: AppSettings = serde_json::from_str(old).unwrap();
        assert_eq!(settings.job.format, FileFormat::Wav);
        assert_eq!(settings.job.mp3_kbps, 320);
        assert_eq!(
            settings.job.output_format(),
            OutputFormat::Wav(WavFormat::Int24)
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
        assert!(s.validate().unwrap_err().contains("overlap"));
        s.job.overlap = 0.25;
        s.job.model = "nope".into();
        assert!(s.validate().unwrap_err().contains("unknown model"));
        s.job.model = "htdemucs".into();
        s.job.format = FileFormat::Flac;
        s.job.sample_format = SampleFormat::Float32;
        assert_eq!(
            s.validate().unwrap_err(),
            "FLAC stores 16- or 24-bit samples; choose 16-bit or 24-bit"
        );
        s.job.sample_format = SampleFormat::Int24;
        assert_eq!(s.job.output_format(), OutputFormat::Flac(FlacDepth::Bits24));
        s.job.format = FileFormat::Mp3;
        s.job.mp3_kbps = 96;
        assert!(s.validate().unwrap_err().contains("MP3 bitrate 96 kbps"));
        s.job.mp3_kbps = 192;
        assert_eq!(s.job.output_format(), OutputFormat::Mp3 { kbps: 192 });
        s.job.normalize_dbfs = Some(3.0);
        assert!(s.validate().unwrap_err().contains("between -24 and 0 dBFS"));
        s.job.normalize_dbfs = Some(-1.0);
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.job.output_options().normalize_dbfs, Some(-1.0));
        s.ytdlp_path = Some(dir.path().join("no-yt-dlp"));
        assert!(
            s.validate()
                .unwrap_err()
                .contains("yt-dlp program was not found at")
        );
    }
}
