//! Where models live on disk: `STEMDECK_MODEL_DIR` first, then the user's cache folder.
//! Missing official checkpoints are downloaded into the first writable location.

use std::path::{Path, PathBuf};

use stemdeck_demucs::{BagOfModels, Checkpoint, Device, HTDemucs, Precision};

use crate::error::{EngineError, Result};
use crate::models::download::{DownloadProgress, download_verified};
use crate::models::manifest::{ModelFile, ModelInfo};

pub const MODEL_DIR_ENV: &str = "STEMDECK_MODEL_DIR";

#[derive(Debug, Clone)]
pub struct ModelStore {
    dirs: Vec<PathBuf>,
}

impl ModelStore {
    /// The standard search path: `$STEMDECK_MODEL_DIR`, then `<cache dir>/stemdeck/models`.
    pub fn from_env() -> Self {
        let mut dirs = Vec::new();
        if let Some(dir) = std::env::var_os(MODEL_DIR_ENV).filter(|d| !d.is_empty()) {
            dirs.push(PathBuf::from(dir));
        }
        if let Some(project) = directories::ProjectDirs::from("", "", "stemdeck") {
            dirs.push(project.cache_dir().join("models"));
        }
        Self { dirs }
    }

    pub fn with_dirs(dirs: Vec<PathBuf>) -> Self {
        Self { dirs }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The folder downloads and imports go to, and the only one models are removed from.
    pub fn write_dir(&self) -> Result<&Path> {
        self.dirs
            .first()
            .map(PathBuf::as_path)
            .ok_or(EngineError::NoModelDir)
    }

    /// The names `file` may have in a folder, in the order they are preferred: the official
    /// download, then an imported copy under the model's signature (`<signature>.safetensors`
    /// or `<signature>.th`).
    pub fn file_names(file: &ModelFile) -> [String; 3] {
        [
            file.name.clone(),
            format!("{}.safetensors", file.signature()),
            format!("{}.th", file.signature()),
        ]
    }

    /// The file for `file` in the first folder that has it, under any of its
    /// [names](Self::file_names).
    pub fn locate(&self, file: &ModelFile) -> Option<PathBuf> {
        let names = Self::file_names(file);
        self.dirs
            .iter()
            .flat_map(|d| names.iter().map(move |n| d.join(n)))
            .find(|p| p.is_file())
    }

    /// Paths of every file of `model`, downloading the missing ones.
    pub fn ensure(
        &self,
        model: &ModelInfo,
        progress: &dyn Fn(&ModelFile, u64, Option<u64>),
        is_cancelled: &dyn Fn() -> bool,
    ) -> Result<Vec<PathBuf>> {
        model
            .files
            .iter()
            .map(|file| match self.locate(file) {
                Some(path) => Ok(path),
                None => {
                    let dir = self.write_dir()?;
                    let dest = dir.join(&file.name);
                    let report: DownloadProgress = &|done, total| progress(file, done, total);
                    download_verified(&file.url, &dest, &file.sha256_prefix, report, is_cancelled)?;
                    Ok(dest)
                }
            })
            .collect()
    }
}

/// A checkpoint and the bytes it was read from (which identify an official file).
pub struct CheckpointFile {
    pub bytes: Vec<u8>,
    pub checkpoint: Checkpoint,
}

/// Reads a checkpoint file (safetensors or official `.th`): the one reader behind loading
/// a model and importing one.
pub fn read_checkpoint(path: &Path) -> Result<CheckpointFile> {
    let bytes = std::fs::read(path).map_err(EngineError::read(path))?;
    let checkpoint =
        Checkpoint::from_bytes(&bytes).map_err(|source| EngineError::NotACheckpoint {
            path: path.to_owned(),
            source,
        })?;
    Ok(CheckpointFile { bytes, checkpoint })
}

/// Builds the bag from checkpoint files and the manifest's per-source weights.
pub fn load_bag(
    paths: &[PathBuf],
    weights: Option<Vec<Vec<f64>>>,
    device: &Device,
    precision: Precision,
) -> Result<BagOfModels> {
    let models = paths
        .iter()
        .map(|path| {
            let checkpoint = read_checkpoint(path)?.checkpoint;
            HTDemucs::from_checkpoint_with(&checkpoint, device, precision).map_err(|e| {
                EngineError::Weights {
                    path: path.clone(),
                    source: e,
                }
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(BagOfModels::new(models, weights)?)
}
