//! The queue and the library: adding songs and links, watching jobs, cancel/retry/remove.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use serde::Serialize;
use stemdeck_engine::input::intake::{AUDIO_EXTENSIONS, Refused};
use stemdeck_engine::jobs::library::Job;
use stemdeck_engine::jobs::queue::JobUpdate;
use tauri::ipc::Channel;
use tauri::{AppHandle, Runtime, State};
use tauri_plugin_dialog::DialogExt;

use crate::dialog::answer;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// What happened to the items the user added.
#[derive(Debug, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AddReport {
    pub added: Vec<Job>,
    pub refused: Vec<Refused>,
}

#[tauri::command]
pub fn list_jobs(state: State<'_, AppState>) -> Vec<Job> {
    state.queue.jobs()
}

/// Messages from start-up that the user should read once.
#[tauri::command]
pub fn startup_notices(state: State<'_, AppState>) -> Vec<String> {
    state.notices.clone()
}

/// Streams every job change to `on_update` until the window subscribes again.
#[tauri::command]
pub fn watch_jobs(state: State<'_, AppState>, on_update: Channel<JobUpdate>) {
    let watch = state.job_watch.clone();
    let generation = watch.fetch_add(1, Ordering::SeqCst) + 1;
    let mut updates = state.queue.subscribe();
    tauri::async_runtime::spawn(async move {
        loop {
            match updates.recv().await {
                Ok(update) => {
                    if watch.load(Ordering::SeqCst) != generation || on_update.send(update).is_err()
                    {
                        break;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => break,
            }
        }
    });
}

/// Queues dropped files and folders (folders are expanded to the audio inside them).
/// Queues dropped files and folders. Async, so that probing a large folder's files runs
/// off the window's thread.
#[tauri::command]
pub async fn add_paths(state: State<'_, AppState>, paths: Vec<PathBuf>) -> AppResult<AddReport> {
    Ok(add_files(&state, &paths))
}

/// Opens the system's file picker and queues what the user chose.
#[tauri::command]
pub async fn pick_files<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
) -> AppResult<AddReport> {
    let dialog = app
        .dialog()
        .file()
        .set_title("Add songs to separate")
        .add_filter("Audio", AUDIO_EXTENSIONS);
    let picked = answer(|reply| dialog.pick_files(reply))
        .await?
        .unwrap_or_default();
    let paths: Vec<PathBuf> = picked
        .into_iter()
        .filter_map(|p| p.into_path().ok())
        .collect();
    Ok(add_files(&state, &paths))
}

fn add_files(state: &AppState, paths: &[PathBuf]) -> AddReport {
    let (added, refused) = state.queue.add_paths(paths, state.settings().job);
    AddReport { added, refused }
}

/// Queues every link in pasted text.
#[tauri::command]
pub fn add_links(state: State<'_, AppState>, text: String) -> AppResult<AddReport> {
    let (links, refused) = stemdeck_engine::input::link::parse_links(&text);
    if links.is_empty() && refused.is_empty() {
        return Err(AppError::Invalid("paste one or more links first".into()));
    }
    let settings = state.settings().job;
    let added = links
        .iter()
        .map(|link| state.queue.add_link(link, settings.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AddReport { added, refused })
}

#[tauri::command]
pub fn cancel_job(state: State<'_, AppState>, id: u64) -> AppResult<()> {
    Ok(state.queue.cancel(id)?)
}

#[tauri::command]
pub fn retry_job(state: State<'_, AppState>, id: u64) -> AppResult<()> {
    Ok(state.queue.retry(id)?)
}

/// Takes a job out of the library; its stem files stay on disk.
#[tauri::command]
pub fn remove_job(state: State<'_, AppState>, id: u64) -> AppResult<()> {
    let mut player = state.player.lock().expect("player lock");
    if player.as_ref().is_some_and(|p| p.job_id() == id) {
        *player = None;
    }
    drop(player);
    state.queue.remove(id)?;
    Ok(())
}
