//! The options a new job may carry (as JSON fields or multipart form fields), laid over
//! the server's defaults and checked by the engine's rules.

use serde::Deserialize;
use stemdeck_engine::jobs::settings::JobSettings;
use stemdeck_engine::{DeviceChoice, FileFormat, Precision, SampleFormat};

use crate::error::ApiError;

/// Every field is optional; what is left out comes from the server's settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobOptions {
    pub model: Option<String>,
    pub device: Option<DeviceChoice>,
    pub precision: Option<Precision>,
    pub overlap: Option<f64>,
    pub shifts: Option<usize>,
    pub format: Option<FileFormat>,
    pub sample_format: Option<SampleFormat>,
    /// 16, 24 or 32 (float): another way to say `sample_format`.
    pub bit_depth: Option<u32>,
    pub mp3_kbps: Option<u32>,
    pub normalize_dbfs: Option<f64>,
    /// `vocals` writes vocals and no_vocals; `none` (or empty) writes every stem.
    pub two_stems: Option<String>,
    /// Mixes to write beside the stems: `drums+bass`, `all-vocals`.
    pub mixes: Option<Vec<String>>,
}

/// The fields whose form values are numbers.
const NUMBERS: [&str; 5] = [
    "overlap",
    "shifts",
    "bit_depth",
    "mp3_kbps",
    "normalize_dbfs",
];

impl JobOptions {
    /// From multipart text fields, in the order they came.
    pub fn from_form(fields: Vec<(String, String)>) -> Result<Self, ApiError> {
        let mut map = serde_json::Map::new();
        for (name, value) in fields {
            let value = value.trim().to_owned();
            if name == "mixes" || name == "mix" {
                let list = map
                    .entry("mixes")
                    .or_insert_with(|| serde_json::Value::Array(Vec::new()));
                if let serde_json::Value::Array(items) = list {
                    items.extend(
                        value
                            .split(',')
                            .filter(|s| !s.trim().is_empty())
                            .map(|s| serde_json::Value::String(s.trim().to_owned())),
                    );
                }
                continue;
            }
            let json = if NUMBERS.contains(&name.as_str()) {
                let number: f64 = value.parse().map_err(|_| {
                    ApiError::bad_request(format!("{name} must be a number, not “{value}”"))
                })?;
                if number.fract() == 0.0 && number >= 0.0 && name != "overlap" {
                    serde_json::Value::from(number as u64)
                } else {
                    serde_json::Value::from(number)
                }
            } else {
                serde_json::Value::String(value)
            };
            map.insert(name, json);
        }
        serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| ApiError::bad_request(format!("the job's options: {e}")))
    }

    /// The settings a job runs with: these options over `defaults`, checked.
    pub fn settings(self, defaults: JobSettings) -> Result<JobSettings, ApiError> {
        let mut s = defaults;
        if let Some(model) = self.model {
            s.model = model;
        }
        if let Some(device) = self.device {
            s.device = device;
        }
        if let Some(precision) = self.precision {
            s.precision = precision;
        }
        if let Some(overlap) = self.overlap {
            s.overlap = overlap;
        }
        if let Some(shifts) = self.shifts {
            s.shifts = shifts;
        }
        if let Some(format) = self.format {
            s.format = format;
        }
        if let Some(sample_format) = self.sample_format {
            s.sample_format = sample_format;
        }
        if let Some(bits) = self.bit_depth {
            s.sample_format = match bits {
                16 => SampleFormat::Int16,
                24 => SampleFormat::Int24,
                32 => SampleFormat::Float32,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "bit_depth must be 16, 24 or 32 (float), not {bits}"
                    )));
                }
            };
        }
        if let Some(kbps) = self.mp3_kbps {
            s.mp3_kbps = kbps;
        }
        if let Some(dbfs) = self.normalize_dbfs {
            s.normalize_dbfs = Some(dbfs);
        }
        if let Some(two) = self.two_stems {
            let two = two.trim();
            s.two_stems = (!two.is_empty() && two != "none").then(|| two.to_owned());
        }
        if let Some(mixes) = self.mixes {
            s.mixes = mixes;
        }
        s.validate()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn form_fields_become_settings() {
        let options = JobOptions::from_form(form(&[
            ("format", "flac"),
            ("bit_depth", "24"),
            ("overlap", "0.5"),
            ("mix", "drums+bass"),
            ("mix", "all-vocals"),
        ]))
        .unwrap();
        let s = options.settings(JobSettings::default()).unwrap();
        assert_eq!(s.format, FileFormat::Flac);
        assert_eq!(s.sample_format, SampleFormat::Int24);
        assert_eq!(s.overlap, 0.5);
        assert_eq!(s.mixes, ["drums+bass", "all-vocals"]);
    }

    #[test]
    fn bad_options_say_what_is_wrong() {
        let e = JobOptions::from_form(form(&[("shifts", "lots")])).unwrap_err();
        assert!(
            e.message.contains("Shifts must be a number"),
            "{}",
            e.message
        );
        let e = JobOptions::from_form(form(&[("colour", "red")])).unwrap_err();
        assert!(
            e.message.contains("unknown field `colour`"),
            "{}",
            e.message
        );
        let e = JobOptions::from_form(form(&[("model", "htdemucs_9000")]))
            .unwrap()
            .settings(JobSettings::default())
            .unwrap_err();
        assert!(e.message.contains("htdemucs_9000"), "{}", e.message);
        let e = JobOptions::from_form(form(&[("mix", "drums+kazoo")]))
            .unwrap()
            .settings(JobSettings::default())
            .unwrap_err();
        assert!(e.message.contains("kazoo"), "{}", e.message);
        // Two stems leave only two to mix.
        let e = JobOptions::from_form(form(&[("two_stems", "vocals"), ("mix", "drums+bass")]))
            .unwrap()
            .settings(JobSettings::default())
            .unwrap_err();
        assert!(e.message.contains("no \"drums\" stem"), "{}", e.message);
    }
}
