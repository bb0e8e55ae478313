//! `stemdeck separate` output options end to end with the small fixture model: FLAC and MP3
//! stems, custom mixes, the ZIP bundle, peak normalisation, and clear refusals.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn stemdeck(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stemdeck"))
        .args(args)
        .env(
            "STEMDECK_MODEL_DIR",
            std::env::temp_dir().join("stemdeck-test-no-models"),
        )
        .env("STEMDECK_CACHE_DIR", cache)
        .output()
        .unwrap()
}

fn run_ok(args: &[&str], cache: &Path) -> String {
    let out = stemdeck(args, cache);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn decode(path: &Path) -> Vec<Vec<f32>> {
    stemdeck_audio::decode_file(path).unwrap().channels
}

fn peak(channels: &[Vec<f32>]) -> f32 {
    channels.iter().flatten().fold(0.0, |m, v| m.max(v.abs()))
}

fn rms(channels: &[Vec<f32>]) -> f32 {
    let n = channels.iter().map(Vec::len).sum::<usize>() as f32;
    (channels.iter().flatten().map(|v| v * v).sum::<f32>() / n).sqrt()
}

struct Setup {
    dir: tempfile::TempDir,
    input: PathBuf,
    tiny: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("song.wav");
    write_wav(&input, 44100, &test_song(44100, 1.2));
    Setup {
        dir,
        input,
        tiny: tiny_weights().display().to_string(),
    }
}

#[test]
fn flac_stems_with_mixes_and_a_zip_add_up_to_the_float_stems() {
    let s = setup();
    let cache = s.dir.path().join("cache");
    let (base, flac) = (s.dir.path().join("base"), s.dir.path().join("flac"));
    let input = s.input.to_str().unwrap();
    run_ok(
        &[
            "separate",
            "--float32",
            "--clip-mode",
            "clamp",
            "--weights",
            &s.tiny,
            "-o",
            base.to_str().unwrap(),
            input,
        ],
        &cache,
    );
    let stdout = run_ok(
        &[
            "separate",
            "--format",
            "flac",
            "--int24",
            "--clip-mode",
            "clamp",
            "--mix",
            "drums+bass",
            "--mix",
            "All - Vocals",
            "--zip",
            "--weights",
            &s.tiny,
            "-o",
            flac.to_str().unwrap(),
            input,
        ],
        &cache,
    );
    let folder = flac.join("song");
    assert_eq!(
        names_in(&folder),
        [
            "bass.flac",
            "drums.flac",
            "mix-all-vocals.flac",
            "mix-drums+bass.flac",
            "other.flac",
            "vocals.flac"
        ]
    );
    assert!(
        stdout.contains(&format!(
            "mix: {}",
            folder.join("mix-drums+bass.flac").display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("zip: {}", flac.join("song.zip").display())),
        "{stdout}"
    );

    let stem = |name: &str| decode(&base.join(format!("song/{name}.wav")));
    let (drums, bass, other, vocals) = (stem("drums"), stem("bass"), stem("other"), stem("vocals"));
    // 24-bit FLAC keeps the float stems to within one 24-bit step.
    let tolerance = 2.0 / 8_388_608.0;
    for (name, expected) in [("drums", &drums), ("vocals", &vocals)] {
        let got = decode(&folder.join(format!("{name}.flac")));
        assert_eq!(got[0].len(), expected[0].len(), "{name}: same length");
        let err = got
            .iter()
            .flatten()
            .zip(expected.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err <= tolerance, "{name}: {err}");
    }
    let sum = |parts: &[&Vec<Vec<f32>>]| -> Vec<Vec<f32>> {
        (0..2)
            .map(|c| {
                (0..parts[0][c].len())
                    .map(|i| {
                        parts
                            .iter()
                            .map(|p| p[c][i])
                            .sum::<f32>()
                            .clamp(-0.99, 0.99)
                    })
                    .collect()
            })
            .collect()
    };
    for (file, expected) in [
        ("mix-drums+bass.flac", sum(&[&drums, &bass])),
        ("mix-all-vocals.flac", sum(&[&drums, &bass, &other])),
    ] {
        let got = decode(&folder.join(file));
        let err = got
            .iter()
            .flatten()
            .zip(expected.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        // Stems in the base run are each stored rounded; the mix is summed before rounding.
        assert!(err < 1e-5, "{file}: {err}");
        assert!(peak(&got) > 1e-3, "{file} carries signal");
    }

    let zip_file = std::fs::File::open(flac.join("song.zip")).unwrap();
    let mut archive = zip::ZipArchive::new(zip_file).unwrap();
    let mut entries: Vec<String> = (0..archive.len())
        .map(|i| archive.by_index(i).unwrap().name().unwrap().to_string())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        [
            "song/bass.flac",
            "song/drums.flac",
            "song/mix-all-vocals.flac",
            "song/mix-drums+bass.flac",
            "song/other.flac",
            "song/vocals.flac"
        ]
    );
    let mut zipped = Vec::new();
    std::io::Read::read_to_end(
        &mut archive.by_name("song/vocals.flac").unwrap(),
        &mut zipped,
    )
    .unwrap();
    assert_eq!(
        zipped,
        std::fs::read(folder.join("vocals.flac")).unwrap(),
        "byte for byte"
    );
}

#[test]
fn normalised_mp3_stems_peak_at_the_asked_level_and_a_cached_run_still_makes_mixes() {
    let s = setup();
    let cache = s.dir.path().join("cache");
    let out = s.dir.path().join("mp3");
    let input = s.input.to_str().unwrap();
    // Exactly at the level in a lossless format.
    let wav = s.dir.path().join("wav");
    run_ok(
        &[
            "separate",
            "--float32",
            "--normalize",
            "-3",
            "--weights",
            &s.tiny,
            "-o",
            wav.to_str().unwrap(),
            input,
        ],
        &cache,
    );
    for name in ["bass", "drums", "other", "vocals"] {
        let db = 20.0 * peak(&decode(&wav.join(format!("song/{name}.wav")))).log10();
        assert!((db + 3.0).abs() < 0.001, "{name} peaks at {db:.4} dBFS");
    }
    run_ok(
        &[
            "separate",
            "--format",
            "mp3",
            "--mp3-bitrate",
            "192",
            "--normalize",
            "-3",
            "--weights",
            &s.tiny,
            "-o",
            out.to_str().unwrap(),
            input,
        ],
        &cache,
    );
    let folder = out.join("song");
    assert_eq!(
        names_in(&folder),
        ["bass.mp3", "drums.mp3", "other.mp3", "vocals.mp3"]
    );
    let source_frames = read_wav(&s.input).1[0].len();
    for name in ["bass", "drums", "other", "vocals"] {
        let got = decode(&folder.join(format!("{name}.mp3")));
        assert_eq!(
            got[0].len(),
            source_frames,
            "{name}: gapless, the input's length"
        );
        // MP3 cuts the top octave and moves peaks, so compare loudness with the lossless
        // normalised stem (the fixture model's stems are noisy, so MP3 takes more off them than off music).
        let lossless = decode(&wav.join(format!("song/{name}.wav")));
        let db = 20.0 * (rms(&got) / rms(&lossless)).log10();
        assert!(db.abs() < 1.5, "{name}: {db:.2} dB from the normalised WAV");
    }
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=bit_rate",
            "-of",
            "csv=p=0",
        ])
        .arg(folder.join("vocals.mp3"))
        .output()
        .expect("ffprobe (scripts/setup-system.sh installs it)");
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "192000");

    // The same request again comes from the cache; a mix asked for now is made from the
    // stored stems.
    let again = run_ok(
        &[
            "separate",
            "--format",
            "mp3",
            "--mp3-bitrate",
            "192",
            "--normalize",
            "-3",
            "--mix",
            "all-vocals",
            "--weights",
            &s.tiny,
            "-o",
            out.to_str().unwrap(),
            input,
        ],
        &cache,
    );
    assert!(again.contains("reused"), "{again}");
    let mix = decode(&folder.join("mix-all-vocals.mp3"));
    assert_eq!(mix[0].len(), source_frames);
    let vocals = decode(&folder.join("vocals.mp3"));
    assert!(
        rms(&mix) > 1e-3 && rms(&mix) != rms(&vocals),
        "the mix is its own file"
    );
}

#[test]
fn impossible_output_options_are_refused_before_any_work() {
    let s = setup();
    let cache = s.dir.path().join("cache");
    let out = s.dir.path().join("out");
    let input = s.input.to_str().unwrap();
    let o = out.to_str().unwrap();
    for (args, code, message) in [
        (
            vec!["--format", "flac", "--float32"],
            2,
            "FLAC stores 16- or 24-bit samples",
        ),
        (
            vec!["--format", "mp3", "--mp3-bitrate", "100"],
            2,
            "MP3 bitrate 100 kbps is not offered",
        ),
        (
            vec!["--mp3-bitrate", "192"],
            2,
            "--mp3-bitrate needs --format mp3",
        ),
        (
            vec!["--normalize", "6"],
            2,
            "--normalize takes a peak level from -24 to 0 dBFS",
        ),
        (
            vec!["--mix", "drums-vocals"],
            2,
            "taking a stem out needs \"all\" first",
        ),
        (
            vec!["--mix", "drums+guitar"],
            1,
            "this job has no \"guitar\" stem (it has drums, bass, other, vocals)",
        ),
        (
            vec!["--two-stems", "vocals", "--mix", "drums+bass"],
            1,
            "this job has no \"drums\" stem (it has vocals, no_vocals)",
        ),
    ] {
        let mut full = vec!["separate"];
        full.extend(&args);
        full.extend(["--weights", &s.tiny, "-o", o, input]);
        let result = stemdeck(&full, &cache);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{args:?}: one line: {stderr}"
        );
        assert!(!out.exists(), "{args:?} wrote nothing");
    }
}
