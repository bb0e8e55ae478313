//! The app's commands through Tauri's IPC on the mock runtime (no window, no display):
//! adding files and folders, links, the queue running a real separation with the small
//! fixture model, the mixer's state after play/mute/solo/seek, settings and models.

#[path = "../../tests/checkpoint_files.rs"]
mod checkpoint_files;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stemdeck_app::AppState;
use stemdeck_engine::ModelStore;
use tauri::test::{INVOKE_KEY, get_ipc_response, mock_builder, mock_context, noop_assets};
use tauri::webview::InvokeRequest;
use tauri::{Manager, WebviewWindow, WebviewWindowBuilder};

struct App {
    _app: tauri::App<tauri::test::MockRuntime>,
    window: WebviewWindow<tauri::test::MockRuntime>,
    dir: tempfile::TempDir,
}

impl App {
    fn start() -> Self {
        // No sound card in tests: the player must fall back to its silent clock.
        unsafe { std::env::set_var("STEMDECK_AUDIO_OUTPUT", "none") };
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir_all(&models).unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../crates/demucs/tests/fixtures/tiny_htdemucs_th.fixture"),
            models.join("955717e8-8726e21a.th"),
        )
        .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(
            data.join("settings.json"),
            json!({ "output_dir": dir.path().join("stems") }).to_string(),
        )
        .unwrap();

        let app = mock_builder()
            .invoke_handler(stemdeck_app::invoke_handler())
            .build(mock_context(noop_assets()))
            .unwrap();
        let store = ModelStore::with_dirs(vec![models]);
        let state = tauri::async_runtime::block_on(async { AppState::open(&data, store) });
        app.manage(state);
        let window = WebviewWindowBuilder::new(&app, "main", Default::default())
            .build()
            .unwrap();
        Self {
            _app: app,
            window,
            dir,
        }
    }

    fn invoke(&self, cmd: &str, args: Value) -> Result<Value, String> {
        let response = get_ipc_response(
            &self.window,
            InvokeRequest {
                cmd: cmd.into(),
                callback: tauri::ipc::CallbackFn(0),
                error: tauri::ipc::CallbackFn(1),
                url: "tauri://localhost".parse().unwrap(),
                body: tauri::ipc::InvokeBody::Json(args),
                headers: Default::default(),
                invoke_key: INVOKE_KEY.to_string(),
            },
        );
        match response {
            Ok(body) => Ok(body.deserialize::<Value>().unwrap()),
            Err(Value::String(message)) => Err(message),
            Err(other) => panic!("errors must reach the UI as sentences, got {other}"),
        }
    }

    fn ok(&self, cmd: &str, args: Value) -> Value {
        self.invoke(cmd, args)
            .unwrap_or_else(|e| panic!("{cmd} failed: {e}"))
    }

    fn job(&self, id: u64) -> Value {
        let jobs = self.ok("list_jobs", json!({}));
        jobs.as_array()
            .unwrap()
            .iter()
            .find(|j| j["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("job {id} not in {jobs}"))
    }

    fn wait_for(&self, what: &str, mut check: impl FnMut() -> bool) {
        let started = Instant::now();
        while !check() {
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_stage(&self, id: u64, stage: &str) -> Value {
        let mut job = Value::Null;
        self.wait_for(&format!("job {id} to be {stage}"), || {
            job = self.job(id);
            let now = job["stage"].as_str().unwrap().to_string();
            assert!(
                now == stage || !["done", "failed", "cancelled"].contains(&now.as_str()),
                "job {id} ended {now}, not {stage}: {}",
                job["error"]
            );
            now == stage
        });
        job
    }
}

fn song(path: &Path, seconds: f32) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..(44100.0 * seconds) as usize {
        let t = i as f32 / 44100.0;
        let v = ((t * 220.0 * std::f32::consts::TAU).sin() * 9000.0) as i16;
        w.write_sample(v).unwrap();
        w.write_sample(v / 2).unwrap();
    }
    w.finalize().unwrap();
    path.to_owned()
}

#[test]
fn a_dropped_folder_separates_and_its_stems_play_in_the_mixer() {
    let app = App::start();
    let input = app.dir.path().join("input");
    let single = song(&input.join("Single.wav"), 2.0);
    song(&input.join("Album/01 Intro.wav"), 1.5);
    std::fs::write(input.join("Album/cover.jpg"), b"jpeg").unwrap();
    std::fs::write(input.join("notes.txt"), b"text").unwrap();
    // Named like a song, dropped beside one: refused at the door, not when its turn comes.
    std::fs::write(input.join("notes.mp3"), "Bridge: slower.\n".repeat(30)).unwrap();

    let report = app.ok(
        "add_paths",
        json!({ "paths": [single, input.join("Album"), input.join("notes.txt"), input.join("notes.mp3")] }),
    );
    let added: Vec<&str> = report["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["title"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["Single", "01 Intro"], "{report}");
    assert_eq!(report["refused"].as_array().unwrap().len(), 2, "{report}");
    for (refused, name) in report["refused"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["notes.txt", "notes.mp3"])
    {
        assert_eq!(refused["name"], name);
        assert!(
            refused["reason"]
                .as_str()
                .unwrap()
                .starts_with("not an audio file Stemdeck can read"),
            "{report}"
        );
    }
    assert_eq!(
        app.ok("list_jobs", json!({})).as_array().unwrap().len(),
        2,
        "only the songs are queued"
    );

    let id = report["added"][0]["id"].as_u64().unwrap();
    let job = app.wait_stage(id, "done");
    let stems: Vec<&str> = job["stems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(stems, ["drums", "bass", "other", "vocals"]);
    for stem in job["stems"].as_array().unwrap() {
        assert!(
            Path::new(stem["path"].as_str().unwrap()).is_file(),
            "{stem}"
        );
    }
    app.wait_stage(report["added"][1]["id"].as_u64().unwrap(), "done");

    let view = app.ok("open_player", json!({ "jobId": id }));
    assert_eq!(view["title"], "Single");
    assert_eq!(view["stems"].as_array().unwrap().len(), 4);
    for stem in view["stems"].as_array().unwrap() {
        let peaks = stem["peaks"].as_array().unwrap();
        assert_eq!(peaks.len(), stemdeck_engine::player::PEAK_BUCKETS);
    }
    assert!((view["state"]["duration_secs"].as_f64().unwrap() - 2.0).abs() < 1e-3);
    assert_eq!(view["output"]["device"], Value::Null);
    assert!(
        view["output"]["problem"]
            .as_str()
            .unwrap()
            .contains("No sound output found"),
        "{view}"
    );

    let state = |app: &App| app.ok("player_state", json!({}));
    app.ok("play", json!({}));
    app.wait_for("playback to advance", || {
        let s = state(&app);
        s["playing"] == true && s["position_secs"].as_f64().unwrap() > 0.1
    });
    app.ok("set_mute", json!({ "stem": 1, "muted": true }));
    app.wait_for("bass to be muted", || {
        state(&app)["levels"] == json!([1.0, 0.0, 1.0, 1.0])
    });
    app.ok("set_solo", json!({ "stem": 3, "soloed": true }));
    app.wait_for("vocals to play alone", || {
        state(&app)["levels"] == json!([0.0, 0.0, 0.0, 1.0])
    });
    app.ok("set_gain", json!({ "stem": 3, "gain": 0.5 }));
    app.wait_for("the vocals gain", || {
        state(&app)["levels"] == json!([0.0, 0.0, 0.0, 0.5])
    });
    app.ok("pause", json!({}));
    app.ok("seek", json!({ "secs": 0.5 }));
    app.wait_for("the seek while paused", || {
        let s = state(&app);
        s["playing"] == false && (s["position_secs"].as_f64().unwrap() - 0.5).abs() < 1e-3
    });
    app.ok("set_loop", json!({ "start": 0.25, "end": 0.75 }));
    app.ok("play", json!({}));
    std::thread::sleep(Duration::from_millis(900));
    let looped = state(&app)["position_secs"].as_f64().unwrap();
    assert!(
        (0.25..=0.75).contains(&looped),
        "inside the loop after 0.9 s of playing, at {looped}"
    );

    let err = app
        .invoke("set_mute", json!({ "stem": 9, "muted": true }))
        .unwrap_err();
    assert!(err.contains("There is no stem number 9"), "{err}");
    let err = app
        .invoke("set_loop", json!({ "start": 1.0, "end": null }))
        .unwrap_err();
    assert!(err.contains("both a start and an end"), "{err}");

    // Removing the job closes its player; its files stay on disk.
    app.ok("remove_job", json!({ "id": id }));
    assert_eq!(state(&app), Value::Null);
    let err = app.invoke("play", json!({})).unwrap_err();
    assert!(err.starts_with("Nothing is loaded in the player"), "{err}");
    assert!(Path::new(job["stems"][0]["path"].as_str().unwrap()).is_file());

    // The user moves a finished song's stem away: the library says so, opening it says
    // which file is gone, and separating again brings it back.
    let intro = report["added"][1]["id"].as_u64().unwrap();
    let vocals = PathBuf::from(app.job(intro)["stems"][3]["path"].as_str().unwrap());
    std::fs::rename(&vocals, app.dir.path().join("elsewhere.wav")).unwrap();
    assert_eq!(app.job(intro)["missing_stems"], json!(["vocals"]));
    let err = app
        .invoke("open_player", json!({ "jobId": intro }))
        .unwrap_err();
    assert!(
        err.contains("vocals.wav") && err.contains("not found"),
        "{err}"
    );
    app.ok("retry_job", json!({ "id": intro }));
    let again = app.wait_stage(intro, "done");
    assert!(again.get("missing_stems").is_none(), "{again}");
    assert!(
        Path::new(again["stems"][3]["path"].as_str().unwrap()).is_file(),
        "{again}"
    );
}

/// Points the built-in downloader at a proxy that refuses connections, as when offline,
/// so that links fall back to yt-dlp whatever the network of the test machine.
fn offline_for_the_built_in_downloader() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    for var in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        unsafe { std::env::set_var(var, &proxy) };
    }
}

/// A fake yt-dlp beside the test's data that "downloads" a real M4A song.
#[cfg(unix)]
fn fake_ytdlp(dir: &Path) -> PathBuf {
    let tools = dir.join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let wav = song(&tools.join("source.wav"), 1.0);
    let m4a = tools.join("source.m4a");
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&wav)
        .args(["-c:a", "aac"])
        .arg(&m4a)
        .status()
        .expect("ffmpeg is needed for this test (apt-get install ffmpeg)");
    assert!(status.success());
    let program = tools.join("yt-dlp");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/fake-yt-dlp.sh"),
        &program,
    )
    .unwrap();
    std::fs::write(
        tools.join("fake-yt-dlp.conf"),
        format!(
            "AUDIO='{}'\nTITLE='Daft Punk - Around the World'\n",
            m4a.display()
        ),
    )
    .unwrap();
    program
}

#[cfg(unix)]
#[test]
fn pasted_links_download_separate_and_come_back_from_the_cache() {
    offline_for_the_built_in_downloader();
    let app = App::start();
    let ytdlp = fake_ytdlp(app.dir.path());
    let mut settings = app.ok("get_settings", json!({}))["settings"].clone();

    // A yt-dlp that is not there is refused with its path.
    settings["ytdlp_path"] = json!(app.dir.path().join("nowhere/yt-dlp"));
    let err = app
        .invoke("save_settings", json!({ "settings": settings }))
        .unwrap_err();
    assert!(
        err.starts_with("The yt-dlp program was not found at"),
        "{err}"
    );
    settings["ytdlp_path"] = json!(ytdlp);
    let view = app.ok("save_settings", json!({ "settings": settings }));
    assert_eq!(view["ytdlp"]["path"], json!(ytdlp));

    let report = app.ok(
        "add_links",
        json!({ "text": "https://youtu.be/dQw4w9WgXcQ  hello\nhttps://www.youtube.com/watch?v=dQw4w9WgXcQ&t=5 https://vimeo.com/1" }),
    );
    assert_eq!(report["added"].as_array().unwrap().len(), 1, "{report}");
    let refused: Vec<(&str, &str)> = report["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0].0, "hello");
    assert!(
        refused[1].1.contains("vimeo.com are not supported"),
        "{refused:?}"
    );
    let id = report["added"][0]["id"].as_u64().unwrap();
    assert_eq!(
        report["added"][0]["source"]["url"],
        "https://youtu.be/dQw4w9WgXcQ"
    );

    let job = app.wait_stage(id, "done");
    assert_eq!(job["title"], "Daft Punk - Around the World");
    assert_eq!(job["from_cache"], false);
    assert_eq!(job["stems"].as_array().unwrap().len(), 4);
    assert_eq!(
        job["output_dir"],
        json!(app.dir.path().join("stems/Daft Punk - Around the World"))
    );
    assert!(
        app.dir
            .path()
            .join("data/downloads/dQw4w9WgXcQ.m4a")
            .is_file()
    );

    // The same video again is done from the cache, with the same stems.
    let again = app.ok("add_links", json!({ "text": "dQw4w9WgXcQ" }));
    assert_eq!(again["added"][0]["title"], "Daft Punk - Around the World");
    let again = app.wait_stage(again["added"][0]["id"].as_u64().unwrap(), "done");
    assert_eq!(again["from_cache"], true);
    assert_eq!(again["stems"], job["stems"]);
    assert_eq!(
        std::fs::read_to_string(app.dir.path().join("tools/runs"))
            .unwrap()
            .lines()
            .count(),
        1,
        "downloaded once"
    );
    let err = app
        .invoke("add_links", json!({ "text": "  " }))
        .unwrap_err();
    assert_eq!(err, "Paste one or more links first");
}

#[test]
fn a_link_that_cannot_be_fetched_fails_with_both_reasons_and_can_be_retried() {
    offline_for_the_built_in_downloader();
    let app = App::start();
    let mut settings = app.ok("get_settings", json!({}))["settings"].clone();
    let missing = app.dir.path().join("yt-dlp-here");
    std::fs::write(&missing, "").unwrap();
    settings["ytdlp_path"] = json!(missing);
    app.ok("save_settings", json!({ "settings": settings }));
    std::fs::remove_file(&missing).unwrap();

    let report = app.ok(
        "add_links",
        json!({ "text": "https://youtu.be/dQw4w9WgXcQ" }),
    );
    let id = report["added"][0]["id"].as_u64().unwrap();
    let job = app.wait_stage(id, "failed");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("built-in downloader: cannot reach YouTube")
            && error.contains("yt-dlp: not found at"),
        "{error}"
    );
    app.ok("retry_job", json!({ "id": id }));
    app.wait_stage(id, "failed");
    let err = app.invoke("retry_job", json!({ "id": 999 })).unwrap_err();
    assert_eq!(err, "There is no job 999");
    let err = app
        .invoke("open_player", json!({ "jobId": id }))
        .unwrap_err();
    assert!(err.contains("no stems to play yet"), "{err}");
    let err = app.invoke("export_zip", json!({ "id": id })).unwrap_err();
    assert!(err.contains("has no stems yet"), "{err}");
}

#[test]
fn settings_persist_are_validated_and_models_report_their_availability() {
    let app = App::start();
    let view = app.ok("get_settings", json!({}));
    assert_eq!(view["choices"]["devices"][0], "cpu");
    let mut settings = view["settings"].clone();
    assert_eq!(settings["job"]["model"], "htdemucs");

    settings["job"]["overlap"] = json!(1.5);
    let err = app
        .invoke("save_settings", json!({ "settings": settings }))
        .unwrap_err();
    assert!(
        err.starts_with("Overlap must be at least 0 and below 1"),
        "{err}"
    );

    settings["job"]["overlap"] = json!(0.5);
    settings["job"]["sample_format"] = json!("int24");
    app.ok("save_settings", json!({ "settings": settings }));
    let saved: Value =
        serde_json::from_slice(&std::fs::read(app.dir.path().join("data/settings.json")).unwrap())
            .unwrap();
    assert_eq!(saved["job"]["overlap"], 0.5);
    assert_eq!(saved["job"]["sample_format"], "int24");
    assert_eq!(
        app.ok("get_settings", json!({}))["settings"]["job"]["sample_format"],
        "int24"
    );

    let models = app.ok("list_models", json!({}));
    let state_of = |name: &str| {
        models
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state_of("htdemucs"), "ready");
    assert_eq!(state_of("htdemucs_6s"), "missing");
    assert_eq!(models[0]["bytes"], 84141911);
}

#[test]
fn models_report_size_cost_and_origin_and_can_be_imported_and_removed() {
    let app = App::start();
    let model = |models: &Value, name: &str| {
        models
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()
            .clone()
    };
    let fixture_bytes = std::fs::metadata(app.dir.path().join("models/955717e8-8726e21a.th"))
        .unwrap()
        .len();
    let models = app.ok("list_models", json!({}));
    let htdemucs = model(&models, "htdemucs");
    assert_eq!(htdemucs["state"], "ready");
    assert_eq!(htdemucs["relative_time"], 1.0);
    assert_eq!(htdemucs["disk_bytes"], fixture_bytes);
    assert_eq!(htdemucs["imported"], false, "it has the official name");
    let bag = model(&models, "htdemucs_ft");
    assert_eq!(bag["relative_time"], 4.0);
    assert_eq!(bag["disk_bytes"], Value::Null);
    assert_eq!(bag["state"], "missing");

    let removed = app.ok("remove_model", json!({ "name": "htdemucs" }));
    assert_eq!(removed["state"], "missing");
    assert_eq!(removed["disk_bytes"], Value::Null);
    assert!(!app.dir.path().join("models/955717e8-8726e21a.th").exists());
    let err = app
        .invoke("remove_model", json!({ "name": "htdemucs" }))
        .unwrap_err();
    assert!(
        err.ends_with("is not downloaded or imported, so there is nothing to remove"),
        "{err}"
    );
    let err = app
        .invoke("remove_model", json!({ "name": "spleeter" }))
        .unwrap_err();
    assert!(
        err.contains("model \"spleeter\"; available: htdemucs"),
        "{err}"
    );

    // What import_model runs once the dialog has given a file.
    let state = app._app.state::<AppState>();
    let six = app.dir.path().join("six stems.safetensors");
    std::fs::write(
        &six,
        checkpoint_files::htdemucs_checkpoint(&checkpoint_files::SIX_STEMS),
    )
    .unwrap();
    let status = tauri::async_runtime::block_on(
        stemdeck_app::commands::settings::import_model_file(state.inner(), six.clone()),
    )
    .unwrap();
    let status = serde_json::to_value(status).unwrap();
    assert_eq!(status["name"], "htdemucs_6s");
    assert_eq!(status["state"], "ready");
    assert_eq!(status["imported"], true);
    assert_eq!(status["disk_bytes"], std::fs::metadata(&six).unwrap().len());
    assert_eq!(
        model(&app.ok("list_models", json!({})), "htdemucs_6s"),
        status
    );

    let toy = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/demucs/tests/fixtures/tiny_htdemucs.fixture");
    let err = tauri::async_runtime::block_on(stemdeck_app::commands::settings::import_model_file(
        state.inner(),
        toy,
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("is not built like htdemucs: "), "{err}");
    assert_eq!(
        model(&app.ok("list_models", json!({})), "htdemucs")["state"],
        "missing"
    );
}
