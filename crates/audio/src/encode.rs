//! What every written file shares, whatever its format: clip prevention, peak
//! normalisation, float-to-integer conversion, and writing to a temporary name beside the
//! target that is renamed into place only once complete, so no half-written file ever
//! carries the final name.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::buffer::AudioBuffer;
use crate::error::{AudioError, Result};

/// How samples beyond full scale are kept from clipping (demucs' `--clip-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipMode {
    /// Scale the whole stem down just enough when it would clip.
    #[default]
    Rescale,
    /// Clamp each sample to ±0.99.
    Clamp,
    /// Leave samples as they are (integer formats then saturate).
    None,
}

/// Applies `mode` to one stem, as `demucs.audio.prevent_clip` does.
pub fn prevent_clip(audio: &mut AudioBuffer, mode: ClipMode) {
    let gain = LevelGain::prevent_clip(mode, audio.peak());
    audio.channels.iter_mut().for_each(|c| gain.apply(c));
}

/// Scales `audio` so that its highest sample peak sits at `dbfs` (for example -1.0). Silence
/// stays silence. Unlike clip prevention this also raises quiet stems, so normalised stems
/// no longer add up to the mix.
pub fn normalize_peak(audio: &mut AudioBuffer, dbfs: f32) {
    let gain = LevelGain::normalize_peak(dbfs, audio.peak());
    audio.channels.iter_mut().for_each(|c| gain.apply(c));
}

/// The level change [`prevent_clip`] or [`normalize_peak`] makes to a stem whose peak is
/// known, to apply to it block by block: a stem too long to hold is finished in one pass
/// once its peak is known, sample for sample as the whole-buffer functions do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LevelGain {
    Keep,
    /// Divide every sample by this scale (clip prevention by rescaling).
    Divide(f32),
    /// Multiply every sample by this gain (peak normalisation).
    Multiply(f32),
    /// Clamp every sample to ±0.99.
    Clamp,
}

impl LevelGain {
    /// What [`prevent_clip`] does with `mode` to audio peaking at `peak`.
    pub fn prevent_clip(mode: ClipMode, peak: f32) -> Self {
        match mode {
            ClipMode::Rescale => {
                let scale = (1.01 * peak).max(1.0);
                if scale > 1.0 {
                    LevelGain::Divide(scale)
                } else {
                    LevelGain::Keep
                }
            }
            ClipMode::Clamp => LevelGain::Clamp,
            ClipMode::None => LevelGain::Keep,
        }
    }

    /// What [`normalize_peak`] does to audio peaking at `peak`.
    pub fn normalize_peak(dbfs: f32, peak: f32) -> Self {
        if peak <= f32::EPSILON {
            LevelGain::Keep
        } else {
            LevelGain::Multiply(10f32.powf(dbfs / 20.0) / peak)
        }
    }

    pub fn apply(&self, samples: &mut [f32]) {
        match *self {
            LevelGain::Keep => {}
            LevelGain::Divide(scale) => samples.iter_mut().for_each(|v| *v /= scale),
            LevelGain::Multiply(gain) => samples.iter_mut().for_each(|v| *v *= gain),
            LevelGain::Clamp => samples.iter_mut().for_each(|v| *v = v.clamp(-0.99, 0.99)),
        }
    }
}

/// Largest absolute sample value of `samples`, folded into `peak` (as
/// [`AudioBuffer::peak`] counts it), for a peak tracked block by block.
pub fn fold_peak(peak: f32, samples: &[f32]) -> f32 {
    samples.iter().fold(peak, |m, v| m.max(v.abs()))
}

/// Float to integer PCM as torchaudio/soundfile do: scale by 2^(bits-1), round, saturate.
pub(crate) fn to_int(v: f32, bits: u32) -> i32 {
    let max = (1i64 << (bits - 1)) as f64;
    ((v as f64 * max).round()).clamp(-max, max - 1.0) as i32
}

/// Runs `write` on a temporary file next to `path`, syncs it and renames it to `path`.
/// On any failure the temporary file is removed and `path` is left as it was.
///
/// `write` reports failures in the caller's own error type, which keeps their cause.
pub fn write_atomically<E: From<AudioError>>(
    path: &Path,
    write: impl FnOnce(std::fs::File) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let partial = PartialFile::create(path)?;
    let file = partial.file().try_clone().map_err(|e| partial.error(e))?;
    write(file)?;
    Ok(partial.commit()?)
}

/// Replaces `path` with `bytes` as [`write_atomically`] does.
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |mut file| {
        file.write_all(bytes).map_err(|e| AudioError::Write {
            path: path.to_owned(),
            source: e.into(),
        })
    })
}

/// A file being written under a temporary name beside its target (`.name.<pid>.partial`),
/// renamed into place by [`PartialFile::commit`] once complete; dropped without that, it is
/// removed.
#[derive(Debug)]
pub(crate) struct PartialFile {
    path: PathBuf,
    tmp: PathBuf,
    file: std::fs::File,
    committed: bool,
}

impl PartialFile {
    /// Creates the temporary file, and the target's folder if needed.
    pub(crate) fn create(path: &Path) -> Result<Self> {
        let err = |e: std::io::Error| AudioError::Write {
            path: path.to_owned(),
            source: e.into(),
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(err)?;
        let tmp = temp_name(path);
        let file = std::fs::File::create(&tmp).map_err(err)?;
        Ok(Self {
            path: path.to_owned(),
            tmp,
            file,
            committed: false,
        })
    }

    pub(crate) fn file(&self) -> &std::fs::File {
        &self.file
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A write error naming the target.
    pub(crate) fn error(&self, source: impl Into<crate::error::WriteFailure>) -> AudioError {
        AudioError::Write {
            path: self.path.clone(),
            source: source.into(),
        }
    }

    /// Flushes and syncs the file and renames it to its target.
    pub(crate) fn commit(mut self) -> Result<()> {
        self.file.flush().map_err(|e| self.error(e))?;
        self.file.sync_all().map_err(|e| self.error(e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| self.error(e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The name a file is written under until it is complete (`.name.<pid>.partial` beside
/// it), which the next start sweeps away should this process die first.
pub fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_only_scales_stems_that_would_clip() {
        let mut quiet = AudioBuffer::new(44100, vec![vec![0.5, -0.9]]);
        prevent_clip(&mut quiet, ClipMode::Rescale);
        assert_eq!(quiet.channels[0], vec![0.5, -0.9]);
        let mut loud = AudioBuffer::new(44100, vec![vec![2.0, -1.0]]);
        prevent_clip(&mut loud, ClipMode::Rescale);
        assert!((loud.channels[0][0] - 2.0 / 2.02).abs() < 1e-6);
        assert!(loud.peak() < 1.0);
    }

    #[test]
    fn normalisation_puts_the_peak_at_the_target_and_keeps_silence_silent() {
        let mut quiet = AudioBuffer::new(44100, vec![vec![0.1, -0.25], vec![0.05, 0.2]]);
        normalize_peak(&mut quiet, -1.0);
        let target = 10f32.powf(-1.0 / 20.0);
        assert!((quiet.peak() - target).abs() < 1e-6);
        // Every sample moved by the same gain: the shape is kept.
        assert!((quiet.channels[0][0] / quiet.channels[0][1] - 0.1 / -0.25).abs() < 1e-6);
        let mut loud = AudioBuffer::new(44100, vec![vec![1.8, -0.3]]);
        normalize_peak(&mut loud, 0.0);
        assert!((loud.peak() - 1.0).abs() < 1e-6);
        let mut silent = AudioBuffer::new(44100, vec![vec![0.0; 4]]);
        normalize_peak(&mut silent, -1.0);
        assert_eq!(silent.channels[0], vec![0.0; 4]);
    }

    #[test]
    fn clamp_limits_to_099() {
        let mut a = AudioBuffer::new(44100, vec![vec![1.5, -3.0, 0.2]]);
        prevent_clip(&mut a, ClipMode::Clamp);
        assert_eq!(a.channels[0], vec![0.99, -0.99, 0.2]);
    }

    #[test]
    fn integer_conversion_rounds_and_saturates() {
        assert_eq!(to_int(1.0, 16), 32767);
        assert_eq!(to_int(-1.0, 16), -32768);
        assert_eq!(to_int(0.5, 16), 16384);
        assert_eq!(to_int(-2.0, 24), -(1 << 23));
    }

    #[test]
    fn a_failed_write_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("vocals.wav");
        let result = write_atomically(&target, |_| {
            Err(AudioError::Write {
                path: target.clone(),
                source: "disk full".into(),
            })
        });
        assert!(result.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
