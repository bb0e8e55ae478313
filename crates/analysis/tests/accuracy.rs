//! Tempo, beats, key and loudness measured on generated music whose answers are known.

use stemdeck_analysis::{Analysis, KeyMode, SongAnalyzer};

const RATE: u32 = 44_100;
const STEMS: [&str; 4] = ["drums", "bass", "other", "vocals"];

/// Repeatable noise for drum sounds.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

fn add_at(track: &mut [f32], at: usize, sound: &[f32]) {
    let from = at.min(track.len());
    for (t, s) in track[from..].iter_mut().zip(sound) {
        *t += s;
    }
}

fn click() -> Vec<f32> {
    (0..1500)
        .map(|i| {
            let t = i as f32 / RATE as f32;
            (std::f32::consts::TAU * 1500.0 * t).sin() * (-t * 120.0).exp() * 0.8
        })
        .collect()
}

fn kick() -> Vec<f32> {
    let mut phase = 0f32;
    (0..8000)
        .map(|i| {
            let t = i as f32 / RATE as f32;
            phase += std::f32::consts::TAU * (50.0 + 100.0 * (-t * 30.0).exp()) / RATE as f32;
            phase.sin() * (-t * 12.0).exp() * 0.9
        })
        .collect()
}

fn snare(noise: &mut Noise) -> Vec<f32> {
    (0..6000)
        .map(|i| {
            let t = i as f32 / RATE as f32;
            (noise.next() * 0.6 + (std::f32::consts::TAU * 190.0 * t).sin() * 0.3)
                * (-t * 25.0).exp()
        })
        .collect()
}

fn hat(noise: &mut Noise) -> Vec<f32> {
    let mut last = 0f32;
    (0..2000)
        .map(|i| {
            let t = i as f32 / RATE as f32;
            let n = noise.next();
            // A first difference leaves the high frequencies of a closed hi-hat.
            let high = n - last;
            last = n;
            high * 0.15 * (-t * 80.0).exp()
        })
        .collect()
}

fn beat_samples(bpm: f64, secs: f64, offset: f64) -> Vec<usize> {
    let period = 60.0 / bpm;
    (0..)
        .map(|i| offset + i as f64 * period)
        .take_while(|t| *t < secs - 0.2)
        .map(|t| (t * RATE as f64).round() as usize)
        .collect()
}

fn clicks(bpm: f64, secs: f64) -> Vec<f32> {
    let mut track = vec![0f32; (secs * RATE as f64) as usize];
    let sound = click();
    for at in beat_samples(bpm, secs, 0.25) {
        add_at(&mut track, at, &sound);
    }
    track
}

/// Kick on 1 and 3, snare on 2 and 4, closed hi-hat on every eighth.
fn drum_pattern(bpm: f64, secs: f64) -> Vec<f32> {
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut track = vec![0f32; (secs * RATE as f64) as usize];
    let (kick, period) = (kick(), 60.0 / bpm);
    for (beat, at) in beat_samples(bpm, secs, 0.25).into_iter().enumerate() {
        if beat % 2 == 0 {
            add_at(&mut track, at, &kick);
        } else {
            add_at(&mut track, at, &snare(&mut noise));
        }
        add_at(&mut track, at, &hat(&mut noise));
        let half = at + (period / 2.0 * RATE as f64) as usize;
        add_at(&mut track, half, &hat(&mut noise));
    }
    track
}

/// A tone with the first harmonics of a bowed or sung note.
fn note(midi: f32, secs: f32, level: f32) -> Vec<f32> {
    let hz = 440.0 * 2f32.powf((midi - 69.0) / 12.0);
    let n = (secs * RATE as f32) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / RATE as f32;
            let envelope = (t * 50.0).min(1.0) * ((secs - t) * 50.0).min(1.0);
            (1..=4)
                .map(|h| (std::f32::consts::TAU * hz * h as f32 * t).sin() / h as f32)
                .sum::<f32>()
                * envelope
                * level
        })
        .collect()
}

/// I–IV–V–I in major, or i–iv–V–i (with the harmonic minor's raised leading note) in minor,
/// twice, on `tonic` (a pitch class), with the root in the bass.
fn progression(tonic: u8, mode: KeyMode) -> (Vec<f32>, Vec<f32>) {
    let third = if mode == KeyMode::Major { 4 } else { 3 };
    let chords: [[i32; 3]; 4] = [
        [0, third, 7],
        [5, 5 + third, 12],
        [7, 11, 14],
        [0, third, 7],
    ];
    let (mut harmony, mut bass) = (Vec::new(), Vec::new());
    let base = 60 + tonic as i32;
    for _ in 0..2 {
        for chord in chords {
            let mut sound = vec![0f32; RATE as usize];
            for interval in chord {
                for (s, v) in sound
                    .iter_mut()
                    .zip(note((base + interval) as f32, 1.0, 0.15))
                {
                    *s += v;
                }
            }
            harmony.extend(sound);
            bass.extend(note((base - 24 + chord[0]) as f32, 1.0, 0.3));
        }
    }
    (harmony, bass)
}

/// Runs the analyzer over stereo stems (the same signal in both channels), in blocks.
fn analyse(stems: &[(&str, Vec<f32>)]) -> Analysis {
    let names: Vec<String> = stems.iter().map(|(n, _)| n.to_string()).collect();
    let frames = stems.iter().map(|(_, s)| s.len()).max().unwrap();
    let mut analyzer = SongAnalyzer::new(&names, 2, RATE);
    for start in (0..frames).step_by(44_100) {
        let end = (start + 44_100).min(frames);
        let block: Vec<Vec<Vec<f32>>> = stems
            .iter()
            .map(|(_, s)| {
                let mut part = s[start.min(s.len())..end.min(s.len())].to_vec();
                part.resize(end - start, 0.0);
                vec![part.clone(), part]
            })
            .collect();
        analyzer.push(&block);
    }
    analyzer.finish()
}

fn silent(frames: usize) -> Vec<f32> {
    vec![0.0; frames]
}

#[test]
fn click_tracks_from_70_to_180_bpm_are_timed_within_one_bpm() {
    let mut table = Vec::new();
    for bpm in (70..=180)
        .step_by(10)
        .map(f64::from)
        .chain([97.5, 123.0, 143.7])
    {
        let track = clicks(bpm, 20.0);
        let n = track.len();
        let analysis = analyse(&[("drums", track), ("other", silent(n))]);
        let found = analysis.tempo.expect("a click track has a tempo").bpm;
        table.push((bpm, found));
    }
    for (bpm, found) in &table {
        println!("click {bpm:6.1} BPM -> {found:6.1}");
    }
    for (bpm, found) in table {
        assert!(
            (found - bpm).abs() <= 1.0,
            "click at {bpm} BPM read as {found}"
        );
    }
}

#[test]
fn drum_patterns_from_70_to_180_bpm_are_timed_within_one_bpm() {
    let mut table = Vec::new();
    for bpm in (70..=180).step_by(10).map(f64::from) {
        let drums = drum_pattern(bpm, 20.0);
        let n = drums.len();
        let analysis = analyse(&[("drums", drums), ("bass", silent(n)), ("other", silent(n))]);
        let found = analysis.tempo.expect("a drum pattern has a tempo").bpm;
        table.push((bpm, found));
    }
    for (bpm, found) in &table {
        println!("drums {bpm:6.1} BPM -> {found:6.1}");
    }
    for (bpm, found) in table {
        assert!(
            (found - bpm).abs() <= 1.0,
            "drums at {bpm} BPM read as {found}"
        );
    }
}

#[test]
fn beats_fall_on_the_clicks() {
    let bpm = 96.0;
    let track = clicks(bpm, 20.0);
    let n = track.len();
    let analysis = analyse(&[("drums", track), ("other", silent(n))]);
    let tempo = analysis.tempo.unwrap();
    let truth: Vec<f64> = beat_samples(bpm, 20.0, 0.25)
        .into_iter()
        .map(|s| s as f64 / RATE as f64)
        .collect();
    assert!(
        tempo.beats.len() >= truth.len() - 2,
        "{} beats",
        tempo.beats.len()
    );
    for beat in &tempo.beats {
        let nearest = truth
            .iter()
            .map(|t| (t - beat).abs())
            .fold(f64::MAX, f64::min);
        assert!(
            nearest < 0.015,
            "a beat at {beat:.3} s is {nearest:.3} s from a click"
        );
    }
    assert_eq!(tempo.from, "drums");
}

#[test]
fn chord_progressions_in_all_24_keys_are_named() {
    let mut wrong = Vec::new();
    for mode in [KeyMode::Major, KeyMode::Minor] {
        for tonic in 0..12u8 {
            let (harmony, bass) = progression(tonic, mode);
            let n = harmony.len();
            let drums = drum_pattern(120.0, n as f64 / RATE as f64);
            let analysis = analyse(&[("drums", drums), ("bass", bass), ("other", harmony)]);
            let key = analysis.key.expect("chords have a key");
            println!("{tonic:2} {mode:?} -> {}", key.name);
            if key.tonic != tonic || key.mode != mode {
                wrong.push(format!("{tonic} {mode:?} read as {}", key.name));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:?}");
}

#[test]
fn loudness_matches_the_ebu_reference_sine() {
    // EBU Tech 3341 case 1: a 1 kHz sine at -23 dBFS in both channels is -23 LUFS.
    let amplitude = 10f32.powf(-23.0 / 20.0);
    let sine: Vec<f32> = (0..20 * RATE as usize)
        .map(|i| (std::f32::consts::TAU * 1000.0 * i as f32 / RATE as f32).sin() * amplitude)
        .collect();
    let n = sine.len();
    let analysis = analyse(&[("vocals", sine), ("other", silent(n))]);
    let vocals = analysis.stem_loudness[0].loudness;
    assert!(
        (vocals.integrated_lufs.unwrap() + 23.0).abs() <= 0.1,
        "{vocals:?}"
    );
    assert!(
        (vocals.true_peak_dbtp.unwrap() + 23.0).abs() <= 0.2,
        "{vocals:?}"
    );
    assert_eq!(analysis.mix_loudness, vocals, "a silent stem adds nothing");
    assert_eq!(analysis.stem_loudness[1].loudness.integrated_lufs, None);
    assert!(analysis.tempo.is_none(), "a steady tone has no beat");
}

#[test]
fn silence_and_very_short_songs_have_no_tempo_or_key() {
    for frames in [0, 44, RATE as usize / 3, 10 * RATE as usize] {
        let analysis = analyse(&STEMS.map(|s| (s, silent(frames.max(1)))));
        assert_eq!(analysis.tempo, None, "{frames} frames");
        assert_eq!(analysis.key, None, "{frames} frames");
        assert_eq!(analysis.mix_loudness.integrated_lufs, None);
    }
}

#[test]
fn the_analysis_round_trips_through_json() {
    let track = clicks(120.0, 8.0);
    let n = track.len();
    let analysis = analyse(&[("drums", track), ("other", silent(n))]);
    let json = serde_json::to_string(&analysis).unwrap();
    let back: Analysis = serde_json::from_str(&json).unwrap();
    assert_eq!(back, analysis);
}
