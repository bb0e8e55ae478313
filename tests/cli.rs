//! The `stemdeck` binary end to end with the small fixture model: output layout, formats,
//! two stems, the model store, and a clear one-line error for every kind of bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn stemdeck(args: &[&str], extra: &[&Path]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stemdeck"));
    cmd.args(args).args(extra);
    cmd.env(
        "STEMDECK_MODEL_DIR",
        std::env::temp_dir().join("stemdeck-test-no-models"),
    );
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn song(dir: &Path, name: &str, seconds: f32) -> PathBuf {
    let path = dir.join(name);
    write_wav(&path, 44100, &test_song(44100, seconds));
    path
}

#[test]
fn writes_each_stem_as_a_wav_named_after_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = song(dir.path(), "My Song.wav", 1.3);
    let out = dir.path().join("stems");
    let tiny = tiny_weights();
    let result = stemdeck(
        &["separate", "--int24", "-j", "1", "--weights"],
        &[&tiny, Path::new("-o"), &out, &input],
    );
    assert!(result.status.success(), "{}", stderr(&result));
    let folder = out.join("My Song");
    let mut names: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]);
    let spec = hound::WavReader::open(folder.join("vocals.wav"))
        .unwrap()
        .spec();
    assert_eq!(
        (spec.bits_per_sample, spec.channels, spec.sample_rate),
        (24, 2, 44100)
    );
    let (_, vocals) = read_wav(&folder.join("vocals.wav"));
    let (_, mix) = read_wav(&input);
    assert_eq!(
        vocals[0].len(),
        mix[0].len(),
        "stems have the length of the input"
    );
    assert!(
        vocals[0].iter().any(|v| v.abs() > 1e-4),
        "stems carry signal"
    );
}

#[test]
fn two_stems_writes_the_source_and_the_sum_of_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let input = song(dir.path(), "song.wav", 1.0);
    let (all, two) = (dir.path().join("all"), dir.path().join("two"));
    let tiny = tiny_weights();
    for (out, extra) in [(&all, vec![]), (&two, vec!["--two-stems", "vocals"])] {
        let mut args = vec!["separate", "--float32", "--clip-mode", "clamp"];
        args.extend(extra);
        args.push("--weights");
        let result = stemdeck(&args, &[&tiny, Path::new("-o"), out, &input]);
        assert!(result.status.success(), "{}", stderr(&result));
    }
    let mut names: Vec<_> = std::fs::read_dir(two.join("song"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["no_vocals.wav", "vocals.wav"]);
    let (_, no_vocals) = read_wav(&two.join("song/no_vocals.wav"));
    let others: Vec<_> = ["drums", "bass", "other"]
        .iter()
        .map(|s| read_wav(&all.join(format!("song/{s}.wav"))).1)
        .collect();
    for c in 0..2 {
        for i in (0..no_vocals[c].len()).step_by(97) {
            let sum: f64 = others
                .iter()
                .map(|o| o[c][i])
                .sum::<f64>()
                .clamp(-0.99, 0.99);
            assert!(
                (no_vocals[c][i] - sum).abs() < 1e-5,
                "frame {i}: {} vs {sum}",
                no_vocals[c][i]
            );
        }
    }
}

#[test]
fn named_models_come_from_the_model_store_and_th_checkpoints_load() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("models");
    std::fs::create_dir_all(&store).unwrap();
    // The fixture .th stands in for the official checkpoint under its official name.
    std::fs::copy(tiny_th_weights(), store.join("955717e8-8726e21a.th")).unwrap();
    let input = song(dir.path(), "song.wav", 0.7);
    let out = dir.path().join("out");
    let result = Command::new(env!("CARGO_BIN_EXE_stemdeck"))
        .args(["separate", "-m", "htdemucs", "-o"])
        .arg(&out)
        .arg(&input)
        .env("STEMDECK_MODEL_DIR", &store)
        .output()
        .unwrap();
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(out.join("song/drums.wav").is_file());
}

#[test]
fn bad_input_exits_non_zero_with_one_line_naming_the_file_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = song(dir.path(), "good.wav", 0.5);
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.wav");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let empty = dir.path().join("empty.flac");
    std::fs::write(&empty, b"").unwrap();
    let not_audio = dir.path().join("cover.mp3");
    std::fs::write(&not_audio, "<html>not a song</html>\n".repeat(40)).unwrap();
    let bad_weights = dir.path().join("weights.safetensors");
    std::fs::write(&bad_weights, b"definitely not a checkpoint").unwrap();
    let missing = dir.path().join("missing.mp3");
    let tiny = tiny_weights();
    let out = dir.path().join("out");

    // (arguments, paths after them, what the message names, what it says, exit code)
    type Case<'a> = (Vec<&'a str>, Vec<&'a Path>, &'a Path, &'a str, u8);
    let cases: Vec<Case> = vec![
        (
            vec!["separate", "--weights"],
            vec![&tiny, Path::new("-o"), &out, &missing],
            &missing,
            "file not found",
            1,
        ),
        (
            vec!["separate", "--weights"],
            vec![&tiny, Path::new("-o"), &out, &not_audio],
            &not_audio,
            "not an audio file",
            1,
        ),
        (
            vec!["separate", "--weights"],
            vec![&tiny, Path::new("-o"), &out, &truncated],
            &truncated,
            "truncated or damaged",
            1,
        ),
        (
            vec!["separate", "--weights"],
            vec![&tiny, Path::new("-o"), &out, &empty],
            &empty,
            "empty",
            1,
        ),
        (
            vec!["separate", "--weights"],
            vec![&bad_weights, Path::new("-o"), &out, &good],
            &bad_weights,
            "not a safetensors or .th checkpoint",
            3,
        ),
        (
            vec!["separate", "-m", "spleeter", "-o"],
            vec![&out, &good],
            Path::new("spleeter"),
            "unknown model",
            3,
        ),
        (
            vec!["separate", "--two-stems", "kazoo", "--weights"],
            vec![&tiny, Path::new("-o"), &out, &good],
            Path::new("kazoo"),
            "does not have a source named",
            1,
        ),
    ];
    for (args, extra, names, words, code) in cases {
        let result = stemdeck(&args, &extra);
        let message = stderr(&result);
        println!("{message}");
        assert_eq!(result.status.code(), Some(code as i32), "{message}");
        assert_eq!(
            message.trim_end().lines().count(),
            1,
            "one line: {message:?}"
        );
        assert!(
            message.contains(&*names.to_string_lossy()),
            "names {names:?}: {message}"
        );
        assert!(message.contains(words), "says {words:?}: {message}");
        assert!(!out.exists(), "no output left behind for {names:?}");
    }
}
