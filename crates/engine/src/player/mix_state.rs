//! The mixer's settings as a musician thinks of them: per stem (by name) a gain, mute,
//! solo and pan, plus the loop and the practice tools (tempo, pitch, click, count-in). Remembered per song, and saved as presets that apply to
//! any song with stems of those names.

use serde::{Deserialize, Serialize};

/// One stem's place in the mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct StemMix {
    pub name: String,
    /// Linear gain (1.0 is unchanged).
    pub gain: f32,
    pub muted: bool,
    pub soloed: bool,
    /// -1 (left) to 1 (right).
    #[serde(default)]
    pub pan: f32,
}

impl StemMix {
    /// As separated: full level, centred, neither muted nor soloed.
    pub fn neutral(name: &str) -> Self {
        Self {
            name: name.to_string(),
            gain: 1.0,
            muted: false,
            soloed: false,
            pan: 0.0,
        }
    }
}

/// A mixer's whole state, remembered per song.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MixSettings {
    pub stems: Vec<StemMix>,
    /// The loop in seconds, `[start, end)`.
    #[serde(default)]
    pub loop_secs: Option<(f64, f64)>,
    /// Tempo, pitch, click and count-in; `None` leaves them as they are (a preset).
    #[serde(default)]
    pub practice: Option<Practice>,
}

impl MixSettings {
    pub fn neutral(names: &[String]) -> Self {
        Self {
            stems: names.iter().map(|n| StemMix::neutral(n)).collect(),
            loop_secs: None,
            practice: Some(Practice::default()),
        }
    }
}

/// How a musician practises along: slower, in another key, with a click and a count-in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Practice {
    /// Share of the original speed, 0.5 to 1.5.
    pub tempo: f32,
    /// Semitones from the original key, -12 to 12 (fractions are cents).
    pub semitones: f32,
    pub click: bool,
    /// Linear, 0 to 1.
    pub click_volume: f32,
    pub count_in: bool,
}

impl Default for Practice {
    fn default() -> Self {
        Self {
            tempo: 1.0,
            semitones: 0.0,
            click: false,
            click_volume: 0.5,
            count_in: false,
        }
    }
}

impl Practice {
    /// What an export made at these settings adds to its name: "80%, -2 st", or nothing
    /// when the song plays as recorded.
    pub fn file_name_note(&self) -> Option<String> {
        let mut parts = Vec::new();
        if (self.tempo - 1.0).abs() >= 0.005 {
            parts.push(format!("{}%", (self.tempo * 100.0).round()));
        }
        if self.semitones.abs() >= 0.005 {
            let cents = (self.semitones * 100.0).round() / 100.0;
            let text = if cents.fract() == 0.0 {
                format!("{cents:+}")
            } else {
                format!("{cents:+.2}")
            };
            parts.push(format!("{text} st"));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// A named balance of stems: built in, or saved by the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MixPreset {
    pub name: String,
    /// The stems it sets; the others play as separated.
    pub stems: Vec<StemMix>,
    #[serde(default)]
    pub builtin: bool,
}

impl MixPreset {
    /// The preset as a mix for a song with `names` stems (keeping that song's loop).
    pub fn mix_for(&self, names: &[String], loop_secs: Option<(f64, f64)>) -> MixSettings {
        MixSettings {
            stems: names
                .iter()
                .map(|name| {
                    self.stems
                        .iter()
                        .find(|s| &s.name == name)
                        .cloned()
                        .unwrap_or_else(|| StemMix::neutral(name))
                })
                .collect(),
            loop_secs,
            practice: None,
        }
    }

    /// A user's preset of `mix`, under `name`.
    pub fn saved(name: &str, mix: &MixSettings) -> Self {
        Self {
            name: name.trim().to_string(),
            stems: mix.stems.clone(),
            builtin: false,
        }
    }
}

/// The presets every song with the right stems gets: "Karaoke" (no vocals), "No drums"
/// and "Only vocals", where the song has those stems.
pub fn builtin_presets(names: &[String]) -> Vec<MixPreset> {
    let has = |stem: &str| names.iter().any(|n| n == stem);
    let with = |name: &str, stem: &str, muted: bool| MixPreset {
        name: name.into(),
        stems: vec![StemMix {
            muted,
            soloed: !muted,
            ..StemMix::neutral(stem)
        }],
        builtin: true,
    };
    let mut presets = Vec::new();
    if has("vocals") {
        presets.push(with("Karaoke", "vocals", true));
    }
    if has("drums") {
        presets.push(with("No drums", "drums", true));
    }
    if has("vocals") && names.len() > 1 {
        presets.push(with("Only vocals", "vocals", false));
    }
    presets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_export_at_practice_settings_says_so_in_its_name() {
        let slow_low = Practice {
            tempo: 0.8,
            semitones: -2.0,
            ..Practice::default()
        };
        assert_eq!(slow_low.file_name_note().as_deref(), Some("80%, -2 st"));
        let cents = Practice {
            semitones: 0.35,
            ..Practice::default()
        };
        assert_eq!(cents.file_name_note().as_deref(), Some("+0.35 st"));
        assert_eq!(Practice::default().file_name_note(), None);
    }

    #[test]
    fn built_in_presets_fit_the_song_s_stems() {
        let four = names(&["drums", "bass", "other", "vocals"]);
        let presets = builtin_presets(&four);
        let titles: Vec<&str> = presets.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(titles, ["Karaoke", "No drums", "Only vocals"]);
        let karaoke = presets[0].mix_for(&four, Some((1.0, 2.0)));
        let muted: Vec<bool> = karaoke.stems.iter().map(|s| s.muted).collect();
        assert_eq!(muted, [false, false, false, true]);
        assert_eq!(
            karaoke.loop_secs,
            Some((1.0, 2.0)),
            "a preset keeps the song's loop"
        );
        let only = presets[2].mix_for(&four, None);
        assert!(only.stems[3].soloed && !only.stems[0].soloed);

        let two = names(&["vocals", "no_vocals"]);
        let titles: Vec<String> = builtin_presets(&two).into_iter().map(|p| p.name).collect();
        assert_eq!(
            titles,
            ["Karaoke", "Only vocals"],
            "no drums stem, no \"No drums\""
        );
    }

    #[test]
    fn a_saved_preset_applies_by_stem_name_to_another_song() {
        let mut mix = MixSettings::neutral(&names(&["drums", "bass", "other", "vocals"]));
        mix.stems[1].gain = 0.5;
        mix.stems[1].pan = -0.4;
        let preset = MixPreset::saved("  Bass left ", &mix);
        assert_eq!(preset.name, "Bass left");
        let six = names(&["drums", "bass", "other", "vocals", "guitar", "piano"]);
        let applied = preset.mix_for(&six, None);
        assert_eq!((applied.stems[1].gain, applied.stems[1].pan), (0.5, -0.4));
        assert_eq!(applied.stems[5], StemMix::neutral("piano"));
    }
}
