//! The model manager behind `stemdeck models` and the app's model settings: which models
//! are here and how big they are, importing a local checkpoint after checking it really is
//! the model it is imported as, and removing a model. Downloading is
//! [`ModelStore::ensure`], which verifies every file's SHA-256.
//!
//! An imported file whose SHA-256 is an official checkpoint's is stored under that file's
//! official name, exactly as a download would be. Any other file (a fine-tune, a conversion
//! to safetensors) is stored as `<signature>.safetensors` or `<signature>.th`, so a file
//! under an official name always is the official download.

use std::path::{Path, PathBuf};

use stemdeck_demucs::{Checkpoint, DemucsError, Device, HTDemucs, HTDemucsConfig};

pub use crate::hash::sha256_hex;

use crate::error::Result;
use crate::models::manifest::{ModelFile, ModelInfo, find_in};
use crate::models::store::{CheckpointFile, ModelStore, read_checkpoint};

/// Why a model could not be imported or removed, worded for the person who chose it.
#[derive(Debug, thiserror::Error)]
pub enum ModelManagerError {
    #[error("{path} is a {count}-stem model ({stems}); import it as {suggestion}")]
    ImportAsOther {
        path: PathBuf,
        count: usize,
        stems: String,
        suggestion: String,
    },

    #[error("{path} separates into {found}, but {model} separates into {expected}")]
    StemsDiffer {
        path: PathBuf,
        model: String,
        found: String,
        expected: String,
    },

    #[error("{path} separates into {stems}; no Stemdeck model has these stems")]
    NoModelForStems { path: PathBuf, stems: String },

    #[error("{path} is not built like {model}: {differences}")]
    WrongArchitecture {
        path: PathBuf,
        model: String,
        differences: String,
    },

    #[error("{path} does not fit {model}: {details}")]
    WrongTensors {
        path: PathBuf,
        model: String,
        details: String,
    },

    #[error(
        "{model} is a bag of {count} models, each tuned for one stem; only its official files can be imported (each is recognised by its SHA-256) and {path} is not one of them. Download {model} instead"
    )]
    NotABagMember {
        path: PathBuf,
        model: String,
        count: usize,
    },

    #[error(
        "{path} is the official file {file} of {owner}, not of {requested}; import it as {owner}"
    )]
    OfficialFileOfAnotherModel {
        path: PathBuf,
        file: String,
        owner: String,
        requested: String,
    },

    #[error("{model} is already here ({existing}); remove it first to import another copy")]
    AlreadyPresent { model: String, existing: PathBuf },

    #[error("{model} is not downloaded or imported, so there is nothing to remove")]
    NotPresent { model: String },

    #[error(
        "{model} is in {path}, outside Stemdeck's model folder {dir}; delete it there if you no longer want it"
    )]
    OutsideModelFolder {
        model: String,
        path: PathBuf,
        dir: PathBuf,
    },

    #[error("cannot delete {path}: {source}")]
    CannotRemove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One file of a model and where it is, if anywhere.
#[derive(Debug, Clone, PartialEq)]
pub struct FilePresence {
    pub file: ModelFile,
    pub path: Option<PathBuf>,
    pub disk_bytes: Option<u64>,
}

impl FilePresence {
    /// Present under its official name, which only a verified download or an import whose
    /// SHA-256 matched puts there.
    pub fn is_official(&self) -> bool {
        self.path
            .as_ref()
            .is_some_and(|p| p.file_name().is_some_and(|n| *n == *self.file.name))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceState {
    Ready,
    Missing,
    /// Some files of a bag are here, others are not.
    Partial {
        present: usize,
        total: usize,
    },
}

/// A model of the manifest and which of its files are on this machine.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPresence {
    pub model: ModelInfo,
    pub files: Vec<FilePresence>,
}

impl ModelPresence {
    pub fn state(&self) -> PresenceState {
        let total = self.files.len();
        match self.files.iter().filter(|f| f.path.is_some()).count() {
            0 => PresenceState::Missing,
            present if present == total => PresenceState::Ready,
            present => PresenceState::Partial { present, total },
        }
    }

    /// What downloading it all takes, when the manifest knows every file's size.
    pub fn download_bytes(&self) -> Option<u64> {
        self.model.files.iter().map(|f| f.bytes).sum()
    }

    /// What its present files take on disk; `None` when none is here.
    pub fn disk_bytes(&self) -> Option<u64> {
        let present: Vec<u64> = self.files.iter().filter_map(|f| f.disk_bytes).collect();
        (!present.is_empty()).then(|| present.iter().sum())
    }

    /// The size to show: the download size when known, else what is on disk once it is
    /// all here (part of a bag says nothing about the whole).
    pub fn size(&self) -> Option<u64> {
        self.download_bytes().or_else(|| {
            (self.state() == PresenceState::Ready)
                .then(|| self.disk_bytes())
                .flatten()
        })
    }

    /// Whether any present file is an imported copy rather than the official download.
    pub fn imported(&self) -> bool {
        self.files
            .iter()
            .any(|f| f.path.is_some() && !f.is_official())
    }
}

/// Which files of `model` the store has, and where.
pub fn presence(store: &ModelStore, model: &ModelInfo) -> ModelPresence {
    let files = model
        .files
        .iter()
        .map(|file| {
            let path = store.locate(file);
            let disk_bytes = path
                .as_ref()
                .and_then(|p| std::fs::metadata(p).ok())
                .map(|m| m.len());
            FilePresence {
                file: file.clone(),
                path,
                disk_bytes,
            }
        })
        .collect();
    ModelPresence {
        model: model.clone(),
        files,
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub model: String,
    pub path: PathBuf,
    /// The file is an official checkpoint, recognised by its SHA-256.
    pub official: bool,
}

/// Imports the checkpoint at `source` into the store's first folder, as `as_model` or, when
/// `None`, as the model of `catalogue` it is an official file of or whose stems it has.
/// It is accepted only if its settings are the model's architecture and every tensor is
/// there with the right shape, with none left over.
pub fn import_checkpoint(
    store: &ModelStore,
    catalogue: &[ModelInfo],
    source: &Path,
    as_model: Option<&str>,
) -> Result<Imported> {
    let CheckpointFile { bytes, checkpoint } = read_checkpoint(source)?;
    let digest = sha256_hex(&bytes);
    let requested = as_model.map(|name| find_in(catalogue, name)).transpose()?;

    let (model, file, dest_name) = match official_file(catalogue, &digest) {
        Some((owner, file)) => {
            if let Some(requested) = requested
                && requested.name != owner.name
            {
                return Err(ModelManagerError::OfficialFileOfAnotherModel {
                    path: source.to_owned(),
                    file: file.name.clone(),
                    owner: owner.name.clone(),
                    requested: requested.name.clone(),
                }
                .into());
            }
            (owner, file, file.name.clone())
        }
        None => {
            let model =
                match requested {
                    Some(model) => model,
                    None => model_with_stems(catalogue, &checkpoint.config.sources).ok_or_else(
                        || ModelManagerError::NoModelForStems {
                            path: source.to_owned(),
                            stems: checkpoint.config.sources.join(", "),
                        },
                    )?,
                };
            if model.is_bag() {
                return Err(ModelManagerError::NotABagMember {
                    path: source.to_owned(),
                    model: model.name.clone(),
                    count: model.files.len(),
                }
                .into());
            }
            let file = &model.files[0];
            let extension = if bytes.starts_with(b"PK\x03\x04") {
                "th"
            } else {
                "safetensors"
            };
            (model, file, format!("{}.{extension}", file.signature()))
        }
    };
    check_fits(source, &checkpoint, model, catalogue)?;

    let dir = store.write_dir()?;
    if let Some(existing) = ModelStore::file_names(file)
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
    {
        return Err(ModelManagerError::AlreadyPresent {
            model: model.name.clone(),
            existing,
        }
        .into());
    }
    let dest = dir.join(&dest_name);
    stemdeck_audio::write_bytes_atomically(&dest, &bytes)?;
    Ok(Imported {
        model: model.name.clone(),
        path: dest,
        official: dest_name == file.name,
    })
}

/// Deletes every file of `model` from the store's first folder (the one Stemdeck downloads
/// and imports into), with any download a crash left half-written. Returns what it deleted.
pub fn remove_model(store: &ModelStore, model: &ModelInfo) -> Result<Vec<PathBuf>> {
    let dir = store.write_dir()?;
    let mut removed = Vec::new();
    for file in &model.files {
        for name in ModelStore::file_names(file) {
            let path = dir.join(&name);
            if path.is_file() {
                delete(&path)?;
                removed.push(path);
            }
        }
    }
    let leftovers: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| is_partial_download_of(path, model))
        .collect();
    for path in leftovers {
        delete(&path)?;
    }
    if removed.is_empty() {
        return Err(match model.files.iter().find_map(|f| store.locate(f)) {
            Some(path) => ModelManagerError::OutsideModelFolder {
                model: model.name.clone(),
                path,
                dir: dir.to_owned(),
            },
            None => ModelManagerError::NotPresent {
                model: model.name.clone(),
            },
        }
        .into());
    }
    Ok(removed)
}

fn delete(path: &Path) -> Result<()> {
    std::fs::remove_file(path).map_err(|e| {
        ModelManagerError::CannotRemove {
            path: path.to_owned(),
            source: e,
        }
        .into()
    })
}

/// The atomic writer's temporary name for a file: `.<name>.<process id>.partial`.
fn is_partial_download_of(path: &Path, model: &ModelInfo) -> bool {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy()) else {
        return false;
    };
    name.ends_with(".partial")
        && model.files.iter().any(|file| {
            ModelStore::file_names(file)
                .iter()
                .any(|candidate| name.starts_with(&format!(".{candidate}.")))
        })
}

/// The model and file of `catalogue` whose published SHA-256 prefix `sha256_hex` starts with.
pub fn official_file<'a>(
    catalogue: &'a [ModelInfo],
    sha256_hex: &str,
) -> Option<(&'a ModelInfo, &'a ModelFile)> {
    let digest = sha256_hex.to_ascii_lowercase();
    catalogue.iter().find_map(|model| {
        model
            .files
            .iter()
            .find(|f| {
                !f.sha256_prefix.is_empty()
                    && digest.starts_with(&f.sha256_prefix.to_ascii_lowercase())
            })
            .map(|f| (model, f))
    })
}

/// The single-file model with exactly these stems, in this order. A bag with the same
/// stems (htdemucs_ft) is never chosen: its members are told apart by their hashes.
fn model_with_stems<'a>(catalogue: &'a [ModelInfo], sources: &[String]) -> Option<&'a ModelInfo> {
    catalogue
        .iter()
        .find(|m| !m.is_bag() && m.sources == sources)
}

/// Checks that `checkpoint` is `model`: the same stems, the manifest's architecture, and
/// every tensor with the right shape and none extra (by building it on the CPU).
fn check_fits(
    source: &Path,
    checkpoint: &Checkpoint,
    model: &ModelInfo,
    catalogue: &[ModelInfo],
) -> Result<()> {
    let found = &checkpoint.config.sources;
    if *found != model.sources {
        return Err(match model_with_stems(catalogue, found) {
            Some(other) => ModelManagerError::ImportAsOther {
                path: source.to_owned(),
                count: found.len(),
                stems: found.join(", "),
                suggestion: other.name.clone(),
            },
            None => ModelManagerError::StemsDiffer {
                path: source.to_owned(),
                model: model.name.clone(),
                found: found.join(", "),
                expected: model.sources.join(", "),
            },
        }
        .into());
    }
    let expected = model.expected_config()?;
    let differences: Vec<String> = model
        .architecture
        .keys()
        .filter_map(|key| {
            let want = setting(&expected, key)?;
            let got = setting(&checkpoint.config, key)?;
            (want != got).then(|| format!("{key} is {got} ({} has {want})", model.name))
        })
        .collect();
    if !differences.is_empty() {
        return Err(ModelManagerError::WrongArchitecture {
            path: source.to_owned(),
            model: model.name.clone(),
            differences: differences.join(", "),
        }
        .into());
    }
    HTDemucs::from_checkpoint_strict(checkpoint, &Device::Cpu).map_err(|e| {
        ModelManagerError::WrongTensors {
            path: source.to_owned(),
            model: model.name.clone(),
            details: match e {
                DemucsError::WeightMismatch(details) => details,
                other => other.to_string(),
            },
        }
    })?;
    Ok(())
}

/// A model setting as text, by its kwargs name; `None` for a name this check does not know
/// (the manifest test makes sure it knows every one the manifest lists).
pub fn setting(cfg: &HTDemucsConfig, key: &str) -> Option<String> {
    Some(match key {
        "audio_channels" => cfg.audio_channels.to_string(),
        "samplerate" => cfg.samplerate.to_string(),
        // Compared as the samples one pass processes, which is what changes the output.
        "segment" => format!("{} s", cfg.segment_samples() as f64 / cfg.samplerate as f64),
        "channels" => cfg.channels.to_string(),
        "growth" => cfg.growth.to_string(),
        "nfft" => cfg.nfft.to_string(),
        "depth" => cfg.depth.to_string(),
        "kernel_size" => cfg.kernel_size.to_string(),
        "stride" => cfg.stride.to_string(),
        "time_stride" => cfg.time_stride.to_string(),
        "context" => cfg.context.to_string(),
        "context_enc" => cfg.context_enc.to_string(),
        "norm_starts" => cfg.norm_starts.to_string(),
        "norm_groups" => cfg.norm_groups.to_string(),
        "dconv_mode" => cfg.dconv_mode.to_string(),
        "dconv_depth" => cfg.dconv_depth.to_string(),
        "dconv_comp" => cfg.dconv_comp.to_string(),
        "bottom_channels" => cfg.bottom_channels.to_string(),
        "t_layers" => cfg.t_layers.to_string(),
        "t_hidden_scale" => cfg.t_hidden_scale.to_string(),
        "t_heads" => cfg.t_heads.to_string(),
        "cac" => cfg.cac.to_string(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::manifest;

    #[test]
    fn every_architecture_setting_in_the_manifest_is_checked() {
        for model in manifest::models() {
            let cfg = model.expected_config().unwrap();
            for key in model.architecture.keys() {
                assert!(setting(&cfg, key).is_some(), "{}: {key}", model.name);
            }
        }
    }

    #[test]
    fn official_files_are_recognised_by_their_hash_prefix_only() {
        let catalogue = manifest::models();
        let (model, file) =
            official_file(&catalogue, &format!("e57c48e6{}", "0".repeat(56))).unwrap();
        assert_eq!(
            (model.name.as_str(), file.name.as_str()),
            ("htdemucs_ft", "d12395a8-e57c48e6.th")
        );
        assert_eq!(
            official_file(&catalogue, "8726E21A00").map(|(m, _)| m.name.as_str()),
            Some("htdemucs")
        );
        assert!(official_file(&catalogue, &format!("0{}", "8726e21a")).is_none());
    }

    #[test]
    fn a_four_stem_file_is_htdemucs_never_the_bag_and_six_stems_are_htdemucs_6s() {
        let catalogue = manifest::models();
        let stems = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let four = stems(&["drums", "bass", "other", "vocals"]);
        assert_eq!(
            model_with_stems(&catalogue, &four).unwrap().name,
            "htdemucs"
        );
        let six = stems(&["drums", "bass", "other", "vocals", "guitar", "piano"]);
        assert_eq!(
            model_with_stems(&catalogue, &six).unwrap().name,
            "htdemucs_6s"
        );
        // Same stems in another order are another model's output layout.
        let shuffled = stems(&["vocals", "drums", "bass", "other"]);
        assert!(model_with_stems(&catalogue, &shuffled).is_none());
    }

    fn presence_of(paths: &[Option<&str>]) -> ModelPresence {
        let model = manifest::find("htdemucs_ft").unwrap();
        let files = model
            .files
            .iter()
            .zip(paths)
            .map(|(file, path)| FilePresence {
                file: file.clone(),
                path: path.map(|p| PathBuf::from("/models").join(p.replace('*', &file.name))),
                disk_bytes: path.map(|_| 100),
            })
            .collect();
        ModelPresence { model, files }
    }

    #[test]
    fn a_bag_with_some_files_is_partly_here_and_counts_only_those_bytes() {
        let none = presence_of(&[None, None, None, None]);
        assert_eq!(none.state(), PresenceState::Missing);
        assert_eq!(none.disk_bytes(), None);
        assert!(!none.imported());

        let some = presence_of(&[Some("*"), None, Some("*"), None]);
        assert_eq!(
            some.state(),
            PresenceState::Partial {
                present: 2,
                total: 4
            }
        );
        assert_eq!(some.disk_bytes(), Some(200));
        assert!(!some.imported());
        // The manifest does not know the bag's sizes, and half of it is not its size.
        assert_eq!(some.size(), None);

        let all = presence_of(&[
            Some("*"),
            Some("*"),
            Some("*"),
            Some("04573f0d.safetensors"),
        ]);
        assert_eq!(all.state(), PresenceState::Ready);
        assert_eq!(all.size(), Some(400));
        assert!(all.imported());
    }
}
