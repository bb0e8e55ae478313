//! Settings and models: what jobs run with, where stems go, and which models are here.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use stemdeck_engine::app::settings::AppSettings;
use stemdeck_engine::input::source::YtDlpBackend;
use stemdeck_engine::models::manager::{self, PresenceState};
use stemdeck_engine::models::manifest::{self, ModelInfo};
use stemdeck_engine::{Precision, SettingChoices};
use tauri::ipc::Channel;
use tauri::{AppHandle, Runtime, State};
use tauri_plugin_dialog::DialogExt;

use crate::dialog::answer;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// The settings with what the UI needs to offer choices.
#[derive(Debug, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SettingsView {
    pub settings: AppSettings,
    /// Where stems go when no folder is chosen.
    pub default_output_dir: PathBuf,
    /// What the settings may be: devices of this build, formats, ranges.
    pub choices: SettingChoices,
    /// Whether this CPU has the bf16 multiplies that make the fast precision faster.
    pub fast_precision_available: bool,
    /// The yt-dlp links fall back to, or why there is none.
    pub ytdlp: YtDlpStatus,
}

#[derive(Debug, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct YtDlpStatus {
    pub path: Option<PathBuf>,
    pub problem: Option<String>,
}

fn view(settings: AppSettings) -> SettingsView {
    let ytdlp = match YtDlpBackend::new(settings.ytdlp_path.clone()).locate() {
        Ok(path) => YtDlpStatus {
            path: Some(path),
            problem: None,
        },
        Err(e) => YtDlpStatus {
            path: None,
            problem: Some(e.to_string()),
        },
    };
    SettingsView {
        ytdlp,
        default_output_dir: AppSettings::default().output_dir_or_default(),
        settings,
        choices: SettingChoices::of_this_build(),
        fast_precision_available: Precision::fast_is_available(),
    }
}

#[tauri::command]
pub fn get_settings(state: State<'_, AppState>) -> SettingsView {
    view(state.settings())
}

/// Checks and stores new settings. They apply to jobs added from now on.
#[tauri::command]
pub fn save_settings(
    state: State<'_, AppState>,
    mut settings: AppSettings,
) -> AppResult<SettingsView> {
    settings.validate()?;
    // The mixer's presets are saved by the mixer; a settings dialog opened earlier must
    // not undo one saved since.
    settings.mix_presets = state.settings().mix_presets;
    settings.save(&state.data_dir)?;
    state
        .queue
        .set_output_root(settings.output_dir_or_default());
    state
        .queue
        .set_link_source(crate::state::link_source(&state.data_dir, &settings));
    *state.settings.lock().expect("settings lock") = settings.clone();
    Ok(view(settings))
}

/// Asks for the folder stems are written to. `None` when the user closed the dialog.
#[tauri::command]
pub async fn choose_output_dir<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
) -> AppResult<Option<PathBuf>> {
    let current = state.settings().output_dir_or_default();
    let mut dialog = app
        .dialog()
        .file()
        .set_title("Where should stems be saved?");
    if current.is_dir() {
        dialog = dialog.set_directory(&current);
    }
    let folder = answer(|reply| dialog.pick_folder(reply)).await?;
    Ok(folder.and_then(|f| f.into_path().ok()))
}

/// Asks for the yt-dlp program to use. `None` when the user closed the dialog.
#[tauri::command]
pub async fn choose_ytdlp<R: Runtime>(app: AppHandle<R>) -> AppResult<Option<PathBuf>> {
    let dialog = app.dialog().file().set_title("Choose the yt-dlp program");
    let file = answer(|reply| dialog.pick_file(reply)).await?;
    Ok(file.and_then(|f| f.into_path().ok()))
}

/// A model and whether it can be used right now.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ModelStatus {
    pub name: String,
    pub description: String,
    pub sources: Vec<String>,
    /// Download size, when the manifest knows it.
    pub bytes: Option<u64>,
    /// Separation time compared with htdemucs (4 for the htdemucs_ft bag).
    pub relative_time: f64,
    /// What its files here take on disk; `None` when none is here.
    pub disk_bytes: Option<u64>,
    /// Its files here are an imported copy, not the official download.
    pub imported: bool,
    #[serde(flatten)]
    pub availability: Availability,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "state", rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum Availability {
    Ready,
    Missing,
    Downloading { fraction: Option<f64> },
}

fn status(state: &AppState, model: &ModelInfo) -> ModelStatus {
    let downloading = state
        .downloads
        .lock()
        .expect("downloads lock")
        .get(&model.name)
        .copied();
    let here = manager::presence(&state.store, model);
    let availability = match downloading {
        Some((done, total)) => Availability::Downloading {
            fraction: total.filter(|t| *t > 0).map(|t| done as f64 / t as f64),
        },
        None if here.state() == PresenceState::Ready => Availability::Ready,
        // Part of a bag counts as missing: downloading it fetches only the rest.
        None => Availability::Missing,
    };
    ModelStatus {
        name: model.name.clone(),
        description: model.description.clone(),
        sources: model.sources.clone(),
        bytes: model.files.iter().map(|f| f.bytes).sum(),
        relative_time: model.relative_time,
        disk_bytes: here.disk_bytes(),
        imported: here.imported(),
        availability,
    }
}

#[tauri::command]
pub fn list_models(state: State<'_, AppState>) -> Vec<ModelStatus> {
    manifest::models()
        .iter()
        .map(|m| status(&state, m))
        .collect()
}

/// Downloads a model's checkpoints into the store, reporting progress on `on_progress`
/// about ten times a second, and returns its final status.
#[tauri::command]
pub async fn download_model(
    state: State<'_, AppState>,
    name: String,
    on_progress: Channel<ModelStatus>,
) -> AppResult<ModelStatus> {
    let model = manifest::find(&name)?;
    {
        let mut downloads = state.downloads.lock().expect("downloads lock");
        if downloads.contains_key(&name) {
            return Err(AppError::Invalid(format!("{name} is already downloading")));
        }
        downloads.insert(name.clone(), (0, None));
    }
    let result = run_download(&state, &model, &on_progress).await;
    state
        .downloads
        .lock()
        .expect("downloads lock")
        .remove(&name);
    result?;
    let done = status(&state, &model);
    let _ = on_progress.send(done.clone());
    Ok(done)
}

async fn run_download(
    state: &AppState,
    model: &ModelInfo,
    on_progress: &Channel<ModelStatus>,
) -> AppResult<()> {
    // The blocking download reports through a channel so that this task, not the download
    // thread, updates the shared map and the UI.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Option<u64>)>();
    let worker = tauri::async_runtime::spawn_blocking({
        let store = state.store.clone();
        let model = model.clone();
        move || {
            // A whole-model percent only when every file's size is known; otherwise the
            // current file's own total is the best there is.
            let known_total: Option<u64> = model.files.iter().map(|f| f.bytes).sum();
            let last = std::cell::Cell::new(Instant::now() - Duration::from_secs(1));
            store.ensure(
                &model,
                &|file, bytes, total| {
                    if last.get().elapsed() < Duration::from_millis(100) && total != Some(bytes) {
                        return;
                    }
                    last.set(Instant::now());
                    let earlier: u64 = model
                        .files
                        .iter()
                        .take_while(|f| f.name != file.name)
                        .filter_map(|f| f.bytes)
                        .sum();
                    let progress = match known_total {
                        Some(whole) => (earlier + bytes, Some(whole)),
                        None => (bytes, total),
                    };
                    let _ = tx.send(progress);
                },
                &|| false,
            )
        }
    });
    while let Some(progress) = rx.recv().await {
        state
            .downloads
            .lock()
            .expect("downloads lock")
            .insert(model.name.clone(), progress);
        let _ = on_progress.send(status(state, model));
    }
    worker.await??;
    Ok(())
}

/// Asks for a `.th` or `.safetensors` checkpoint and imports it: as the model it is an
/// official file of, else as the model with its stems, once its architecture and every
/// tensor are checked. `None` when the user closed the dialog.
#[tauri::command]
pub async fn import_model<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
) -> AppResult<Option<ModelStatus>> {
    let dialog = app
        .dialog()
        .file()
        .set_title("Import a Demucs model")
        .add_filter("Demucs checkpoint", &["th", "safetensors"]);
    let file = answer(|reply| dialog.pick_file(reply)).await?;
    match file.and_then(|f| f.into_path().ok()) {
        Some(path) => Ok(Some(import_model_file(&state, path).await?)),
        None => Ok(None),
    }
}

/// [`import_model`] after the dialog. Reading and checking an 84 MB checkpoint takes a few
/// seconds, so it runs on a blocking thread.
pub async fn import_model_file(state: &AppState, path: PathBuf) -> AppResult<ModelStatus> {
    let store = state.store.clone();
    let imported = tauri::async_runtime::spawn_blocking(move || {
        manager::import_checkpoint(&store, &manifest::models(), &path, None)
    })
    .await??;
    Ok(status(state, &manifest::find(&imported.model)?))
}

/// Deletes a model's files from the model folder and returns its new status.
#[tauri::command]
pub fn remove_model(state: State<'_, AppState>, name: String) -> AppResult<ModelStatus> {
    let model = manifest::find(&name)?;
    if state
        .downloads
        .lock()
        .expect("downloads lock")
        .contains_key(&name)
    {
        return Err(AppError::Invalid(format!(
            "{name} is downloading; wait for the download to finish before removing it"
        )));
    }
    manager::remove_model(&state.store, &model)?;
    Ok(status(&state, &model))
}
