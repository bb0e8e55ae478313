//! The model manifest (`models/manifest.json`): what each named model is made of and where
//! its official checkpoints live.

use serde::Deserialize;

use crate::error::{EngineError, Result};

const MANIFEST: &str = include_str!("../../../models/manifest.json");

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
    pub files: Vec<ModelFile>,
    /// Per-model, per-source weights of a bag; `None` for a single model.
    pub weights: Option<Vec<Vec<f64>>>,
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

pub fn find(name: &str) -> Result<ModelInfo> {
    let all = models();
    all.iter()
        .find(|m| m.name == name)
        .cloned()
        .ok_or_else(|| EngineError::UnknownModel {
            name: name.to_string(),
            available: all
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
    fn unknown_model_names_the_alternatives() {
        let err = find("spleeter").unwrap_err().to_string();
        assert!(
            err.contains("spleeter") && err.contains("htdemucs_ft"),
            "{err}"
        );
    }
}
