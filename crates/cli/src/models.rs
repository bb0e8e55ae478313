//! `stemdeck models list|download|import|remove`: the models separation uses, their size and
//! state, downloading them (SHA-256 verified), importing local checkpoints and removing them.
//!
//! Exit codes: 0 done; 1 it could not be done (the reason is printed on one line);
//! 2 bad command line; 130 a download was cancelled with Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{DecimalBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::download_bar;
use stemdeck_engine::models::manager::{
    ModelPresence, PresenceState, import_checkpoint, presence, remove_model,
};
use stemdeck_engine::models::manifest::{self, ModelFile};
use stemdeck_engine::{EngineError, ModelStore};

#[derive(clap::Subcommand)]
pub enum ModelsCommand {
    /// Show every model: its stems, size, whether it is here, and how long it takes.
    List {
        /// Also show each checkpoint file and where it is.
        #[arg(long)]
        files: bool,
    },
    /// Download a model's official checkpoints, checking each one's SHA-256.
    Download {
        /// htdemucs, htdemucs_6s or htdemucs_ft.
        name: String,
    },
    /// Add a local .th or .safetensors checkpoint, once it is checked to fit the model.
    Import {
        file: PathBuf,
        /// The model it is (default: the one with its stems, or the official file it is).
        #[arg(long = "as", value_name = "MODEL")]
        as_model: Option<String>,
    },
    /// Delete a model's files from the model folder.
    Remove { name: String },
}

pub fn run(command: ModelsCommand) -> ExitCode {
    let store = ModelStore::from_env();
    let result = match command {
        ModelsCommand::List { files } => {
            list(&store, files);
            Ok(())
        }
        ModelsCommand::Download { name } => download(&store, &name),
        ModelsCommand::Import { file, as_model } => import(&store, &file, as_model.as_deref()),
        ModelsCommand::Remove { name } => remove(&store, &name),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(EngineError::Cancelled) => {
            eprintln!("cancelled; no partial file was kept");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn human(bytes: u64) -> String {
    DecimalBytes(bytes).to_string()
}

fn state_text(model: &ModelPresence) -> String {
    match model.state() {
        PresenceState::Ready if model.imported() => "ready (imported)".into(),
        PresenceState::Ready => "ready".into(),
        PresenceState::Missing => "not downloaded".into(),
        PresenceState::Partial { present, total } => {
            format!("partly here ({present} of {total} files)")
        }
    }
}

fn time_text(relative_time: f64) -> String {
    if relative_time > 1.0 {
        format!("about {relative_time}× the time")
    } else {
        String::new()
    }
}

fn list(store: &ModelStore, show_files: bool) {
    let rows: Vec<(ModelPresence, [String; 5])> = manifest::models()
        .iter()
        .map(|model| {
            let here = presence(store, model);
            let columns = [
                model.name.clone(),
                format!("{} ({})", model.sources.len(), model.sources.join(", ")),
                here.size().map(human).unwrap_or_else(|| "unknown".into()),
                state_text(&here),
                time_text(model.relative_time),
            ];
            (here, columns)
        })
        .collect();
    let header = ["MODEL", "STEMS", "SIZE", "STATE", "SPEED"];
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|(_, c)| c[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(&header.map(String::from));
    for (here, columns) in &rows {
        line(columns);
        if show_files {
            for file in &here.files {
                let place = match (&file.path, file.disk_bytes) {
                    (Some(path), Some(bytes)) => format!("{} ({})", path.display(), human(bytes)),
                    (Some(path), None) => path.display().to_string(),
                    (None, _) => "not here".into(),
                };
                println!("    {}: {place}", file.file.name);
            }
        }
    }
    match store.write_dir() {
        Ok(dir) => println!("\nModels are kept in {}", dir.display()),
        Err(e) => println!("\n{e}"),
    }
}

fn download(store: &ModelStore, name: &str) -> Result<(), EngineError> {
    let model = manifest::find(name)?;
    if presence(store, &model).state() == PresenceState::Ready {
        println!("{name} is already here");
        return Ok(());
    }
    let cancelled = std::sync::Arc::new(AtomicBool::new(false));
    {
        let cancelled = cancelled.clone();
        let _ = ctrlc::set_handler(move || cancelled.store(true, Ordering::Relaxed));
    }
    let count = model.files.len();
    let current: Mutex<Option<(String, ProgressBar)>> = Mutex::new(None);
    let on_progress = |file: &ModelFile, done: u64, total: Option<u64>| {
        let mut current = current.lock().expect("progress lock");
        if current.as_ref().is_none_or(|(name, _)| *name != file.name) {
            if let Some((_, old)) = current.take() {
                old.finish_and_clear();
            }
            let index = model
                .files
                .iter()
                .position(|f| f.name == file.name)
                .unwrap_or(0);
            let prefix = if count > 1 {
                format!("{name} {}/{count}", index + 1)
            } else {
                name.to_string()
            };
            *current = Some((file.name.clone(), download_bar(prefix, total)));
        }
        if let Some((_, bar)) = current.as_ref() {
            bar.set_position(done);
        }
    };
    let result = store.ensure(&model, &on_progress, &|| cancelled.load(Ordering::Relaxed));
    if let Some((_, bar)) = current.lock().expect("progress lock").take() {
        bar.finish_and_clear();
    }
    let paths = result?;
    let bytes: u64 = paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let files = if count > 1 {
        format!("{count} files, ")
    } else {
        String::new()
    };
    println!(
        "{name} is ready ({files}{}, SHA-256 verified) in {}",
        human(bytes),
        store.write_dir()?.display()
    );
    Ok(())
}

fn import(
    store: &ModelStore,
    file: &std::path::Path,
    as_model: Option<&str>,
) -> Result<(), EngineError> {
    let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    spinner.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
    spinner.set_message(format!("checking {}", file.display()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let result = import_checkpoint(store, &manifest::models(), file, as_model);
    spinner.finish_and_clear();
    let imported = result?;
    let what = if imported.official {
        "the official checkpoint, recognised by its SHA-256"
    } else {
        "its architecture and every tensor checked"
    };
    println!(
        "{}: imported as {} ({what}) to {}",
        file.display(),
        imported.model,
        imported.path.display()
    );
    Ok(())
}

fn remove(store: &ModelStore, name: &str) -> Result<(), EngineError> {
    let model = manifest::find(name)?;
    let removed = remove_model(store, &model)?;
    let names: Vec<String> = removed.iter().map(|p| p.display().to_string()).collect();
    println!("removed {name} (deleted {})", names.join(", "));
    Ok(())
}
