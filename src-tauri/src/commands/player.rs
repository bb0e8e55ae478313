//! The mixer: open a job's stems (finished, or still separating), transport, per-stem
//! controls, presets, and the player's state streamed to the UI about 30 times a second.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use stemdeck_engine::analysis::Analysis;
use stemdeck_engine::jobs::library::JobStage;
use stemdeck_engine::player::mix_state::builtin_presets;
use stemdeck_engine::player::{
    MixPreset, MixSettings, OutputStatus, PlayerState, Practice, StemOverview, StemPlayer,
};
use tauri::State;
use tauri::ipc::Channel;

use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// How often the player's state reaches the UI.
const TICK: Duration = Duration::from_millis(33);
/// How often the mixer's settings are written to the library while they change.
const REMEMBER_EVERY: Duration = Duration::from_secs(1);

/// Everything the results view needs to draw a job's mixer.
#[derive(Debug, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PlayerView {
    pub job_id: u64,
    pub title: String,
    pub stems: Vec<StemOverview>,
    pub output: OutputStatus,
    pub state: PlayerState,
    pub mix: MixSettings,
    /// Tempo, key and loudness; `None` until the song is analysed (after separating).
    pub analysis: Option<Analysis>,
}

/// Opens a job's stems in the mixer (replacing the previous job's): a finished job's
/// files, or a running job's stems as far as they are separated.
#[tauri::command]
pub async fn open_player(state: State<'_, AppState>, job_id: u64) -> AppResult<PlayerView> {
    let job = state
        .queue
        .job(job_id)
        .ok_or(stemdeck_engine::jobs::queue::QueueError::NoSuchJob(job_id))?;
    // Stop the old one first: two outputs at once would fight over the device.
    close_player(state.clone());
    let live = state.queue.live(job_id);
    if live.is_none()
        && job.stems.is_empty()
        && !job.stage.is_finished()
        && job.stage != JobStage::Queued
    {
        return Err(AppError::Invalid(format!(
            "“{}” has nothing to listen to yet; its first seconds are ready a few seconds after it starts separating",
            job.title
        )));
    }
    let scratch = state.playback_dir.clone();
    let loading = job.clone();
    let player = tauri::async_runtime::spawn_blocking(move || match live {
        Some(live) => StemPlayer::open_live(&loading, live, &scratch),
        None => StemPlayer::open(&loading, &scratch),
    })
    .await??;
    let view = PlayerView {
        job_id,
        title: job.title,
        stems: player.stems(),
        output: player.output().clone(),
        state: player.state(),
        mix: player.mix().clone(),
        analysis: player.analysis().cloned(),
    };
    *state.player.lock().expect("player lock") = Some(player);
    Ok(view)
}

/// Closes the mixer, remembering its settings for the song.
#[tauri::command]
pub fn close_player(state: State<'_, AppState>) {
    let closed = state.player.lock().expect("player lock").take();
    if let Some(player) = closed {
        remember(&state, &player);
    }
}

fn remember(state: &AppState, player: &StemPlayer) {
    if let Err(e) = state
        .queue
        .remember_mix(player.job_id(), player.mix().clone())
    {
        tracing::warn!("cannot remember the mixer's settings: {e}");
    }
}

#[tauri::command]
pub fn player_state(state: State<'_, AppState>) -> Option<PlayerState> {
    state
        .player
        .lock()
        .expect("player lock")
        .as_ref()
        .map(StemPlayer::state)
}

/// The stems' waveform overviews as far as they exist (they grow while a job separates).
/// The open song's analysis, once there (a song heard while separating gets it at the end).
#[tauri::command]
pub fn player_analysis(state: State<'_, AppState>) -> AppResult<Option<Analysis>> {
    let player = state.player.lock().expect("player lock");
    Ok(player
        .as_ref()
        .ok_or(AppError::NoPlayer)?
        .analysis()
        .cloned())
}

#[tauri::command]
pub fn player_stems(state: State<'_, AppState>) -> AppResult<Vec<StemOverview>> {
    let player = state.player.lock().expect("player lock");
    Ok(player.as_ref().ok_or(AppError::NoPlayer)?.stems())
}

/// Streams the player's state to `on_tick` while a player is open, until the window
/// subscribes again. Each tick also lets the player follow its job (switching to the
/// finished files) and keeps the mixer's settings remembered.
#[tauri::command]
pub fn watch_player(state: State<'_, AppState>, on_tick: Channel<PlayerState>) {
    let watch = state.player_watch.clone();
    let generation = watch.fetch_add(1, Ordering::SeqCst) + 1;
    let player = state.player.clone();
    let queue = state.queue.clone();
    tauri::async_runtime::spawn(async move {
        let mut interval = tokio::time::interval(TICK);
        let mut last: Option<PlayerState> = None;
        let mut remembered = Instant::now();
        while watch.load(Ordering::SeqCst) == generation {
            interval.tick().await;
            let now = {
                let mut player = player.lock().expect("player lock");
                player.as_mut().map(|p| {
                    p.follow_job();
                    if remembered.elapsed() >= REMEMBER_EVERY {
                        remembered = Instant::now();
                        let _ = queue.remember_mix(p.job_id(), p.mix().clone());
                        // A song heard while it separated is analysed only at its end.
                        if let Some(analysis) = queue.job(p.job_id()).and_then(|j| j.analysis) {
                            p.set_analysis(&analysis);
                        }
                    }
                    p.state()
                })
            };
            // Nothing moves while paused; do not flood the UI with identical ticks.
            if now.is_some() && now != last {
                if on_tick.send(now.clone().expect("checked")).is_err() {
                    break;
                }
                last = now;
            }
        }
    });
}

fn with_player<T>(
    state: &AppState,
    action: impl FnOnce(&mut StemPlayer) -> stemdeck_engine::Result<T>,
) -> AppResult<T> {
    let mut player = state.player.lock().expect("player lock");
    let player = player.as_mut().ok_or(AppError::NoPlayer)?;
    Ok(action(player)?)
}

/// Tempo, pitch, click and count-in, applied at once and remembered with the song's mix.
#[tauri::command]
pub fn set_practice(state: State<'_, AppState>, practice: Practice) -> AppResult<()> {
    with_player(&state, |p| p.set_practice(practice))
}

#[tauri::command]
pub fn play(state: State<'_, AppState>) -> AppResult<()> {
    with_player(&state, StemPlayer::play)
}

#[tauri::command]
pub fn pause(state: State<'_, AppState>) -> AppResult<()> {
    with_player(&state, StemPlayer::pause)
}

/// Moves the play position; returns where it moved to, which is short of `secs` when
/// that part is not separated yet.
#[tauri::command]
pub fn seek(state: State<'_, AppState>, secs: f64) -> AppResult<f64> {
    with_player(&state, |p| p.seek(secs))
}

#[tauri::command]
pub fn set_gain(state: State<'_, AppState>, stem: usize, gain: f32) -> AppResult<()> {
    with_player(&state, |p| p.set_gain(stem, gain))
}

#[tauri::command]
pub fn set_mute(state: State<'_, AppState>, stem: usize, muted: bool) -> AppResult<()> {
    with_player(&state, |p| p.set_mute(stem, muted))
}

#[tauri::command]
pub fn set_solo(state: State<'_, AppState>, stem: usize, soloed: bool) -> AppResult<()> {
    with_player(&state, |p| p.set_solo(stem, soloed))
}

#[tauri::command]
pub fn set_pan(state: State<'_, AppState>, stem: usize, pan: f32) -> AppResult<()> {
    with_player(&state, |p| p.set_pan(stem, pan))
}

/// Loops `[start, end)` seconds; both `None` clears the loop.
#[tauri::command]
pub fn set_loop(state: State<'_, AppState>, start: Option<f64>, end: Option<f64>) -> AppResult<()> {
    let region = match (start, end) {
        (Some(start), Some(end)) => Some((start, end)),
        (None, None) => None,
        _ => {
            return Err(AppError::Invalid(
                "a loop needs both a start and an end".into(),
            ));
        }
    };
    with_player(&state, |p| p.set_loop(region))
}

/// The presets for the open song: the built-in ones its stems allow, then the user's.
#[tauri::command]
pub fn mix_presets(state: State<'_, AppState>) -> AppResult<Vec<MixPreset>> {
    let names = with_player(&state, |p| Ok(stem_names(p)))?;
    let mut presets = builtin_presets(&names);
    presets.extend(state.settings().mix_presets);
    Ok(presets)
}

fn stem_names(player: &StemPlayer) -> Vec<String> {
    player.stems().into_iter().map(|s| s.name).collect()
}

/// Applies the preset `name` to the open song; returns the mix it now has.
#[tauri::command]
pub fn apply_preset(state: State<'_, AppState>, name: String) -> AppResult<MixSettings> {
    let presets = mix_presets(state.clone())?;
    let preset = presets
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| AppError::Invalid(format!("there is no preset “{name}”")))?;
    with_player(&state, |p| {
        let mix = preset.mix_for(&stem_names(p), p.mix().loop_secs);
        p.apply_mix(&mix)?;
        Ok(p.mix().clone())
    })
}

/// Saves the open mixer's balance as the user's preset `name` (replacing one so named).
#[tauri::command]
pub fn save_preset(state: State<'_, AppState>, name: String) -> AppResult<Vec<MixPreset>> {
    let name = name.trim().to_string();
    if name.is_empty() {
        return Err(AppError::Invalid("a preset needs a name".into()));
    }
    let names = with_player(&state, |p| Ok(stem_names(p)))?;
    if builtin_presets(&names).iter().any(|p| p.name == name) {
        return Err(AppError::Invalid(format!(
            "“{name}” is a built-in preset; choose another name"
        )));
    }
    let mix = with_player(&state, |p| Ok(p.mix().clone()))?;
    let mut settings = state.settings();
    settings.mix_presets.retain(|p| p.name != name);
    settings.mix_presets.push(MixPreset::saved(&name, &mix));
    settings.save(&state.data_dir)?;
    *state.settings.lock().expect("settings lock") = settings;
    mix_presets(state)
}

/// Deletes the user's preset `name`.
#[tauri::command]
pub fn delete_preset(state: State<'_, AppState>, name: String) -> AppResult<Vec<MixPreset>> {
    let mut settings = state.settings();
    settings.mix_presets.retain(|p| p.name != name);
    settings.save(&state.data_dir)?;
    *state.settings.lock().expect("settings lock") = settings;
    mix_presets(state)
}
