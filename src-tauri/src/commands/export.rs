//! Getting the stems out: show them in the file manager, bundle them as a ZIP, or render
//! the mixer's current balance into one file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use stemdeck_engine::jobs::library::{Job, JobSource};
use stemdeck_engine::jobs::queue::QueueError;
use stemdeck_engine::outputs::mix::{describe_levels, mix_files_panned};
use stemdeck_engine::{EngineError, Tags};
use stemdeck_playback::TempoPitch;
use tauri::{AppHandle, Runtime, State};
use tauri_plugin_dialog::DialogExt;

use crate::dialog::answer;
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
    tauri_plugin_opener::reveal_item_in_dir(&target).map_err(AppError::from)
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
    let name = format!("{} stems.zip", job.title);
    let Some(dest) = ask_save_path(
        &app,
        "Export stems as ZIP",
        dir.parent().unwrap_or(&dir),
        &name,
        "ZIP archive",
        "zip",
    )
    .await?
    else {
        return Ok(None);
    };
    export_zip_to(job, dest).await.map(Some)
}

/// Writes the job's stems to `dest` on a blocking thread.
async fn export_zip_to(job: Job, dest: PathBuf) -> AppResult<PathBuf> {
    tauri::async_runtime::spawn_blocking(move || {
        stemdeck_engine::outputs::export::export_zip(&job.stems, &job.title, &dest).map(|()| dest)
    })
    .await?
    .map_err(AppError::from)
}

/// The open mixer's balance: the job, each stem's gain as the renderer applies it (mutes
/// and solos included), each stem's pan, and a name for the mix.
/// The open mixer's balance as an export renders it: the job, each stem's level and pan,
/// the tempo and pitch, and a description for the file name ("no vocals, 80%, -2 st").
pub struct CurrentMix {
    pub job: Job,
    pub levels: Vec<f32>,
    pub pans: Vec<f32>,
    pub tempo_pitch: TempoPitch,
    pub description: String,
}

fn current_mix(state: &AppState) -> AppResult<CurrentMix> {
    let (job_id, levels, pans, practice) = {
        let player = state.player.lock().expect("player lock");
        let player = player.as_ref().ok_or(AppError::NoPlayer)?;
        let pans = player.mix().stems.iter().map(|s| s.pan).collect::<Vec<_>>();
        (
            player.job_id(),
            player.state().levels,
            pans,
            player.practice(),
        )
    };
    let (job, _) = finished_job(state, job_id)?;
    let names: Vec<String> = job.stems.iter().map(|s| s.name.clone()).collect();
    if levels.len() != names.len() || levels.iter().all(|l| *l == 0.0) {
        return Err(AppError::Invalid(
            "every stem is muted, so the mix would be silent; unmute a stem first".into(),
        ));
    }
    let mut description = if pans.iter().any(|p| *p != 0.0) {
        "custom mix".to_string()
    } else {
        describe_levels(&names, &levels)
    };
    if let Some(note) = practice.file_name_note() {
        description = format!("{description}, {note}");
    }
    Ok(CurrentMix {
        job,
        levels,
        pans,
        tempo_pitch: TempoPitch {
            tempo: practice.tempo,
            semitones: practice.semitones,
        },
        description,
    })
}

/// Asks where to save, then renders the open mixer's balance (gains, mutes, solos and
/// pans as the renderer applies them) into one file in the job's format. `None` when the
/// user closed the dialog.
#[tauri::command]
pub async fn export_mix<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
) -> AppResult<Option<PathBuf>> {
    let mix = current_mix(&state)?;
    let dir = mix.job.output_dir.clone().unwrap_or_default();
    let output = mix
        .job
        .settings
        .output_options()
        .map_err(EngineError::from)?;
    let extension = output.format.extension();
    let name = sanitize_file_name(&format!(
        "{} ({}).{extension}",
        mix.job.title, mix.description
    ));
    let Some(dest) = ask_save_path(&app, "Export mix", &dir, &name, "Audio", extension).await?
    else {
        return Ok(None);
    };
    export_mix_to(mix, dest).await.map(Some)
}

/// What the UI hands the drag-out plugin: a real file, and the image shown while dragging.
#[derive(Debug, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DragPayload {
    pub path: PathBuf,
    pub icon: PathBuf,
}

/// What to drag out of the mixer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum DragSource {
    /// One stem's file, by its row.
    Stem(usize),
    /// The current mix, rendered to a file first.
    Mix,
}

/// The app's icon, shown under the pointer while a stem is dragged out.
const DRAG_ICON: &[u8] = include_bytes!("../../../icons/128x128.png");

/// Gets a file ready to drag out of the mixer into a file manager or a DAW: a stem's own
/// file, or the current mix rendered into the app's playback folder.
#[tauri::command]
pub async fn prepare_drag(
    state: State<'_, AppState>,
    source: DragSource,
) -> AppResult<DragPayload> {
    let folder = state.playback_dir.join("drag");
    std::fs::create_dir_all(&folder).map_err(EngineError::io(
        &folder,
        "cannot make a folder for dragging",
    ))?;
    let icon = state.playback_dir.join("drag-icon.png");
    if !icon.is_file() {
        stemdeck_audio::write_bytes_atomically(&icon, DRAG_ICON).map_err(EngineError::from)?;
    }
    let path = match source {
        DragSource::Stem(index) => {
            let player = state.player.lock().expect("player lock");
            let player = player.as_ref().ok_or(AppError::NoPlayer)?;
            let files = player.files().ok_or_else(|| {
                AppError::Invalid(
                    "the stems can be dragged out once the separation has written them".into(),
                )
            })?;
            files
                .get(index)
                .map(|f| f.path.clone())
                .ok_or_else(|| AppError::Invalid(format!("there is no stem number {index}")))?
        }
        DragSource::Mix => {
            let mix = current_mix(&state)?;
            let output = mix
                .job
                .settings
                .output_options()
                .map_err(EngineError::from)?;
            let name = format!(
                "{} ({}).{}",
                mix.job.title,
                mix.description,
                output.format.extension()
            );
            let dest = folder.join(sanitize_file_name(&name));
            export_mix_to(mix, dest).await?
        }
    };
    Ok(DragPayload { path, icon })
}

/// A title made safe as a file name (titles come from videos and may hold slashes).
fn sanitize_file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The native save dialog; the chosen path always ends in `extension`. `None` when the
/// user closed the dialog.
async fn ask_save_path<R: Runtime>(
    app: &AppHandle<R>,
    title: &str,
    directory: &std::path::Path,
    file_name: &str,
    filter: &str,
    extension: &str,
) -> AppResult<Option<PathBuf>> {
    let dialog = app
        .dialog()
        .file()
        .set_title(title)
        .set_directory(directory)
        .set_file_name(file_name)
        .add_filter(filter, &[extension]);
    let Some(chosen) = answer(|reply| dialog.save_file(reply)).await? else {
        return Ok(None);
    };
    let mut dest = chosen
        .into_path()
        .map_err(|e| AppError::Invalid(format!("cannot save there ({e})")))?;
    if dest.extension().is_none_or(|e| e != extension) {
        dest.set_extension(extension);
    }
    Ok(Some(dest))
}

/// Renders `mix` to `dest` on a blocking thread.
pub async fn export_mix_to(mix: CurrentMix, dest: PathBuf) -> AppResult<PathBuf> {
    let CurrentMix {
        job,
        levels,
        pans,
        tempo_pitch,
        description,
    } = mix;
    tauri::async_runtime::spawn_blocking(move || {
        let output = job.settings.output_options()?;
        let tags = Tags {
            title: Some(job.title.clone()),
            stem: Some(description),
            source: Some(match &job.source {
                JobSource::File { path } => path.display().to_string(),
                JobSource::Link { url, .. } => url.clone(),
            }),
        };
        mix_files_panned(
            &job.stems,
            &levels,
            &pans,
            tempo_pitch,
            &dest,
            &output,
            &tags,
        )
    })
    .await?
    .map_err(AppError::from)
}
