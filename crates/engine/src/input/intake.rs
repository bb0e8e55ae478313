//! Turning what the user dropped or picked into things the queue can run: folders
//! are expanded to the audio files inside them, and anything Stemdeck cannot separate is
//! refused with its reason, beside its name.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Extensions the decoder reads.
pub const AUDIO_EXTENSIONS: &[&str] = &[
    "wav", "wave", "flac", "mp3", "ogg", "oga", "m4a", "mp4", "aac", "alac", "aif", "aiff", "caf",
    "mka", "webm",
];

/// How deep into nested folders a drop is followed.
const MAX_FOLDER_DEPTH: usize = 8;

/// Something that was not queued, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Refused {
    /// The file or folder name (or the pasted text) as the user knows it.
    pub name: String,
    pub reason: String,
}

impl Refused {
    pub(crate) fn new(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            reason: reason.into(),
        }
    }

    fn path(path: &Path, reason: impl Into<String>) -> Self {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Self::new(name, reason)
    }
}

/// Why `path` is not a file Stemdeck can separate, judged by what it is and its extension.
pub fn audio_file_problem(path: &Path) -> Option<String> {
    if path.is_dir() {
        return Some("it is a folder".into());
    }
    if !path.exists() {
        return Some("file not found".into());
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if AUDIO_EXTENSIONS.contains(&ext.as_str()) {
        None
    } else if ext.is_empty() {
        Some("it has no file extension, so it is not a recognised audio file".into())
    } else {
        Some(format!(
            ".{ext} files are not audio Stemdeck reads (it reads WAV, FLAC, MP3, Ogg, M4A/AAC, AIFF)"
        ))
    }
}

/// The audio files among `paths`, with every folder replaced by the audio files inside it
/// (sorted by name), and the refused items.
///
/// Inside a folder, other files (cover art, playlists) are skipped quietly; a file the
/// user chose directly is refused with its reason.
pub fn expand_paths(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Refused>) {
    let mut files = Vec::new();
    let mut refused = Vec::new();
    for path in paths {
        if path.is_dir() {
            let before = files.len();
            collect_folder(path, 0, &mut files);
            if files.len() == before {
                refused.push(Refused::path(path, "the folder has no audio files in it"));
            }
        } else if let Some(reason) = audio_file_problem(path) {
            refused.push(Refused::path(path, reason));
        } else {
            files.push(path.clone());
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.clone()));
    (files, refused)
}

fn collect_folder(dir: &Path, depth: usize, files: &mut Vec<PathBuf>) {
    if depth > MAX_FOLDER_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect_folder(&entry, depth + 1, files);
        } else if audio_file_problem(&entry).is_none() {
            files.push(entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_expand_to_their_audio_and_other_files_are_refused_with_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let album = dir.path().join("Album");
        std::fs::create_dir_all(album.join("Disc 2")).unwrap();
        for f in [
            "02 b.flac",
            "01 a.mp3",
            "cover.jpg",
            ".hidden.wav",
            "Disc 2/03 c.wav",
        ] {
            std::fs::write(album.join(f), b"x").unwrap();
        }
        let empty = dir.path().join("Empty");
        std::fs::create_dir(&empty).unwrap();
        let notes = dir.path().join("notes.txt");
        let song = dir.path().join("Song.M4A");
        std::fs::write(&notes, b"x").unwrap();
        std::fs::write(&song, b"x").unwrap();
        let missing = dir.path().join("gone.wav");

        let (files, refused) = expand_paths(&[
            album.clone(),
            notes,
            song.clone(),
            empty,
            missing,
            song.clone(),
        ]);
        assert_eq!(
            files,
            vec![
                album.join("01 a.mp3"),
                album.join("02 b.flac"),
                album.join("Disc 2/03 c.wav"),
                song
            ]
        );
        let reasons: Vec<(&str, &str)> = refused
            .iter()
            .map(|r| (r.name.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert_eq!(reasons[0].0, "notes.txt");
        assert!(reasons[0].1.contains(".txt files are not audio"));
        assert_eq!(reasons[1], ("Empty", "the folder has no audio files in it"));
        assert_eq!(reasons[2], ("gone.wav", "file not found"));
    }
}
