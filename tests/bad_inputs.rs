//! The table of bad and odd inputs (`tests/fixtures/bad-inputs.json`), each made for real
//! (sox, ffmpeg, shell), run through `stemdeck separate` with the small fixture model and
//! through the app's intake. Each one separates into finite stems of the right length, or
//! fails with one line naming the file and the problem, leaving no file under a final name.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use common::*;

const SONG_FRAMES: usize = 132_300;
const STEMS: [&str; 4] = ["drums", "bass", "other", "vocals"];

fn table() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/bad-inputs.json");
    let table: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    table["cases"].as_array().unwrap().clone()
}

/// The same bytes on every run: a xorshift stream.
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// One second of a float WAV whose samples include NaN, both infinities and 1e30.
fn float_wav_with_nan_inf(path: &Path) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44100,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..44100 {
        let v = match i % 997 {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => f32::NEG_INFINITY,
            3 => 1.0e30,
            _ => (i as f32 * 0.05).sin() * 0.5,
        };
        w.write_sample(v).unwrap();
        w.write_sample(-v).unwrap();
    }
    w.finalize().unwrap();
}

/// Runs a recipe of the table that makes `out`.
fn make(recipe: &str, out: &Path, dir: &Path, song: &Path) {
    if let Some(n) = recipe.strip_prefix("random ") {
        std::fs::write(out, random_bytes(n.parse().unwrap(), 7)).unwrap();
        return;
    }
    if recipe == "float-wav-with-nan-inf" {
        float_wav_with_nan_inf(out);
        return;
    }
    let made = Command::new("sh")
        .args(["-c", recipe])
        .env("OUT", out)
        .env("W", out)
        .env("DIR", dir)
        .env("SONG", song)
        .env("TINY", tiny_weights())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "recipe failed: {recipe}\n{}",
        String::from_utf8_lossy(&made.stderr)
    );
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// `stemdeck separate` for `input`, with the output folder as the case asks. A read-only
/// or full output folder is made in a private mount namespace (a bind mount made read-only,
/// a tiny tmpfs), which works for root too; what was left in it is listed before it goes.
fn separate(
    case: &Value,
    input: &Path,
    weights: &Path,
    out: &Path,
    dir: &Path,
) -> (Output, Vec<String>) {
    let mut args: Vec<String> = vec!["separate".into()];
    if case["weights"] != "none" {
        args.extend(["--weights".into(), weights.display().to_string()]);
    }
    args.extend(
        case["args"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a.as_str().unwrap().to_string()),
    );
    args.extend([
        "-o".into(),
        out.display().to_string(),
        input.display().to_string(),
    ]);
    let cache = dir.join("cache");
    let mount = match case["out"].as_str() {
        None => None,
        Some("file") => {
            std::fs::write(out, b"not a folder").unwrap();
            None
        }
        Some("readonly") => {
            std::fs::create_dir_all(out).unwrap();
            Some(r#"mount --bind "$O" "$O" && mount -o remount,ro,bind "$O""#)
        }
        Some("full") => {
            std::fs::create_dir_all(out).unwrap();
            Some(r#"mount -t tmpfs -o size=1m tmpfs "$O""#)
        }
        Some(other) => panic!("unknown out kind {other}"),
    };
    let mut cmd = match mount {
        None => Command::new(env!("CARGO_BIN_EXE_stemdeck")),
        Some(mount) => {
            let mut cmd = Command::new("unshare");
            cmd.args(["--map-root-user", "--mount", "sh", "-c"])
                .arg(format!(
                    r#"{mount} || exit 99; "$@"; rc=$?; find "$O" -type f > "$LEFT"; exit $rc"#
                ))
                .arg("sh")
                .arg(env!("CARGO_BIN_EXE_stemdeck"))
                .env("O", out)
                .env("LEFT", dir.join("left"));
            cmd
        }
    };
    cmd.args(&args)
        .env("STEMDECK_MODEL_DIR", dir.join("no-models"))
        .env("STEMDECK_CACHE_DIR", &cache);
    let output = cmd.output().unwrap();
    assert_ne!(
        output.status.code(),
        Some(99),
        "could not set up the output folder"
    );
    let left = if mount.is_some() {
        std::fs::read_to_string(dir.join("left"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    } else if out.is_dir() {
        files_under(out)
    } else {
        Vec::new()
    };
    (output, left)
}

fn words(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect()
}

/// Runs every case and returns one line per problem found.
fn run_case(index: usize, case: &Value, root: &Path, song: &Path) -> Vec<String> {
    let name = case["name"].as_str().unwrap();
    let file = case["file"].as_str().unwrap();
    let dir = root.join(format!("case-{index}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("random"), random_bytes(65536, 11)).unwrap();
    let input = dir.join(file);
    match case["make"].as_str() {
        Some(recipe) => make(recipe, &input, &dir, song),
        None if file == "song.wav" => {
            std::fs::copy(song, &input).unwrap();
        }
        None => {}
    }
    let weights = match case["weights"].as_str() {
        Some(recipe) if recipe != "none" => {
            let w = dir.join("weights.safetensors");
            make(recipe, &w, &dir, song);
            w
        }
        _ => tiny_weights(),
    };
    let out = dir.join("out");
    let mut problems = Vec::new();
    let mut fail = |p: String| problems.push(format!("{name}: {p}"));

    let (output, left) = separate(case, &input, &weights, &out, &dir);
    let stderr = String::from_utf8_lossy(&output.stderr)
        .trim_end()
        .to_string();
    let code = output.status.code();
    match &case["expect"] {
        Value::String(s) if s == "separates" => {
            if code != Some(0) {
                fail(format!("should separate, exited {code:?}: {stderr}"));
            } else {
                let expected = case["frames"].as_u64().map_or_else(
                    || {
                        stemdeck_audio::load_for_model(&input, 44100)
                            .unwrap()
                            .frames()
                    },
                    |f| f as usize,
                );
                let folders: Vec<_> = std::fs::read_dir(&out)
                    .unwrap()
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .collect();
                if folders.len() != 1 {
                    fail(format!(
                        "one folder of stems expected, found {}",
                        folders.len()
                    ));
                } else {
                    let folder = folders[0].path();
                    for stem in STEMS {
                        let path = folder.join(format!("{stem}.wav"));
                        if !path.is_file() {
                            fail(format!("{stem}.wav missing"));
                            continue;
                        }
                        let (rate, channels) = read_wav(&path);
                        let frames = channels[0].len();
                        let finite = channels.iter().flatten().all(|v| v.is_finite());
                        if rate != 44100 || frames != expected || !finite {
                            fail(format!(
                                "{stem}.wav: {rate} Hz, {frames} frames (expected {expected}), finite {finite}"
                            ));
                        }
                    }
                }
                let partial: Vec<_> = left.iter().filter(|f| f.contains(".partial")).collect();
                if !partial.is_empty() {
                    fail(format!("left temporary files {partial:?}"));
                }
            }
        }
        expect => {
            let exit = expect["exit"].as_i64().unwrap() as i32;
            if code != Some(exit) {
                fail(format!("exit {code:?}, expected {exit}: {stderr}"));
            }
            if stderr.lines().count() != 1 {
                fail(format!("one line expected: {stderr:?}"));
            }
            let says = words(&expect["fails"]);
            if !says.iter().any(|w| stderr.contains(w)) {
                fail(format!("says none of {says:?}: {stderr}"));
            }
            let named = match case["names"].as_str().unwrap_or("file") {
                "file" => file.to_string(),
                "weights" => weights.display().to_string(),
                "out" => out.display().to_string(),
                other => other.to_string(),
            };
            if !stderr.contains(&named) {
                fail(format!("does not name {named:?}: {stderr}"));
            }
            if !left.is_empty() {
                fail(format!("left files behind: {left:?}"));
            }
        }
    }

    // The app's drop zone: accepted into the queue, or refused beside its name.
    let (accepted, refused) =
        stemdeck_engine::input::intake::expand_paths(std::slice::from_ref(&input));
    match &case["intake"] {
        Value::String(s) if s == "accepted" => {
            if accepted != [input.clone()] || !refused.is_empty() {
                fail(format!("intake should accept it: {refused:?}"));
            }
        }
        intake => {
            let says = words(&intake["refused"]);
            match refused.as_slice() {
                [r] if accepted.is_empty()
                    && r.name == file
                    && says.iter().any(|w| r.reason.contains(w)) =>
                {
                    println!("  intake refuses {:?}: {}", r.name, r.reason);
                }
                _ => fail(format!(
                    "intake should refuse it saying one of {says:?}: accepted {accepted:?}, refused {refused:?}"
                )),
            }
        }
    }
    println!("{name}: exit {code:?} {stderr}");
    problems
}

fn run_table(slow: bool) {
    let root = tempfile::tempdir().unwrap();
    let song = root.path().join("song.wav");
    write_wav(&song, 44100, &test_song(44100, 3.0));
    assert_eq!(read_wav(&song).1[0].len(), SONG_FRAMES);
    let cases: Vec<Value> = table()
        .into_iter()
        .filter(|c| c["slow"].as_bool().unwrap_or(false) == slow)
        .collect();
    let problems: Vec<String> = cases
        .iter()
        .enumerate()
        .flat_map(|(i, case)| run_case(i, case, root.path(), &song))
        .collect();
    println!("{} cases, {} problems", cases.len(), problems.len());
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn every_bad_or_odd_input_separates_or_fails_with_one_clear_line() {
    assert!(table().len() >= 30, "the table keeps 30 cases or more");
    run_table(false);
}

/// Hours of input: slow in a debug build, so run on its own (`--ignored`, or in release).
#[test]
#[cfg_attr(debug_assertions, ignore = "hours of audio; run with --release")]
fn hours_of_silence_separate_in_bounded_time() {
    run_table(true);
}
