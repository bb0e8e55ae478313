//! One input through the whole pipeline, the same for the CLI and the app: find its
//! source (a file, or a video fetched through the download cache), reuse stored stems
//! when this source was separated before with the same model and settings, else separate
//! and remember the result.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stemdeck_audio::Tags;
use stemdeck_demucs::{ApplyOptions, Precision};

use crate::error::{EngineError, Result};
use crate::events::{JobEvent, JobListener};
use crate::input::link::VideoId;
use crate::input::source::LinkSource;
use crate::outputs::mix::mix_files;
use crate::pipeline::StemFile;
use crate::pipeline::cache::{ResultCache, ResultKey, SettingsKey, SourceKey};
use crate::pipeline::options::OutputOptions;
use crate::pipeline::separate::{ModelChoice, Separator};

/// What a job separates.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    File(PathBuf),
    Video(VideoId),
}

/// A finished input.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub title: String,
    pub dir: PathBuf,
    pub stems: Vec<StemFile>,
    /// The custom mixes asked for, beside the stems.
    pub mixes: Vec<PathBuf>,
    /// True when stored stems were reused and nothing was separated.
    pub from_cache: bool,
    /// Tempo, key and loudness; `None` only where measuring failed (which fails nothing).
    pub analysis: Option<stemdeck_analysis::Analysis>,
}

/// How a job runs.
pub struct RunOptions<'a> {
    pub model: &'a ModelChoice,
    /// What the model computes with on its device ([`crate::DeviceChoice::effective_precision`]):
    /// fast and exact stems differ, so they are cached apart.
    pub precision: Precision,
    pub apply: &'a ApplyOptions,
    pub output: &'a OutputOptions,
    /// Where stems go: `folder_for(title)` gives the folder for a title that is already
    /// safe as a file name.
    pub output_root: &'a Path,
    pub folder_for: &'a dyn Fn(&str) -> PathBuf,
    /// False separates again even when stored stems match (they are still recorded).
    pub reuse_cached: bool,
}

/// The caches and sources a job draws on.
pub struct Sources<'a> {
    pub links: &'a LinkSource,
    pub results: &'a ResultCache,
}

/// A title as a folder name that is valid on Windows, macOS and Linux.
pub fn safe_folder_name(title: &str) -> String {
    let options = sanitize_filename::Options {
        windows: true,
        truncate: true,
        replacement: "_",
    };
    let collapsed = title.split_whitespace().collect::<Vec<_>>().join(" ");
    // Windows drops trailing dots and spaces itself; drop them before, not as "_".
    let safe = sanitize_filename::sanitize_with_options(collapsed.trim_end_matches('.'), options);
    // Keep folder names readable in a file browser; 120 characters is plenty for a title.
    let safe: String = safe.chars().take(120).collect();
    let safe = safe.trim_end_matches(['.', ' ']).trim_start();
    if safe.is_empty() || safe.chars().all(|c| c == '_') {
        "stems".into()
    } else {
        safe.to_string()
    }
}

/// Runs `input`; `separator` is asked for the model only when something must be separated.
pub fn run_input(
    input: &Input,
    options: &RunOptions,
    sources: &Sources,
    separator: &dyn Fn(&dyn JobListener) -> Result<Arc<Separator>>,
    listener: &dyn JobListener,
) -> Result<Outcome> {
    let outcome = run_input_held(input, options, sources, separator, listener);
    // The allocator keeps a separation's large blocks for its next segment; between songs
    // they go back to the system.
    crate::memory::release_free_memory();
    outcome
}

fn run_input_held(
    input: &Input,
    options: &RunOptions,
    sources: &Sources,
    separator: &dyn Fn(&dyn JobListener) -> Result<Arc<Separator>>,
    listener: &dyn JobListener,
) -> Result<Outcome> {
    let source = match input {
        Input::File(path) if path.is_dir() => {
            return Err(stemdeck_audio::AudioError::Unreadable {
                path: path.clone(),
                reason: "it is a folder".into(),
            }
            .into());
        }
        Input::File(path) => SourceKey::of_file(path).map_err(EngineError::read(path))?,
        Input::Video(id) => SourceKey::Video {
            youtube: id.clone(),
        },
    };
    let key = ResultKey::new(
        source,
        SettingsKey::new(
            options.model,
            options.precision,
            options.apply,
            options.output,
        ),
    );

    let cached = options
        .reuse_cached
        .then(|| sources.results.lookup(&key))
        .flatten();
    if let Some(hit) = cached {
        listener.on_event(JobEvent::SourceReady {
            title: hit.title.clone(),
        });
        let stored = hit.analysis.clone();
        let mut outcome = reuse(hit, options)?;
        outcome.mixes = mix_cached(&outcome, input, options.output, listener)?;
        outcome.analysis = match stored {
            Some(analysis) => Some(analysis),
            // Stored before songs were analysed: measured now, and remembered.
            None => {
                let analysis = analysis_of(&outcome.stems, listener)?;
                sources
                    .results
                    .record(&key, &outcome.title, &outcome.stems, analysis.as_ref());
                analysis
            }
        };
        listener.on_event(JobEvent::Finished {
            input: input_path(input),
            stems: outcome.stems.iter().map(|s| s.path.clone()).collect(),
        });
        return Ok(outcome);
    }

    let (audio, title) = match input {
        Input::File(path) => (
            path.clone(),
            crate::pipeline::separate::output_folder_name(path),
        ),
        Input::Video(id) => {
            let downloaded = sources.links.fetch(id, listener)?;
            (downloaded.file, downloaded.title)
        }
    };
    listener.on_event(JobEvent::SourceReady {
        title: title.clone(),
    });
    if listener.is_cancelled() {
        return Err(EngineError::Cancelled);
    }
    let separator = separator(listener)?;
    let dir = (options.folder_for)(&safe_folder_name(&title));
    let tags = Tags {
        title: Some(title.clone()),
        stem: None,
        source: Some(input_path(input).display().to_string()),
    };
    let written = separator.separate_file_into(
        &audio,
        &dir,
        options.apply,
        options.output,
        &tags,
        listener,
    )?;
    let stems: Vec<StemFile> = written.stems.into_iter().map(StemFile::from_path).collect();
    let analysis = match written.analysis {
        // Measured alongside the separation: the stage still shows, already over.
        Some(analysis) => {
            listener.on_event(JobEvent::Analysing);
            Some(analysis)
        }
        None => analysis_of(&stems, listener)?,
    };
    sources
        .results
        .record(&key, &title, &stems, analysis.as_ref());
    Ok(Outcome {
        title,
        dir,
        stems,
        mixes: written.mixes,
        from_cache: false,
        analysis,
    })
}

/// The stems' analysis. Only a cancel stops the job here: stems that cannot be measured
/// are still good stems.
fn analysis_of(
    stems: &[StemFile],
    listener: &dyn JobListener,
) -> Result<Option<stemdeck_analysis::Analysis>> {
    match crate::pipeline::analyse::analyse_stems(stems, listener) {
        Ok(analysis) => Ok(Some(analysis)),
        Err(EngineError::Cancelled) => Err(EngineError::Cancelled),
        Err(e) => {
            tracing::warn!("cannot analyse the stems: {e}");
            Ok(None)
        }
    }
}

/// The requested mixes of stored stems, made from their files.
fn mix_cached(
    outcome: &Outcome,
    input: &Input,
    output: &OutputOptions,
    listener: &dyn JobListener,
) -> Result<Vec<PathBuf>> {
    let names: Vec<String> = outcome.stems.iter().map(|s| s.name.clone()).collect();
    let mut mixes = Vec::new();
    for recipe in &output.mixes {
        let gains = recipe.gains(&names)?;
        let path = outcome
            .dir
            .join(recipe.file_name(output.format.extension()));
        listener.on_event(JobEvent::Writing { path: path.clone() });
        let tags = Tags {
            title: Some(outcome.title.clone()),
            stem: Some(recipe.spec().to_string()),
            source: Some(input_path(input).display().to_string()),
        };
        mixes.push(mix_files(&outcome.stems, &gains, &path, output, &tags)?);
    }
    Ok(mixes)
}

fn input_path(input: &Input) -> PathBuf {
    match input {
        Input::File(path) => path.clone(),
        Input::Video(id) => PathBuf::from(id.watch_url()),
    }
}

/// Stored stems as this job's result: used where they are when they already live under
/// the output folder, else copied into this job's folder.
fn reuse(hit: crate::pipeline::cache::CachedResult, options: &RunOptions) -> Result<Outcome> {
    let existing_dir = hit.stems[0].path.parent().map(Path::to_path_buf);
    let in_place = existing_dir.as_ref().is_some_and(|dir| {
        dir.parent() == Some(options.output_root)
            && hit.stems.iter().all(|s| s.path.parent() == Some(dir))
    });
    if in_place {
        return Ok(Outcome {
            title: hit.title,
            dir: existing_dir.expect("checked above"),
            stems: hit.stems,
            mixes: Vec::new(),
            from_cache: true,
            analysis: None,
        });
    }
    let dir = (options.folder_for)(&safe_folder_name(&hit.title));
    let mut stems = Vec::new();
    for stem in &hit.stems {
        let name = stem.path.file_name().expect("stems are files");
        let target = dir.join(name);
        stemdeck_audio::write_atomically(&target, |mut file| {
            let mut from =
                std::fs::File::open(&stem.path).map_err(EngineError::read(&stem.path))?;
            std::io::copy(&mut from, &mut file).map_err(EngineError::write(&target))?;
            Ok::<(), EngineError>(())
        })?;
        stems.push(StemFile {
            name: stem.name.clone(),
            path: target,
        });
    }
    Ok(Outcome {
        title: hit.title,
        dir,
        stems,
        mixes: Vec::new(),
        from_cache: true,
        analysis: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_become_folder_names_that_every_system_accepts() {
        let cases = [
            (
                "AC/DC - Back In Black (Official Video)",
                "AC_DC - Back In Black (Official Video)",
            ),
            (
                "What? <Live> \"2024\" | Remix*",
                "What_ _Live_ _2024_ _ Remix_",
            ),
            ("C:\\music\\song", "C__music_song"),
            ("tabs\tand\nnewlines   here", "tabs and newlines here"),
            ("trailing dots...", "trailing dots"),
            ("CON", "_"),
            ("Björk – Jóga", "Björk – Jóga"),
            ("..", "stems"),
            ("", "stems"),
            ("???", "stems"),
        ];
        for (title, expected) in cases {
            let got = safe_folder_name(title);
            // Windows' reserved device names are replaced whole; only assert they changed.
            if title == "CON" {
                assert_ne!(got.to_ascii_uppercase(), "CON");
                continue;
            }
            assert_eq!(got, expected, "{title:?}");
        }
        let long = "x".repeat(400);
        assert_eq!(safe_folder_name(&long).chars().count(), 120);
    }

    #[test]
    fn only_identical_settings_share_a_key() {
        let named = ModelChoice::Named("htdemucs".into());
        let apply = ApplyOptions::default();
        let output = OutputOptions::default();
        let exact = Precision::Exact;
        let base = SettingsKey::new(&named, exact, &apply, &output);
        assert_eq!(base, SettingsKey::new(&named, exact, &apply, &output));
        let other_model = ModelChoice::Named("htdemucs_6s".into());
        let more_overlap = ApplyOptions {
            overlap: 0.5,
            ..Default::default()
        };
        let karaoke = OutputOptions {
            two_stems: Some("vocals".into()),
            ..Default::default()
        };
        for key in [
            SettingsKey::new(&other_model, exact, &apply, &output),
            SettingsKey::new(&named, Precision::Fast, &apply, &output),
            SettingsKey::new(&named, exact, &more_overlap, &output),
            SettingsKey::new(&named, exact, &apply, &karaoke),
        ] {
            assert_ne!(key, base);
        }
    }
}
