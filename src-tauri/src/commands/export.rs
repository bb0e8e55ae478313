//! Getting the stems out: show them in the file manager, or bundle them as a ZIP.

use std::path::PathBuf;

use stemdeck_engine::library::Job;
use stemdeck_engine::queue::QueueError;
use tauri::{AppHandle, Runtime, State};
use tauri_plugin_dialog::DialogExt;

use crate::error::{AppError, AppResult};
use crate::state::AppState;

fn finished_job(state: &AppState, id: u64) -> AppResult<(Job, PathBuf)> {
    let job = state.queue.job(id).ok_or(QueueError::NoSuchJob(id))?;
    let dir = job
        .output_dir
        .clone()
        .filter(|_| !job.stems.is_empty())
        .ok_or_else(|| AppError::Invalid(format!("“{}” has no stems yet", job.title)))?;
    Ok((job, dir))
}

/// Opens the file manager at the job's stem folder, with its first stem selected.
#[tauri::command]
pub fn reveal_job(state: State<'_, AppState>, id: u64) -> AppResult<()> {
    let (job, dir) = finished_job(&state, id)?;
    if !dir.is_dir() {
        return Err(AppError::Invalid(format!(
            "the stem folder {} is gone; it was moved or deleted",
            dir.display()
        )));
    }
    let target = job
        .stems
        .iter()
        .map(|s| s.path.clone())
        .find(|p| p.is_file())
        .unwrap_or(dir);
    tauri_plugin_opener::reveal_item_in_dir(&target).map_err(|e| AppError::Reveal(e.to_string()))
}

/// Asks where to save, then writes every stem of the job into one ZIP. `None` when the
/// user closed the dialog.
#[tauri::command]
pub async fn export_zip<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    id: u64,
) -> AppResult<Option<PathBuf>> {
    let (job, dir) = finished_job(&state, id)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.dialog()
        .file()
        .set_title("Export stems as ZIP")
        .set_directory(dir.parent().unwrap_or(&dir))
        .set_file_name(format!("{} stems.zip", job.title))
        .add_filter("ZIP archive", &["zip"])
        .save_file(move |chosen| {
            let _ = tx.send(chosen);
        });
    let Some(chosen) = rx.await.map_err(|e| AppError::Background(e.to_string()))? else {
        return Ok(None);
    };
    let mut dest = chosen
        .into_path()
        .map_err(|e| AppError::Invalid(format!("cannot save there ({e})")))?;
    if dest.extension().is_none() {
        dest.set_extension("zip");
    }
    export_zip_to(job, dest).await.map(Some)
}

/// Writes the job's stems to `dest` on a blocking thread.
async fn export_zip_to(job: Job, dest: PathBuf) -> AppResult<PathBuf> {
    tauri::async_runtime::spawn_blocking(move || {
        stemdeck_engine::export::export_zip(&job.stems, &job.title, &dest).map(|()| dest)
    })
    .await
    .map_err(|e| AppError::Background(e.to_string()))?
    .map_err(AppError::from)
}
