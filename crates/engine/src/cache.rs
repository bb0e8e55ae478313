//! Results by source: a song already separated with the same model and settings (the
//! same video ID, or a file with the same contents) gets its stored stems back instantly.
//! Entries remember each stem's size and are used only while every stem is still there,
//! unchanged.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::library::StemFile;

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

/// The cache key of a file's contents: `sha256:<hex>`.
pub fn file_key(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("sha256:{hex}"))
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
}

/// Stems found in the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedResult {
    pub title: String,
    pub stems: Vec<StemFile>,
}

/// The index of separated results, one JSON file.
pub struct ResultCache {
    file: PathBuf,
}

impl ResultCache {
    pub fn new(file: PathBuf) -> Self {
        Self { file }
    }

    /// `<default cache root>/results.json`.
    pub fn standard() -> Self {
        Self::new(default_cache_root().join("results.json"))
    }

    fn read(&self) -> BTreeMap<String, Entry> {
        std::fs::read(&self.file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn key(source: &str, settings: &str) -> String {
        format!("{source} | {settings}")
    }

    /// The stems stored for `source` separated with `settings`, when all of them are still
    /// on disk with the size they were written with.
    pub fn lookup(&self, source: &str, settings: &str) -> Option<CachedResult> {
        let entry = self.read().remove(&Self::key(source, settings))?;
        let intact = !entry.stems.is_empty()
            && entry.stems.iter().all(|s| {
                std::fs::metadata(&s.path).is_ok_and(|m| m.is_file() && m.len() == s.bytes)
            });
        intact.then(|| CachedResult {
            title: entry.title,
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

    /// Remembers the stems of `source` with `settings`. A failure to write the index only
    /// costs a future cache hit, so it is logged, not returned.
    pub fn record(&self, source: &str, settings: &str, title: &str, stems: &[StemFile]) {
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
            Self::key(source, settings),
            Entry {
                title: title.to_string(),
                stems,
            },
        );
        let json = serde_json::to_vec_pretty(&entries).expect("cache serialises");
        if let Err(e) = stemdeck_audio::write_atomically(&self.file, |mut f| {
            std::io::Write::write_all(&mut f, &json).map_err(|e| e.to_string())
        }) {
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

    #[test]
    fn a_result_is_found_by_source_and_settings_while_its_stems_are_intact() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path().join("results.json"));
        let stems = vec![
            stem(dir.path(), "drums", b"1234"),
            stem(dir.path(), "bass", b"56"),
        ];
        assert_eq!(cache.lookup("youtube:dQw4w9WgXcQ", "htdemucs"), None);
        cache.record("youtube:dQw4w9WgXcQ", "htdemucs", "Song", &stems);

        let hit = cache.lookup("youtube:dQw4w9WgXcQ", "htdemucs").unwrap();
        assert_eq!(hit.title, "Song");
        assert_eq!(hit.stems, stems);
        assert_eq!(cache.lookup("youtube:dQw4w9WgXcQ", "htdemucs_6s"), None);
        assert_eq!(cache.lookup("youtube:9bZkp7q19f0", "htdemucs"), None);

        // A stem edited or deleted since makes the entry stale.
        std::fs::write(&stems[1].path, b"changed").unwrap();
        assert_eq!(cache.lookup("youtube:dQw4w9WgXcQ", "htdemucs"), None);
        std::fs::write(&stems[1].path, b"56").unwrap();
        assert!(cache.lookup("youtube:dQw4w9WgXcQ", "htdemucs").is_some());
        std::fs::remove_file(&stems[0].path).unwrap();
        assert_eq!(cache.lookup("youtube:dQw4w9WgXcQ", "htdemucs"), None);
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
        let key = file_key(&a).unwrap();
        assert_eq!(key, file_key(&b).unwrap());
        assert_ne!(key, file_key(&c).unwrap());
        // SHA-256 of "same audio".
        let expected: String = Sha256::digest(b"same audio")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(key, format!("sha256:{expected}"));
        assert!(file_key(&dir.path().join("missing.wav")).is_err());
    }
}
