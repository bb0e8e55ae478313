//! Settings and models: what jobs run with, where stems go, and which models are here.

use std::path::PathBuf;

use serde::Serialize;
use stemdeck_engine::input::source::YtDlpBackend;
use stemdeck_engine::jobs::settings::AppSettings;
use stemdeck_engine::models::manager;
use stemdeck_engine::models::manifest::{self, ModelInfo};
use stemdeck_engine::models::status::ModelStatus;
use stemdeck_engine::{EngineError, Precision, SettingChoices};
use tauri::ipc::Channel;
use tauri::{AppHandle, Runtime, State};
use tauri_plugin_dialog::DialogExt;

use crate::dialog::answer;
use crate::error::AppResult;
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

fn status(state: &AppState, model: &ModelInfo) -> ModelStatus {
    state.downloads.status(&state.store, model)
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
    state.downloads.begin(&model).map_err(EngineError::from)?;
    let downloads = state.downloads.clone();
    let store = state.store.clone();
    let done = tauri::async_runtime::spawn_blocking(move || {
        downloads
            .run(
                &store,
                &model,
                &|status| {
                    let _ = on_progress.send(status);
                },
                &|| false,
            )
            .inspect(|done| {
                let _ = on_progress.send(done.clone());
            })
    })
    .await??;
    Ok(done)
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
    Ok(state.downloads.remove(&state.store, &model)?)
}
