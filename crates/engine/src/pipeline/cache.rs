//! Results by source: a song already separated with the same model and settings (the
//! same video ID, or a file with the same contents) gets its stored stems back instantly.
//! Entries remember each stem's size and are used only while every stem is still there,
//! unchanged.
//!
//! An entry is found by the SHA-256 of its [`ResultKey`], a versioned serde struct of
//! everything that changes the stems. An index written by another version of the format
//! (or one that cannot be read) is a miss, never an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stemdeck_analysis::Analysis;
use stemdeck_audio::{ClipMode, OutputFormat};
use stemdeck_demucs::{ApplyOptions, Precision};

use crate::input::link::VideoId;
use crate::pipeline::StemFile;
use crate::pipeline::options::OutputOptions;
use crate::pipeline::separate::ModelChoice;

pub const CACHE_DIR_ENV: &str = "STEMDECK_CACHE_DIR";

/// `$STEMDECK_CACHE_DIR`, else `<user cache folder>/stemdeck`.
pub fn default_cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    directories::ProjectDirs::from("", "", "stemdeck")
        .map(|p| p.cache_dir().to_path_buf())
        .unwrap_or_else(|| std::env::temp_dir().join("stemdeck"))
}

/// What was separated: a file by its contents, a video by its ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKey {
    File { sha256: String },
    Video { youtube: VideoId },
}

impl SourceKey {
    /// A file by the SHA-256 of its contents, so a renamed copy is the same song.
    pub fn of_file(path: &Path) -> std::io::Result<Self> {
        Ok(SourceKey::File {
            sha256: crate::hash::sha256_file(path)?,
        })
    }
}

/// Which model: a named one, or a checkpoint file as it was when used.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKey {
    Named(String),
    Weights {
        path: PathBuf,
        bytes: u64,
        modified_secs: u64,
    },
}

impl ModelKey {
    pub fn of(model: &ModelChoice) -> Self {
        match model {
            ModelChoice::Named(name) => ModelKey::Named(name.clone()),
            ModelChoice::Weights(path) => {
                let meta = std::fs::metadata(path).ok();
                ModelKey::Weights {
                    path: std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()),
                    bytes: meta.as_ref().map_or(0, |m| m.len()),
                    modified_secs: meta
                        .and_then(|m| m.modified().ok())
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs()),
                }
            }
        }
    }
}

/// Every setting that changes the stems, so that only an identical request is answered
/// from the cache. The release is part of it: a new one may separate differently.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingsKey {
    stemdeck: &'static str,
    model: ModelKey,
    precision: Precision,
    segment: Option<f64>,
    overlap: f64,
    shifts: usize,
    seed: u64,
    transition_power: f64,
    format: OutputFormat,
    clip: ClipMode,
    normalize_dbfs: Option<f32>,
    two_stems: Option<String>,
}

impl SettingsKey {
    /// `precision` is the effective one ([`crate::DeviceChoice::effective_precision`]):
    /// fast and exact stems differ, so they are cached apart.
    pub fn new(
        model: &ModelChoice,
        precision: Precision,
        apply: &ApplyOptions,
        output: &OutputOptions,
    ) -> Self {
        Self {
            stemdeck: env!("CARGO_PKG_VERSION"),
            model: ModelKey::of(model),
            precision,
            segment: apply.segment,
            overlap: apply.overlap,
            shifts: apply.shifts,
            seed: apply.seed,
            transition_power: apply.transition_power,
            format: output.format,
            clip: output.clip,
            normalize_dbfs: output.normalize_dbfs,
            two_stems: output.two_stems.clone(),
        }
    }
}

/// A source separated with some settings: what one cache entry answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultKey {
    /// Bumped whenever the key's meaning changes, so that old entries are misses.
    format: u32,
    pub source: SourceKey,
    pub settings: SettingsKey,
}

impl ResultKey {
    const FORMAT: u32 = 1;

    pub fn new(source: SourceKey, settings: SettingsKey) -> Self {
        Self {
            format: Self::FORMAT,
            source,
            settings,
        }
    }

    /// The SHA-256 of the key's JSON: the entry's name in the index.
    pub fn digest(&self) -> String {
        crate::hash::sha256_hex(&serde_json::to_vec(self).expect("cache keys serialise"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CachedStem {
    name: String,
    path: PathBuf,
    bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    title: String,
    stems: Vec<CachedStem>,
    #[serde(default)]
    analysis: Option<Analysis>,
}

/// The index file: entries by key digest.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    version: u32,
    entries: BTreeMap<String, Entry>,
}

impl Index {
    const VERSION: u32 = 2;
}

/// Stems found in the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedResult {
    pub title: String,
    pub stems: Vec<StemFile>,
    /// Absent for results stored before songs were analysed.
    pub analysis: Option<Analysis>,
}

/// The index of separated results, one JSON file.
pub struct ResultCache {
    file: PathBuf,
}

impl ResultCache {
    /// The folder the cache's index is in.
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    pub fn new(file: PathBuf) -> Self {
        Self { file }
    }

    /// `<default cache root>/results.json`.
    pub fn standard() -> Self {
        Self::new(default_cache_root().join("results.json"))
    }

    /// The entries; none when the index is missing, unreadable or of another version.
    fn read(&self) -> BTreeMap<String, Entry> {
        std::fs::read(&self.file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Index>(&bytes).ok())
            .filter(|index| index.version == Index::VERSION)
            .map(|index| index.entries)
            .unwrap_or_default()
    }

    /// The stems stored for `key`, when all of them are still on disk with the size they
    /// were written with.
    pub fn lookup(&self, key: &ResultKey) -> Option<CachedResult> {
        let entry = self.read().remove(&key.digest())?;
        let intact = !entry.stems.is_empty()
            && entry.stems.iter().all(|s| {
                std::fs::metadata(&s.path).is_ok_and(|m| m.is_file() && m.len() == s.bytes)
            });
        intact.then(|| CachedResult {
            title: entry.title,
            analysis: entry.analysis,
            stems: entry
                .stems
                .into_iter()
                .map(|s| StemFile {
                    name: s.name,
                    path: s.path,
                })
                .collect(),
        })
    }

    /// Remembers the stems of `key`. A failure to write the index only costs a future
    /// cache hit, so it is logged, not returned.
    pub fn record(
        &self,
        key: &ResultKey,
        title: &str,
        stems: &[StemFile],
        analysis: Option<&Analysis>,
    ) {
        let mut entries = self.read();
        let stems = stems
            .iter()
            .filter_map(|s| {
                let bytes = std::fs::metadata(&s.path).ok()?.len();
                Some(CachedStem {
                    name: s.name.clone(),
                    path: s.path.clone(),
                    bytes,
                })
            })
            .collect();
        entries.insert(
            key.digest(),
            Entry {
                title: title.to_string(),
                stems,
                analysis: analysis.cloned(),
            },
        );
        let index = Index {
            version: Index::VERSION,
            entries,
        };
        let json = serde_json::to_vec_pretty(&index).expect("cache serialises");
        if let Err(e) = stemdeck_audio::write_bytes_atomically(&self.file, &json) {
            tracing::warn!("cannot update the result cache: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stem(dir: &Path, name: &str, bytes: &[u8]) -> StemFile {
        let path = dir.join(format!("{name}.wav"));
        std::fs::write(&path, bytes).unwrap();
        StemFile {
            name: name.into(),
            path,
        }
    }

    fn video(id: &str) -> SourceKey {
        SourceKey::Video {
            youtube: VideoId::try_from(id.to_string()).unwrap(),
        }
    }

    fn key(source: SourceKey, model: &str) -> ResultKey {
        let settings = SettingsKey::new(
            &ModelChoice::Named(model.into()),
            Precision::Exact,
            &ApplyOptions::default(),
            &OutputOptions::default(),
        );
        ResultKey::new(source, settings)
    }

    #[test]
    fn a_result_is_found_by_source_and_settings_while_its_stems_are_intact() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path().join("results.json"));
        let stems = vec![
            stem(dir.path(), "drums", b"1234"),
            stem(dir.path(), "bass", b"56"),
        ];
        let song = key(video("dQw4w9WgXcQ"), "htdemucs");
        assert_eq!(cache.lookup(&song), None);
        cache.record(&song, "Song", &stems, None);

        let hit = cache.lookup(&song).unwrap();
        assert_eq!(hit.title, "Song");
        assert_eq!(hit.stems, stems);
        assert_eq!(
            cache.lookup(&key(video("dQw4w9WgXcQ"), "htdemucs_6s")),
            None
        );
        assert_eq!(cache.lookup(&key(video("9bZkp7q19f0"), "htdemucs")), None);

        // A stem edited or deleted since makes the entry stale.
        std::fs::write(&stems[1].path, b"changed").unwrap();
        assert_eq!(cache.lookup(&song), None);
        std::fs::write(&stems[1].path, b"56").unwrap();
        assert!(cache.lookup(&song).is_some());
        std::fs::remove_file(&stems[0].path).unwrap();
        assert_eq!(cache.lookup(&song), None);
    }

    #[test]
    fn an_index_of_another_format_is_a_miss_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("results.json");
        let stems = vec![stem(dir.path(), "drums", b"1234")];
        let song = key(video("dQw4w9WgXcQ"), "htdemucs");
        // The first index format: a map from "source | settings" text to entries.
        let old = serde_json::json!({
            "youtube:dQw4w9WgXcQ | stemdeck 0.1.0; model htdemucs": {
                "title": "Song",
                "stems": [{"name": "drums", "path": stems[0].path, "bytes": 4}],
            }
        });
        std::fs::write(&file, serde_json::to_vec(&old).unwrap()).unwrap();
        let cache = ResultCache::new(file.clone());
        assert_eq!(cache.lookup(&song), None);
        std::fs::write(&file, b"{ not json").unwrap();
        assert_eq!(cache.lookup(&song), None);
        cache.record(&song, "Song", &stems, None);
        assert_eq!(cache.lookup(&song).unwrap().title, "Song");
    }

    #[test]
    fn files_are_keyed_by_their_contents_not_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.wav");
        let b = dir.path().join("copy of a.wav");
        let c = dir.path().join("c.wav");
        std::fs::write(&a, b"same audio").unwrap();
        std::fs::write(&b, b"same audio").unwrap();
        std::fs::write(&c, b"other audio").unwrap();
        let key = SourceKey::of_file(&a).unwrap();
        assert_eq!(key, SourceKey::of_file(&b).unwrap());
        assert_ne!(key, SourceKey::of_file(&c).unwrap());
        assert_eq!(
            key,
            SourceKey::File {
                sha256: crate::hash::sha256_hex(b"same audio")
            }
        );
        assert!(SourceKey::of_file(&dir.path().join("missing.wav")).is_err());
    }
}
