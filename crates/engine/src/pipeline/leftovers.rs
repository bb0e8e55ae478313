//! What a killed run leaves behind, and clearing it at the next start.
//!
//! Every file and folder a job writes while it works carries the id of the process that
//! made it: stems and ZIPs are written as `.name.<pid>.partial` and renamed when complete,
//! spills and the player's store are `.stemdeck-<pid>-….partial` folders, and link downloads
//! work in `.partial-<video>-<pid>-<nanos>`. A process that is killed cannot remove them, so
//! the next one does, leaving alone those of a process that is still running (another
//! `stemdeck` writing into the same folder).

use std::path::{Path, PathBuf};

/// The prefix of a spill folder made by this process.
pub(crate) fn spill_prefix() -> String {
    format!(".stemdeck-{}-", std::process::id())
}

/// The prefix of a player store made by this process.
pub(crate) fn player_prefix() -> String {
    format!(".stemdeck-play-{}-", std::process::id())
}

/// The process that made `name`, when it is one of our working files or folders.
fn owner(name: &str) -> Option<u32> {
    if let Some(rest) = name.strip_prefix(".partial-") {
        // `.partial-<video>-<pid>-<nanos>`; a video id may itself hold dashes.
        let mut parts = rest.rsplitn(3, '-');
        let _nanos = parts.next()?;
        return parts.next()?.parse().ok();
    }
    let stem = name.strip_prefix('.')?.strip_suffix(".partial")?;
    if let Some(rest) = stem
        .strip_prefix("stemdeck-play-")
        .or_else(|| stem.strip_prefix("stemdeck-"))
    {
        return rest.split('-').next()?.parse().ok();
    }
    // `.name.<pid>.partial`
    stem.rsplit('.').next()?.parse().ok()
}

/// Whether process `pid` is still running.
fn is_running(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        Path::new("/proc").join(pid.to_string()).exists()
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        // Signal 0 checks that the process exists without touching it.
        std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
    #[cfg(not(unix))]
    {
        // Without a cheap check, assume it runs; the files are hidden and small in number.
        true
    }
}

/// Removes the working files and folders of stopped processes in `dir` and in the
/// folders below it, down to `depth` levels (an output root holds one folder per song).
/// Returns what was removed.
pub fn sweep(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    sweep_into(dir, depth, &mut removed);
    if !removed.is_empty() {
        tracing::info!(
            count = removed.len(),
            dir = %dir.display(),
            "removed what an interrupted run left"
        );
    }
    removed
}

fn sweep_into(dir: &Path, depth: usize, removed: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        match owner(&name) {
            Some(pid) if !is_running(pid) => {
                let gone = if kind.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                if gone.is_ok() {
                    removed.push(path);
                }
            }
            Some(_) => {}
            None if kind.is_dir() && depth > 0 && !name.starts_with('.') => {
                sweep_into(&path, depth - 1, removed)
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_working_files_give_their_process() {
        assert_eq!(owner(".drums.wav.4242.partial"), Some(4242));
        assert_eq!(owner(".Song (no vocals).zip.17.partial"), Some(17));
        assert_eq!(owner(".stemdeck-981-Ab3xQ.partial"), Some(981));
        assert_eq!(owner(".stemdeck-play-77-zzzz.partial"), Some(77));
        assert_eq!(owner(".partial-dQw4w9-WgXcQ-5150-123456789"), Some(5150));
        assert_eq!(owner("drums.wav"), None);
        assert_eq!(owner(".hidden.partial"), None);
        assert_eq!(owner("library.json"), None);
    }

    #[test]
    fn leftovers_of_stopped_processes_go_and_those_of_running_ones_stay() {
        let root = tempfile::tempdir().unwrap();
        let song = root.path().join("Song");
        std::fs::create_dir(&song).unwrap();
        // A pid no process has (above the kernel's pid_max of 2^22).
        let dead = 4_999_999u32;
        let alive = std::process::id();
        let stale_stem = song.join(format!(".drums.wav.{dead}.partial"));
        let stale_spill = song.join(format!(".stemdeck-{dead}-abc.partial"));
        let stale_download = root.path().join(format!(".partial-abcdefghijk-{dead}-1"));
        let busy = song.join(format!(".bass.wav.{alive}.partial"));
        let finished = song.join("vocals.wav");
        for file in [&stale_stem, &busy, &finished] {
            std::fs::write(file, b"x").unwrap();
        }
        for dir in [&stale_spill, &stale_download] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("mix.f32"), b"x").unwrap();
        }

        let mut removed = sweep(root.path(), 1);
        removed.sort();
        let mut expected = vec![stale_download, stale_spill, stale_stem];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(busy.exists() && finished.exists());
    }
}
