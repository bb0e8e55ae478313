//! The Stemdeck desktop app: a thin Tauri shell. Commands (grouped by domain in
//! [`commands`]) call into the engine, the mixer and the audio crates; progress and the
//! play position stream to the UI over channels.

mod bindings;
pub mod commands;
mod dialog;
pub mod error;
pub mod state;

use tauri::{Manager, Runtime};

pub use error::AppError;
pub use state::AppState;

/// Every command the UI may call.
pub fn invoke_handler<R: Runtime>() -> impl Fn(tauri::ipc::Invoke<R>) -> bool + Send + Sync + 'static
{
    use commands::{export, library, player, settings};
    tauri::generate_handler![
        library::list_jobs,
        library::startup_notices,
        library::watch_jobs,
        library::add_paths,
        library::pick_files,
        library::add_links,
        library::cancel_job,
        library::retry_job,
        library::remove_job,
        player::open_player,
        player::close_player,
        player::player_state,
        player::watch_player,
        player::play,
        player::pause,
        player::seek,
        player::set_gain,
        player::set_mute,
        player::set_solo,
        player::set_loop,
        player::set_pan,
        player::set_practice,
        player::player_analysis,
        player::player_stems,
        player::mix_presets,
        player::apply_preset,
        player::save_preset,
        player::delete_preset,
        export::prepare_drag,
        export::reveal_job,
        export::export_zip,
        export::export_mix,
        settings::get_settings,
        settings::save_settings,
        settings::choose_output_dir,
        settings::choose_ytdlp,
        settings::list_models,
        settings::download_model,
        settings::import_model,
        settings::remove_model,
    ]
}

/// The folder for the library and settings: `STEMDECK_DATA_DIR`, else the app data folder.
fn data_dir<R: Runtime>(app: &tauri::App<R>) -> tauri::Result<std::path::PathBuf> {
    match std::env::var_os(state::DATA_DIR_ENV).filter(|d| !d.is_empty()) {
        Some(dir) => Ok(dir.into()),
        None => app.path().app_data_dir(),
    }
}

/// `STEMDECK_LOG_FORMAT=json` writes the log as one JSON object per line (job id, stage,
/// timings), as `stemdeck --log-format json` does.
pub const LOG_FORMAT_ENV: &str = "STEMDECK_LOG_FORMAT";

pub fn run() {
    let logs = tracing_subscriber::fmt().with_env_filter(
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
    );
    let _ = if std::env::var(LOG_FORMAT_ENV).is_ok_and(|f| f == "json") {
        logs.json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        logs.try_init()
    };
    tauri::Builder::default()
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_opener::init())
        .plugin(tauri_plugin_drag::init())
        .invoke_handler(invoke_handler())
        .setup(|app| {
            let dir = data_dir(app)?;
            let store = stemdeck_engine::ModelStore::from_env();
            // The queue's worker runs on Tauri's async runtime.
            let state = tauri::async_runtime::block_on(async { AppState::open(&dir, store) });
            app.manage(state);
            Ok(())
        })
        .run(tauri::generate_context!())
        .expect("Stemdeck could not start its window");
}
