//! Custom mixes ("stem merging"): a recipe such as `drums+bass` or `all-vocals` turned into
//! one gain per stem, and stems summed with those gains into one file.

use std::path::{Path, PathBuf};

use stemdeck_audio::{AudioBuffer, Tags};
use stemdeck_playback::TempoPitch;

use crate::error::{EngineError, Result};
use crate::pipeline::StemFile;
use crate::pipeline::options::{OutputOptions, finish_levels};

/// Which stems a mix adds, from `--mix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixRecipe {
    spec: String,
    /// Stem names with `+1` (added) or `-1` (taken out of "all").
    terms: Vec<(String, bool)>,
    starts_with_all: bool,
}

impl MixRecipe {
    /// Reads `drums+bass`, `all-vocals`, `all-vocals-drums` or `vocals`. Names are checked
    /// against the job's stems later, when they are known.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |why: String| EngineError::BadMix {
            spec: spec.to_string(),
            reason: why,
        };
        let compact: String = spec.split_whitespace().collect();
        if compact.is_empty() {
            return Err(bad(
                "it is empty; name stems like \"drums+bass\" or \"all-vocals\"".into(),
            ));
        }
        let mut terms = Vec::new();
        let mut starts_with_all = false;
        let mut sign = true;
        let mut name = String::new();
        let mut push = |name: &mut String, sign: bool, first: bool| -> Result<()> {
            let stem = std::mem::take(name).to_lowercase();
            if stem.is_empty() {
                return Err(bad("a + or - has no stem name beside it".into()));
            }
            if stem == "all" {
                if !first || !sign {
                    return Err(bad("\"all\" can only come first".into()));
                }
                starts_with_all = true;
            } else {
                terms.push((stem, sign));
            }
            Ok(())
        };
        let mut first = true;
        for c in compact.chars() {
            match c {
                '+' | '-' => {
                    push(&mut name, sign, first)?;
                    first = false;
                    sign = c == '+';
                }
                c => name.push(c),
            }
        }
        push(&mut name, sign, first)?;
        if !starts_with_all && terms.iter().any(|(_, added)| !added) {
            return Err(bad(
                "taking a stem out needs \"all\" first, as in \"all-vocals\"".into(),
            ));
        }
        if starts_with_all && terms.iter().any(|(_, added)| *added) {
            return Err(bad(
                "\"all\" already has every stem; use only - after it".into()
            ));
        }
        Ok(Self {
            spec: compact.to_lowercase(),
            terms,
            starts_with_all,
        })
    }

    /// The recipe as written, normalised (`all-vocals`), which also names its file.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// One gain per stem (1 in the mix, 0 out of it), in the order of `stems`.
    pub fn gains(&self, stems: &[String]) -> Result<Vec<f32>> {
        for (name, _) in &self.terms {
            if !stems.contains(name) {
                return Err(EngineError::BadMix {
                    spec: self.spec.clone(),
                    reason: format!(
                        "this job has no \"{name}\" stem (it has {})",
                        stems.join(", ")
                    ),
                });
            }
        }
        let gains: Vec<f32> = stems
            .iter()
            .map(|stem| {
                let named = self.terms.iter().any(|(n, _)| n == stem);
                let kept = if self.starts_with_all { !named } else { named };
                if kept { 1.0 } else { 0.0 }
            })
            .collect();
        if gains.iter().all(|g| *g == 0.0) {
            return Err(EngineError::BadMix {
                spec: self.spec.clone(),
                reason: "it leaves no stem in the mix".into(),
            });
        }
        Ok(gains)
    }

    /// `mix-all-vocals.flac`: beside the stems, never mistaken for one.
    pub fn file_name(&self, extension: &str) -> String {
        format!("mix-{}.{extension}", self.spec)
    }
}

/// Names a mix by its levels: `drums+bass` when every stem is either in at full level or
/// out (`no vocals` when only one is out), else `custom mix`.
pub fn describe_levels(stems: &[String], gains: &[f32]) -> String {
    let whole = gains.iter().all(|g| *g == 0.0 || (*g - 1.0).abs() < 1e-3);
    if !whole {
        return "custom mix".into();
    }
    let kept: Vec<&str> = stems
        .iter()
        .zip(gains)
        .filter(|(_, g)| **g > 0.0)
        .map(|(s, _)| s.as_str())
        .collect();
    if kept.len() == stems.len() {
        "all stems".into()
    } else if kept.len() + 1 == stems.len() && stems.len() > 2 {
        let out = stems.iter().zip(gains).find(|(_, g)| **g == 0.0);
        format!("no {}", out.map_or("", |(s, _)| s.as_str()))
    } else {
        kept.join("+")
    }
}

/// Sums `stems` with one gain each. All stems share rate and channels (one separation).
pub fn render_mix(stems: &[&AudioBuffer], gains: &[f32]) -> AudioBuffer {
    let planar: Vec<&[Vec<f32>]> = stems.iter().map(|s| s.channels.as_slice()).collect();
    AudioBuffer::new(stems[0].sample_rate, mix_planar(&planar, gains))
}

/// [`render_mix`] of planar audio (`stems[stem][channel][frame]`): a chunk of stems as the
/// separation hands it on, or whole stems.
pub fn mix_planar(stems: &[&[Vec<f32>]], gains: &[f32]) -> Vec<Vec<f32>> {
    let frames = stems
        .iter()
        .map(|s| s.first().map_or(0, Vec::len))
        .min()
        .unwrap_or(0);
    let mut channels = vec![vec![0f32; frames]; stems[0].len()];
    for (stem, &gain) in stems.iter().zip(gains) {
        if gain == 0.0 {
            continue;
        }
        for (out, input) in channels.iter_mut().zip(stem.iter()) {
            out.iter_mut()
                .zip(&input[..frames])
                .for_each(|(o, i)| *o += gain * i);
        }
    }
    channels
}

/// Mixes a finished job's stem files (the app's "Export mix", the CLI on a cached result).
pub fn mix_files(
    stems: &[StemFile],
    gains: &[f32],
    dest: &Path,
    output: &OutputOptions,
    tags: &Tags,
) -> Result<PathBuf> {
    let pans = vec![0.0; gains.len()];
    mix_files_panned(
        stems,
        gains,
        &pans,
        TempoPitch::default(),
        dest,
        output,
        tags,
    )
}

/// [`mix_files`] with each stem panned as in the mixer (-1 left to 1 right, by
/// [`stemdeck_playback::pan_gains`]), at the mixer's tempo and pitch.
pub fn mix_files_panned(
    stems: &[StemFile],
    gains: &[f32],
    pans: &[f32],
    tempo_pitch: TempoPitch,
    dest: &Path,
    output: &OutputOptions,
    tags: &Tags,
) -> Result<PathBuf> {
    if stems.len() != gains.len() || stems.len() != pans.len() || stems.is_empty() {
        return Err(EngineError::LevelsPerStem {
            path: dest.to_owned(),
        });
    }
    if gains.iter().all(|g| *g == 0.0) {
        return Err(EngineError::SilentMix {
            path: dest.to_owned(),
        });
    }
    let mut decoded = stems
        .iter()
        .map(|s| stemdeck_audio::decode_file(&s.path))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    for (audio, &pan) in decoded.iter_mut().zip(pans) {
        if pan != 0.0 {
            for (channel, gain) in audio
                .channels
                .iter_mut()
                .zip(stemdeck_playback::pan_gains(pan))
            {
                channel.iter_mut().for_each(|v| *v *= gain);
            }
        }
    }
    let refs: Vec<&AudioBuffer> = decoded.iter().collect();
    let mut mix = render_mix(&refs, gains);
    drop(decoded);
    if !tempo_pitch.is_neutral() {
        mix = stretched(&mix, tempo_pitch);
    }
    finish_levels(&mut mix, output);
    stemdeck_audio::write_audio(dest, &mix, output.format, tags)?;
    Ok(dest.to_owned())
}

/// `mix` at another tempo and pitch, through the same stretcher the mixer plays with.
fn stretched(mix: &AudioBuffer, tempo_pitch: TempoPitch) -> AudioBuffer {
    let frames = mix.channels.first().map_or(0, Vec::len);
    let left = &mix.channels[0];
    let right = mix.channels.get(1).unwrap_or(left);
    let mut at = 0;
    let out_frames = (frames as f64 / tempo_pitch.clamped().tempo as f64).round() as usize;
    let mut out = [
        Vec::with_capacity(out_frames),
        Vec::with_capacity(out_frames),
    ];
    stemdeck_playback::stretch::stretch_stream(
        mix.sample_rate,
        tempo_pitch,
        frames as u64,
        |buffer| {
            let n = (buffer.len() / 2).min(frames - at);
            for (i, frame) in buffer[..n * 2].chunks_mut(2).enumerate() {
                frame[0] = left[at + i];
                frame[1] = right[at + i];
            }
            at += n;
            n
        },
        |chunk| {
            for frame in chunk.chunks(2) {
                out[0].push(frame[0]);
                out[1].push(frame[1]);
            }
            Ok(())
        },
    )
    .expect("writing to memory cannot fail");
    let [l, r] = out;
    AudioBuffer::new(mix.sample_rate, vec![l, r])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn recipes_become_gains_per_stem() {
        let four = names(&["drums", "bass", "other", "vocals"]);
        let cases = [
            ("drums+bass", vec![1.0, 1.0, 0.0, 0.0]),
            ("all-vocals", vec![1.0, 1.0, 1.0, 0.0]),
            ("All - Vocals - Drums", vec![0.0, 1.0, 1.0, 0.0]),
            ("vocals", vec![0.0, 0.0, 0.0, 1.0]),
            ("all", vec![1.0, 1.0, 1.0, 1.0]),
        ];
        for (spec, gains) in cases {
            assert_eq!(
                MixRecipe::parse(spec).unwrap().gains(&four).unwrap(),
                gains,
                "{spec}"
            );
        }
        let six = names(&["drums", "bass", "other", "vocals", "guitar", "piano"]);
        assert_eq!(
            MixRecipe::parse("guitar+piano")
                .unwrap()
                .gains(&six)
                .unwrap(),
            vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
        );
        assert_eq!(
            MixRecipe::parse("All-Vocals").unwrap().file_name("mp3"),
            "mix-all-vocals.mp3"
        );
    }

    #[test]
    fn bad_recipes_say_what_is_wrong() {
        let four = names(&["drums", "bass", "other", "vocals"]);
        for (spec, reason) in [
            ("", "it is empty"),
            ("drums+", "a + or - has no stem name beside it"),
            ("drums-vocals", "taking a stem out needs \"all\" first"),
            ("all+drums", "\"all\" already has every stem"),
            ("drums+all", "\"all\" can only come first"),
        ] {
            let err = MixRecipe::parse(spec).unwrap_err().to_string();
            assert!(err.contains(reason), "{spec}: {err}");
        }
        let err = MixRecipe::parse("drums+guitar")
            .unwrap()
            .gains(&four)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot make the mix \"drums+guitar\": this job has no \"guitar\" stem (it has drums, bass, other, vocals)"
        );
        let err = MixRecipe::parse("all-drums-bass-other-vocals")
            .unwrap()
            .gains(&four)
            .unwrap_err();
        assert!(err.to_string().contains("leaves no stem"), "{err}");
    }

    #[test]
    fn mixes_are_named_by_their_levels() {
        let four = names(&["drums", "bass", "other", "vocals"]);
        assert_eq!(describe_levels(&four, &[1.0, 1.0, 0.0, 0.0]), "drums+bass");
        assert_eq!(describe_levels(&four, &[1.0, 1.0, 1.0, 1.0]), "all stems");
        assert_eq!(describe_levels(&four, &[1.0, 1.0, 1.0, 0.0]), "no vocals");
        assert_eq!(describe_levels(&four, &[1.0, 0.5, 0.0, 0.0]), "custom mix");
    }

    #[test]
    fn an_exported_mix_at_80_percent_is_a_quarter_longer_at_the_same_pitch() {
        let tone: Vec<f32> = (0..2 * 44_100)
            .map(|i| (std::f32::consts::TAU * 440.0 * i as f32 / 44_100.0).sin() * 0.4)
            .collect();
        let mix = AudioBuffer::new(44_100, vec![tone.clone(), tone]);
        let slow = stretched(
            &mix,
            TempoPitch {
                tempo: 0.8,
                semitones: 0.0,
            },
        );
        assert_eq!(slow.channels[0].len(), 2 * 44_100 * 5 / 4);
        // Zero crossings count the pitch: 440 a second, rising, in the middle second.
        let middle = &slow.channels[0][44_100 / 2..44_100 * 3 / 2];
        let rising = middle
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        assert!((rising as i32 - 440).abs() <= 2, "{rising}");
    }

    #[test]
    fn the_mix_is_the_gain_weighted_sum() {
        let a = AudioBuffer::new(44100, vec![vec![0.1, 0.2, 0.3], vec![0.0, -0.1, 0.5]]);
        let b = AudioBuffer::new(44100, vec![vec![0.4, -0.2, 0.0], vec![0.25, 0.25, 0.25]]);
        let mix = render_mix(&[&a, &b], &[1.0, 0.5]);
        let expected = [[0.3, 0.1, 0.3], [0.125, 0.025, 0.625]];
        for (got, want) in mix.channels.iter().zip(expected) {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-6, "{got:?}");
            }
        }
    }
}
