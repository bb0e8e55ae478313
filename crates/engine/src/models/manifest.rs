//! The model manifest (`models/manifest.json`): what each named model is made of and where
//! its official checkpoints live.

use serde::Deserialize;
use stemdeck_demucs::HTDemucsConfig;

use crate::error::Result;

const MANIFEST: &str = include_str!("../../../../models/manifest.json");

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ModelFile {
    /// File name in the store, as demucs names it: `<signature>-<sha256 prefix>.th`.
    pub name: String,
    pub url: String,
    pub sha256_prefix: String,
    pub bytes: Option<u64>,
}

impl ModelFile {
    /// The model signature demucs names the file after (`955717e8` in `955717e8-8726e21a.th`).
    pub fn signature(&self) -> &str {
        self.name.split(['-', '.']).next().unwrap_or(&self.name)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub description: String,
    pub sources: Vec<String>,
    pub segment_seconds: f64,
    /// Separation time compared with htdemucs: a bag runs each of its models on every segment.
    #[serde(default = "same_time")]
    pub relative_time: f64,
    /// The HTDemucs kwargs, `sources` aside, that every checkpoint of this model is built
    /// with; an imported file must have the same.
    pub architecture: serde_json::Map<String, serde_json::Value>,
    pub files: Vec<ModelFile>,
    /// Per-model, per-source weights of a bag; `None` for a single model.
    pub weights: Option<Vec<Vec<f64>>>,
}

fn same_time() -> f64 {
    1.0
}

impl ModelInfo {
    /// The settings a checkpoint of this model must have: its architecture and its sources.
    pub fn expected_config(&self) -> Result<HTDemucsConfig> {
        let mut kwargs = self.architecture.clone();
        kwargs.insert("sources".into(), serde_json::json!(self.sources));
        HTDemucsConfig::from_kwargs_json(&serde_json::Value::Object(kwargs)).map_err(Into::into)
    }

    pub fn is_bag(&self) -> bool {
        self.files.len() > 1
    }
}

#[derive(Debug, Deserialize)]
struct Manifest {
    models: Vec<ModelInfo>,
}

/// Every model Stemdeck knows by name.
pub fn models() -> Vec<ModelInfo> {
    serde_json::from_str::<Manifest>(MANIFEST)
        .expect("models/manifest.json is valid")
        .models
}

/// A model name that is not in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown model {name:?}; available: {available}")]
pub struct UnknownModel {
    pub name: String,
    pub available: String,
}

pub fn find(name: &str) -> std::result::Result<ModelInfo, UnknownModel> {
    find_in(&models(), name).cloned()
}

/// The model called `name` in `catalogue`.
pub fn find_in<'a>(
    catalogue: &'a [ModelInfo],
    name: &str,
) -> std::result::Result<&'a ModelInfo, UnknownModel> {
    catalogue
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| UnknownModel {
            name: name.to_string(),
            available: catalogue
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_lists_the_three_v4_models_consistently() {
        let all = models();
        let names: Vec<_> = all.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["htdemucs", "htdemucs_6s", "htdemucs_ft"]);
        for m in &all {
            for f in &m.files {
                assert!(f.url.ends_with(&f.name), "{}", f.url);
                assert!(
                    f.name.trim_end_matches(".th").ends_with(&f.sha256_prefix),
                    "{}",
                    f.name
                );
            }
            if let Some(w) = &m.weights {
                assert_eq!(w.len(), m.files.len());
                assert!(w.iter().all(|row| row.len() == m.sources.len()));
            }
        }
        assert_eq!(find("htdemucs_6s").unwrap().sources.len(), 6);
    }

    #[test]
    fn every_model_has_the_htdemucs_architecture_and_the_bag_costs_four_times() {
        let all = models();
        for m in &all {
            let cfg = m.expected_config().unwrap();
            assert_eq!(cfg.sources, m.sources);
            assert_eq!(cfg.channels, 48);
            assert_eq!(cfg.bottom_channels, 512);
            assert_eq!(cfg.dconv_mode, 3);
            assert_eq!(cfg.segment_samples(), 343_980, "{}", m.name);
            assert_eq!(m.architecture, all[0].architecture, "{}", m.name);
            assert_eq!(m.relative_time, m.files.len() as f64, "{}", m.name);
        }
        assert!(find("htdemucs_ft").unwrap().is_bag());
    }

    #[test]
    fn unknown_model_names_the_alternatives() {
        let err = find("spleeter").unwrap_err().to_string();
        assert!(
            err.contains("spleeter") && err.contains("htdemucs_ft"),
            "{err}"
        );
    }
}
