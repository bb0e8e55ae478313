//! The `stemdeck` binary end to end with the small fixture model: output layout, formats,
//! two stems, the model store, and a clear one-line error for every kind of bad input.

mod checkpoint_files;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn stemdeck(args: &[&str], extra: &[&Path]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stemdeck"));
    cmd.args(args).args(extra);
    cmd.env(
        "STEMDECK_MODEL_DIR",
        std::env::temp_dir().join("stemdeck-test-no-models"),
    );
    cmd.env("STEMDECK_CACHE_DIR", cache.path());
    cmd.output().unwrap()
}

/// `stemdeck` with a fake yt-dlp (or none) as the only one on `PATH`, the built-in
/// downloader pointed at a proxy that refuses connections (as when offline), and `cache`
/// as its cache.
fn stemdeck_offline(args: &[&str], extra: &[&Path], tools: &Path, cache: &Path) -> Output {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stemdeck"));
    cmd.args(args).args(extra);
    cmd.env(
        "STEMDECK_MODEL_DIR",
        std::env::temp_dir().join("stemdeck-test-no-models"),
    );
    cmd.env("STEMDECK_CACHE_DIR", cache);
    // The fake goes first; the system folders give it sed, awk and cp.
    let mut path = std::ffi::OsString::from(tools);
    path.push(":/usr/bin:/bin");
    cmd.env("PATH", path);
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env(var, &proxy);
    }
    cmd.env_remove("NO_PROXY").env_remove("no_proxy");
    cmd.output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fake yt-dlp in `tools` that "downloads" `audio` as a video titled `title`.
#[cfg(unix)]
fn fake_ytdlp(tools: &Path, audio: &Path, title: &str) {
    std::fs::create_dir_all(tools).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fake-yt-dlp.sh");
    std::fs::copy(script, tools.join("yt-dlp")).unwrap();
    std::fs::write(
        tools.join("fake-yt-dlp.conf"),
        format!("AUDIO='{}'\nTITLE='{title}'\n", audio.display()),
    )
    .unwrap();
}

/// The song as AAC in M4A, the format YouTube serves.
fn m4a(dir: &Path) -> PathBuf {
    let wav = song(dir, "source.wav", 1.2);
    let m4a = dir.join("source.m4a");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&wav)
        .args(["-c:a", "aac", "-b:a", "128k"])
        .arg(&m4a)
        .status()
        .expect("ffmpeg is needed for this test (apt-get install ffmpeg)");
    assert!(status.success());
    m4a
}

#[cfg(unix)]
#[test]
fn links_and_ids_download_through_yt_dlp_and_a_second_run_reuses_the_stems() {
    let dir = tempfile::tempdir().unwrap();
    let tools = dir.path().join("tools");
    fake_ytdlp(&tools, &m4a(dir.path()), "Artist - Song (Official Video)");
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    let tiny = tiny_weights();
    let args = ["separate", "-j", "1", "--weights"];
    let link = Path::new("https://www.youtube.com/watch?v=dQw4w9WgXcQ&list=PL123&t=3s");

    let first = stemdeck_offline(&args, &[&tiny, Path::new("-o"), &out, link], &tools, &cache);
    assert!(first.status.success(), "{}", stderr(&first));
    let folder = out.join("Artist - Song (Official Video)");
    let printed = stdout(&first);
    assert!(
        printed.contains("\"Artist - Song (Official Video)\": 4 stems in")
            && printed.contains(&*folder.to_string_lossy()),
        "{printed}"
    );
    for stem in ["drums", "bass", "other", "vocals"] {
        let (rate, channels) = read_wav(&folder.join(format!("{stem}.wav")));
        assert_eq!(rate, 44100);
        // AAC adds no samples: the stems are as long as the 1.2 s song.
        assert!(
            (channels[0].len() as i64 - 52920).abs() < 2,
            "{}",
            channels[0].len()
        );
    }
    let runs = || {
        std::fs::read_to_string(tools.join("runs"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(runs(), 1);
    assert!(cache.join("downloads/dQw4w9WgXcQ.m4a").is_file());

    // The bare ID is the same video: the stems come back without downloading or
    // separating, and into another folder they are copied.
    let elsewhere = dir.path().join("elsewhere");
    let second = stemdeck_offline(
        &args,
        &[&tiny, Path::new("-o"), &elsewhere, Path::new("dQw4w9WgXcQ")],
        &tools,
        &cache,
    );
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(stdout(&second).contains("reused"), "{}", stdout(&second));
    assert_eq!(runs(), 1, "no second download");
    let copied = elsewhere.join("Artist - Song (Official Video)/vocals.wav");
    assert_eq!(
        std::fs::read(&copied).unwrap(),
        std::fs::read(folder.join("vocals.wav")).unwrap()
    );

    // --no-cache separates again, from the downloaded audio.
    let third = stemdeck_offline(
        &["separate", "-j", "1", "--no-cache", "--weights"],
        &[
            &tiny,
            Path::new("-o"),
            &out,
            Path::new("https://youtu.be/dQw4w9WgXcQ"),
        ],
        &tools,
        &cache,
    );
    assert!(third.status.success(), "{}", stderr(&third));
    assert!(!stdout(&third).contains("reused"));
    assert_eq!(runs(), 1);
}

#[test]
fn links_that_cannot_work_are_refused_each_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let tools = dir.path().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let no_ytdlp = tools.join("yt-dlp");
    let out = dir.path().join("out");
    let tiny = tiny_weights();
    let started = std::time::Instant::now();
    let result = stemdeck_offline(
        &["separate", "--yt-dlp"],
        &[
            &no_ytdlp,
            Path::new("--weights"),
            &tiny,
            Path::new("-o"),
            &out,
            Path::new("https://vimeo.com/76979871"),
            Path::new("https://www.youtube.com/playlist?list=PLx0sYbCqOb8TBPRdmBHs5Iftvv9TPboYG"),
            Path::new("https://youtu.be/tooshort"),
            Path::new("https://youtu.be/dQw4w9WgXcQ"),
        ],
        &tools,
        &dir.path().join("cache"),
    );
    let message = stderr(&result);
    println!("{message}");
    assert_eq!(result.status.code(), Some(1), "{message}");
    let lines: Vec<&str> = message.trim_end().lines().collect();
    assert_eq!(lines.len(), 4, "one line per input: {message}");
    assert!(lines[0].contains("vimeo.com") && lines[0].contains("not supported"));
    assert!(lines[1].contains("playlist"));
    assert!(lines[2].contains("\"tooshort\" is not a YouTube video ID"));
    assert!(
        lines[3].contains("https://youtu.be/dQw4w9WgXcQ: cannot reach YouTube")
            && lines[3].contains("built-in downloader: cannot reach YouTube")
            && lines[3].contains("yt-dlp: not found at"),
        "{}",
        lines[3]
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert!(!out.exists(), "nothing written");
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

/// `stemdeck models ...` with `models` as the model folder and no other (the user's cache
/// folder is an empty temporary one).
fn stemdeck_models(args: &[&str], models: &Path) -> Output {
    let cache = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_stemdeck"))
        .arg("models")
        .args(args)
        .env("STEMDECK_MODEL_DIR", models)
        .env("XDG_CACHE_HOME", cache.path())
        .env("STEMDECK_CACHE_DIR", cache.path())
        .output()
        .unwrap()
}

/// The `models list` row of `name`.
fn model_row(listing: &Output, name: &str) -> String {
    stdout(listing)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} row in {}", stdout(listing)))
        .to_string()
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn models_list_shows_each_model_with_its_stems_size_state_and_the_bags_cost() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let listing = stemdeck_models(&["list"], &models);
    assert!(listing.status.success(), "{}", stderr(&listing));
    println!("{}", stdout(&listing));
    let htdemucs = model_row(&listing, "htdemucs");
    assert!(
        htdemucs.contains("4 (drums, bass, other, vocals)")
            && htdemucs.contains("84.14 MB")
            && htdemucs.contains("not downloaded")
            && !htdemucs.contains("the time"),
        "{htdemucs}"
    );
    let six = model_row(&listing, "htdemucs_6s");
    assert!(
        six.contains("guitar, piano") && six.contains("unknown"),
        "{six}"
    );
    let bag = model_row(&listing, "htdemucs_ft");
    assert!(
        bag.contains("not downloaded") && bag.trim_end().ends_with("about 4× the time"),
        "{bag}"
    );
    assert!(
        stdout(&listing).contains(&format!("Models are kept in {}", models.display())),
        "{}",
        stdout(&listing)
    );

    std::fs::create_dir_all(&models).unwrap();
    std::fs::copy(tiny_th_weights(), models.join("955717e8-8726e21a.th")).unwrap();
    std::fs::copy(tiny_th_weights(), models.join("d12395a8-e57c48e6.th")).unwrap();
    let listing = stemdeck_models(&["list", "--files"], &models);
    let htdemucs = model_row(&listing, "htdemucs");
    assert!(
        htdemucs.contains(" ready") && !htdemucs.contains("imported"),
        "{htdemucs}"
    );
    assert!(
        model_row(&listing, "htdemucs_ft").contains("partly here (1 of 4 files)"),
        "{}",
        stdout(&listing)
    );
    let file_line = format!(
        "d12395a8-e57c48e6.th: {}",
        models.join("d12395a8-e57c48e6.th").display()
    );
    assert!(
        stdout(&listing).contains(&file_line),
        "{}",
        stdout(&listing)
    );
    assert!(
        stdout(&listing).contains("f7e0c4bc-ba3fe64a.th: not here"),
        "{}",
        stdout(&listing)
    );

    // Already here: nothing to fetch, so no network is needed.
    let again = stemdeck_models(&["download", "htdemucs"], &models);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again).trim(), "htdemucs is already here");
}

#[test]
fn models_import_refuses_a_bad_file_with_its_reason_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let garbage = dir.path().join("notes.txt");
    std::fs::write(&garbage, "la la la").unwrap();
    let tiny = tiny_weights();
    let cases: [(Vec<&Path>, &str); 4] = [
        (vec![&tiny], "channels is 4 (htdemucs has 48)"),
        (vec![&garbage], "notes.txt is not a model Stemdeck can use"),
        (
            vec![&tiny, Path::new("--as"), Path::new("spleeter")],
            "unknown model \"spleeter\"",
        ),
        (
            vec![Path::new("missing.safetensors")],
            "missing.safetensors: file not found",
        ),
    ];
    for (args, words) in cases {
        let mut all = vec!["import"];
        all.extend(args.iter().map(|a| a.to_str().unwrap()));
        let result = stemdeck_models(&all, &models);
        let message = stderr(&result);
        println!("{message}");
        assert_eq!(result.status.code(), Some(1), "{message}");
        assert_eq!(
            message.trim_end().lines().count(),
            1,
            "one line: {message:?}"
        );
        assert!(
            message.starts_with("error: ") && message.contains(words),
            "{message}"
        );
        assert!(files_in(&models).is_empty(), "{:?}", files_in(&models));
    }
}

#[test]
fn an_imported_model_is_listed_as_ready_and_then_removed() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let checkpoint = dir.path().join("my htdemucs.safetensors");
    std::fs::write(
        &checkpoint,
        checkpoint_files::htdemucs_checkpoint(&checkpoint_files::FOUR_STEMS),
    )
    .unwrap();

    let import = stemdeck_models(&["import", checkpoint.to_str().unwrap()], &models);
    assert!(import.status.success(), "{}", stderr(&import));
    assert!(
        stdout(&import)
            .contains("imported as htdemucs (its architecture and every tensor checked)"),
        "{}",
        stdout(&import)
    );
    assert_eq!(files_in(&models), ["955717e8.safetensors"]);
    let listing = stemdeck_models(&["list"], &models);
    let row = model_row(&listing, "htdemucs");
    assert!(
        row.contains("ready (imported)") && row.contains("84.14 MB"),
        "{row}"
    );

    let remove = stemdeck_models(&["remove", "htdemucs"], &models);
    assert!(remove.status.success(), "{}", stderr(&remove));
    assert!(
        stdout(&remove).starts_with("removed htdemucs"),
        "{}",
        stdout(&remove)
    );
    assert!(files_in(&models).is_empty());
    assert!(model_row(&stemdeck_models(&["list"], &models), "htdemucs").contains("not downloaded"));

    let again = stemdeck_models(&["remove", "htdemucs"], &models);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        stderr(&again).trim_end(),
        "error: htdemucs is not downloaded or imported, so there is nothing to remove"
    );
}

#[test]
fn two_runs_writing_into_the_same_folder_at_once_keep_every_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    let a = song(dir.path(), "Alpha.wav", 4.0);
    let b = song(dir.path(), "Beta.wav", 3.0);
    let out = dir.path().join("out");
    // The same two songs in opposite orders, so that both runs write the same files.
    let run = |first: &Path, second: &Path| {
        let cache = tempfile::tempdir().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_stemdeck"))
            .args(["separate", "--zip", "--no-cache", "--weights"])
            .arg(tiny_weights())
            .arg("-o")
            .arg(&out)
            .arg(first)
            .arg(second)
            .env("STEMDECK_MODEL_DIR", dir.path().join("no-models"))
            .env("STEMDECK_CACHE_DIR", cache.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        (child, cache)
    };
    let (one, _c1) = run(&a, &b);
    let (two, _c2) = run(&b, &a);
    for child in [one, two] {
        let result = child.wait_with_output().unwrap();
        assert!(result.status.success(), "{}", stderr(&result));
    }
    for (name, seconds) in [("Alpha", 4.0), ("Beta", 3.0)] {
        for stem in ["drums", "bass", "other", "vocals"] {
            let (rate, channels) = read_wav(&out.join(name).join(format!("{stem}.wav")));
            assert_eq!(rate, 44100);
            assert_eq!(
                channels[0].len(),
                (44100.0 * seconds) as usize,
                "{name}/{stem}"
            );
        }
        let zip = std::fs::File::open(out.join(format!("{name}.zip"))).unwrap();
        assert_eq!(zip::ZipArchive::new(zip).unwrap().len(), 4);
    }
    let mut hidden = Vec::new();
    for name in files_in(&out) {
        hidden.extend(
            files_in(&out.join(&name))
                .into_iter()
                .map(|f| format!("{name}/{f}")),
        );
        hidden.push(name);
    }
    hidden.retain(|f| f.split('/').any(|part| part.starts_with('.')));
    assert!(hidden.is_empty(), "working files left: {hidden:?}");
}

/// Best lag of `b` against `a` within ±`range` frames.
fn best_lag(a: &[f64], b: &[f64], range: isize) -> isize {
    let n = a.len().min(b.len()) as isize;
    let corr = |lag: isize| -> f64 {
        (range..(n - range).min(range + 44100))
            .map(|i| a[i as usize] * b[(i + lag) as usize])
            .sum()
    };
    (-range..=range)
        .max_by(|&x, &y| corr(x).partial_cmp(&corr(y)).unwrap())
        .unwrap()
}

#[test]
fn every_input_format_gives_stems_of_the_exact_length_at_lag_zero() {
    let dir = tempfile::tempdir().unwrap();
    let wav = song(dir.path(), "source.wav", 2.5);
    let frames = (44100.0 * 2.5) as usize;
    let separate = |input: &Path, out: &Path| {
        let result = stemdeck(
            &["separate", "--no-cache", "--weights"],
            &[&tiny_weights(), Path::new("-o"), out, input],
        );
        assert!(
            result.status.success(),
            "{}: {}",
            input.display(),
            stderr(&result)
        );
    };
    let reference_out = dir.path().join("reference");
    separate(&wav, &reference_out);
    let reference = read_wav(&reference_out.join("source/drums.wav")).1;
    let video = [
        "-f",
        "lavfi",
        "-i",
        "color=c=black:s=32x32:r=5:d=3",
        "-map",
        "1:v",
        "-map",
        "0:a",
    ];
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("opus", vec!["-c:a", "libopus", "-b:a", "192k"]),
        ("webm", vec!["-c:a", "libopus", "-b:a", "160k"]),
        ("mkv", vec!["-c:a", "flac"]),
        (
            "mp4",
            [
                &video[..],
                &["-c:v", "libx264", "-c:a", "aac", "-b:a", "256k"],
            ]
            .concat(),
        ),
        (
            "mov",
            [
                &video[..],
                &["-c:v", "mpeg4", "-c:a", "aac", "-b:a", "256k"],
            ]
            .concat(),
        ),
        (
            "m4v",
            [&video[..], &["-c:v", "libx264", "-c:a", "aac", "-f", "mp4"]].concat(),
        ),
        ("aiff", vec!["-c:a", "pcm_s16be"]),
        ("caf", vec!["-c:a", "alac"]),
    ];
    for (ext, args) in cases {
        let input = dir.path().join(format!("source.{ext}"));
        let status = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
            .arg(&wav)
            .args(&args)
            .arg(&input)
            .status()
            .expect("ffmpeg is needed for this test");
        assert!(status.success(), "{ext}");
        let out = dir.path().join(format!("out-{ext}"));
        separate(&input, &out);
        for stem in ["drums", "bass", "other", "vocals"] {
            let (rate, channels) = read_wav(&out.join(format!("source/{stem}.wav")));
            assert_eq!(
                (rate, channels[0].len()),
                (44100, frames),
                "{ext} {stem}: exact length"
            );
        }
        let drums = read_wav(&out.join("source/drums.wav")).1;
        let lag = best_lag(&reference[0], &drums[0], 1500);
        println!("{ext}: {frames} frames, lag {lag}");
        assert_eq!(lag, 0, "{ext}: the stems are shifted by {lag} frames");
    }
}
