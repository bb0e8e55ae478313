//! The results view's mixer: open a finished job's stems, transport, per-stem controls,
//! and the play position streamed to the UI about 30 times a second.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use stemdeck_engine::app::player::{OutputStatus, PlayerState, StemOverview, StemPlayer};
use tauri::State;
use tauri::ipc::Channel;

use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// How often the play position reaches the UI.
const TICK: Duration = Duration::from_millis(33);

/// Everything the results view needs to draw a job's mixer.
#[derive(Debug, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PlayerView {
    pub job_id: u64,
    pub title: String,
    pub stems: Vec<StemOverview>,
    pub output: OutputStatus,
    pub state: PlayerState,
}

/// Loads a finished job's stems into the mixer (replacing the previous job's).
#[tauri::command]
pub async fn open_player(state: State<'_, AppState>, job_id: u64) -> AppResult<PlayerView> {
    let job = state
        .queue
        .job(job_id)
        .ok_or(stemdeck_engine::app::queue::QueueError::NoSuchJob(job_id))?;
    // Stop the old one first: two outputs at once would fight over the device.
    *state.player.lock().expect("player lock") = None;
    let loading = job.clone();
    let player = tauri::async_runtime::spawn_blocking(move || StemPlayer::open(&loading)).await??;
    let view = PlayerView {
        job_id,
        title: job.title,
        stems: player.stems().to_vec(),
        output: player.output().clone(),
        state: player.state(),
    };
    *state.player.lock().expect("player lock") = Some(player);
    Ok(view)
}

#[tauri::command]
pub fn close_player(state: State<'_, AppState>) {
    *state.player.lock().expect("player lock") = None;
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

/// Streams the player's state to `on_tick` while a player is open, until the window
/// subscribes again.
#[tauri::command]
pub fn watch_player(state: State<'_, AppState>, on_tick: Channel<PlayerState>) {
    let watch = state.player_watch.clone();
    let generation = watch.fetch_add(1, Ordering::SeqCst) + 1;
    let player = state.player.clone();
    tauri::async_runtime::spawn(async move {
        let mut interval = tokio::time::interval(TICK);
        let mut last: Option<PlayerState> = None;
        while watch.load(Ordering::SeqCst) == generation {
            interval.tick().await;
            let now = player
                .lock()
                .expect("player lock")
                .as_ref()
                .map(StemPlayer::state);
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

fn with_player(
    state: &AppState,
    action: impl FnOnce(&mut StemPlayer) -> stemdeck_engine::Result<()>,
) -> AppResult<()> {
    let mut player = state.player.lock().expect("player lock");
    let player = player.as_mut().ok_or(AppError::NoPlayer)?;
    Ok(action(player)?)
}

#[tauri::command]
pub fn play(state: State<'_, AppState>) -> AppResult<()> {
    with_player(&state, StemPlayer::play)
}

#[tauri::command]
pub fn pause(state: State<'_, AppState>) -> AppResult<()> {
    with_player(&state, StemPlayer::pause)
}

#[tauri::command]
pub fn seek(state: State<'_, AppState>, secs: f64) -> AppResult<()> {
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
