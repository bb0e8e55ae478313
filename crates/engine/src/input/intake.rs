//! Turning what the user dropped or picked into things the queue can run: folders
//! are expanded to the audio files inside them, and anything Stemdeck cannot separate is
//! refused with its reason, beside its name. Each file's content is probed (container,
//! codec and a first packet), so a text file named `notes.mp3` is refused at the door,
//! not when its turn comes.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Extensions of the files the decoder reads: what a folder is searched for and what the
/// file dialog offers. Files chosen one by one are judged by their content instead.
pub const AUDIO_EXTENSIONS: &[&str] = &[
    "wav", "wave", "w64", "flac", "mp3", "ogg", "oga", "opus", "m4a", "m4b", "aac", "alac", "aif",
    "aiff", "aifc", "caf", "mka", "webm", "mkv", "mp4", "m4v", "mov",
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

    pub(crate) fn path(path: &Path, reason: impl Into<String>) -> Self {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Self::new(name, reason)
    }
}

/// Whether a folder's file is one to look at: the extensions of audio (and video) files.
fn has_audio_extension(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|ext| AUDIO_EXTENSIONS.contains(&ext.as_str()))
}

/// Why `path` is not a file Stemdeck can separate, judged by what it holds: a quick probe
/// of its container and codec and its first packet of audio. Damage further into a file
/// is only found when it is decoded.
pub fn audio_file_problem(path: &Path) -> Option<String> {
    if path.is_dir() {
        return Some("it is a folder".into());
    }
    match stemdeck_audio::decode::probe(path) {
        Ok(_) => None,
        Err(e) => Some(e.reason()),
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
            let mut found = Vec::new();
            collect_folder(path, 0, &mut found);
            if found.is_empty() {
                refused.push(Refused::path(path, "the folder has no audio files in it"));
            }
            for file in found {
                match audio_file_problem(&file) {
                    None => files.push(file),
                    Some(reason) => refused.push(Refused::path(&file, reason)),
                }
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
        } else if has_audio_extension(&entry) {
            files.push(entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_song(path: &Path) {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..4410 {
            let s = ((i as f32 * 0.05).sin() * 8000.0) as i16;
            w.write_sample(s).unwrap();
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn folders_expand_to_their_audio_and_other_files_are_refused_with_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let album = dir.path().join("Album");
        std::fs::create_dir_all(album.join("Disc 2")).unwrap();
        for f in ["02 b.flac", "01 a.mp3", ".hidden.wav", "Disc 2/03 c.wav"] {
            write_song(&album.join(f));
        }
        std::fs::write(album.join("cover.jpg"), b"\xFF\xD8\xFF\xE0 not music").unwrap();
        // A folder's file named like audio but holding none is refused with its reason.
        std::fs::write(album.join("04 lyrics.mp3"), "la la la\n".repeat(50)).unwrap();
        let empty = dir.path().join("Empty");
        std::fs::create_dir(&empty).unwrap();
        let notes = dir.path().join("notes.mp3");
        std::fs::write(&notes, "Practice the bridge slowly.\n".repeat(20)).unwrap();
        // The content decides, not the name: a WAV called .M4A is a song.
        let song = dir.path().join("Song.M4A");
        write_song(&song);
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
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert_eq!(reasons[0].0, "04 lyrics.mp3");
        assert!(reasons[0].1.starts_with("not an audio file"), "{reasons:?}");
        assert_eq!(reasons[1].0, "notes.mp3");
        assert!(reasons[1].1.starts_with("not an audio file"), "{reasons:?}");
        assert_eq!(reasons[2], ("Empty", "the folder has no audio files in it"));
        assert_eq!(reasons[3], ("gone.wav", "file not found"));
    }
}
