//! One separation job: decode a file, run the model, write the stems.

use std::path::{Path, PathBuf};

use stemdeck_audio::{
    AudioBuffer, ClipMode, OutputFormat, Tags, load_for_model, normalize_peak, prevent_clip,
    write_audio,
};
use stemdeck_demucs::{ApplyOptions, BagOfModels, Device, Progress, SeparationListener};

use crate::error::{EngineError, Result};
use crate::manifest;
use crate::mix::{MixRecipe, write_mix};
use crate::store::{ModelStore, load_bag};

/// Which model to run.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelChoice {
    /// A model of the manifest, from the store (downloaded when missing).
    Named(String),
    /// A local checkpoint file (`.safetensors` or official `.th`).
    Weights(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Cpu,
    Cuda,
    Metal,
}

impl DeviceChoice {
    pub fn open(self) -> Result<Device> {
        let unavailable = |device: &str, reason: String| EngineError::DeviceUnavailable {
            device: device.into(),
            reason,
        };
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda if cfg!(feature = "cuda") => {
                Device::new_cuda(0).map_err(|e| unavailable("CUDA GPU", e.to_string()))
            }
            DeviceChoice::Cuda => Err(unavailable(
                "CUDA",
                "this build of Stemdeck was made without CUDA support".into(),
            )),
            DeviceChoice::Metal if cfg!(feature = "metal") => {
                Device::new_metal(0).map_err(|e| unavailable("Metal GPU", e.to_string()))
            }
            DeviceChoice::Metal => Err(unavailable(
                "Metal",
                "this build of Stemdeck was made without Metal support".into(),
            )),
        }
    }
}

/// What a job reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    DownloadingModel {
        file: String,
        bytes: u64,
        total: Option<u64>,
    },
    /// The audio of a linked video is being downloaded (`bytes` of `total`).
    DownloadingAudio {
        video: String,
        backend: String,
        bytes: u64,
        total: Option<u64>,
    },
    /// The input's title is known (a video's, once fetched).
    SourceReady {
        title: String,
    },
    LoadingModel,
    Decoding {
        input: PathBuf,
    },
    Separating {
        input: PathBuf,
        progress: Progress,
    },
    Writing {
        path: PathBuf,
    },
    Finished {
        input: PathBuf,
        stems: Vec<PathBuf>,
    },
}

/// Receives job events and is polled for cancellation. Shared by the CLI and the app.
pub trait JobListener: Sync {
    fn on_event(&self, _event: JobEvent) {}
    fn is_cancelled(&self) -> bool {
        false
    }
}

/// How stems are written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OutputOptions {
    pub format: OutputFormat,
    pub clip: ClipMode,
    /// Scale each file so that its peak sits at this level (dBFS) instead of only keeping it
    /// from clipping. `None`, the default, keeps the stems adding up to the mix.
    pub normalize_dbfs: Option<f32>,
    /// Write only this source and the sum of all others (`no_<source>`).
    pub two_stems: Option<String>,
    /// Custom mixes written beside the stems (`mix-drums+bass.wav`).
    pub mixes: Vec<MixRecipe>,
}

/// Either normalises `audio` or keeps it from clipping, as `output` asks.
pub fn finish_levels(audio: &mut AudioBuffer, output: &OutputOptions) {
    match output.normalize_dbfs {
        Some(dbfs) => normalize_peak(audio, dbfs),
        None => prevent_clip(audio, output.clip),
    }
}

/// The files one separation wrote.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WrittenFiles {
    pub stems: Vec<PathBuf>,
    pub mixes: Vec<PathBuf>,
}

/// A loaded model, ready to separate any number of files.
pub struct Separator {
    bag: BagOfModels,
    name: String,
}

impl Separator {
    pub fn load(
        choice: &ModelChoice,
        device: DeviceChoice,
        store: &ModelStore,
        listener: &dyn JobListener,
    ) -> Result<Self> {
        let device = device.open()?;
        match choice {
            ModelChoice::Weights(path) => {
                listener.on_event(JobEvent::LoadingModel);
                let bag = load_bag(std::slice::from_ref(path), None, &device)?;
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Ok(Self { bag, name })
            }
            ModelChoice::Named(name) => {
                let info = manifest::find(name)?;
                let paths = store.ensure(
                    &info,
                    &|file, bytes, total| {
                        listener.on_event(JobEvent::DownloadingModel {
                            file: file.name.clone(),
                            bytes,
                            total,
                        })
                    },
                    &|| listener.is_cancelled(),
                )?;
                listener.on_event(JobEvent::LoadingModel);
                let bag = load_bag(&paths, info.weights.clone(), &device)?;
                Ok(Self {
                    bag,
                    name: info.name,
                })
            }
        }
    }

    pub fn from_bag(bag: BagOfModels, name: impl Into<String>) -> Self {
        Self {
            bag,
            name: name.into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn sources(&self) -> &[String] {
        self.bag.sources()
    }

    pub fn bag(&self) -> &BagOfModels {
        &self.bag
    }

    /// Separates decoded audio (any rate) into named stems at the model's rate.
    pub fn separate_audio(
        &self,
        audio: &AudioBuffer,
        apply: &ApplyOptions,
        listener: &dyn SeparationListener,
    ) -> Result<Vec<(String, AudioBuffer)>> {
        let rate = self.bag.samplerate() as u32;
        // Files arrive already at the model's rate (load_for_model); copy only to convert.
        let resampled;
        let channels = if audio.sample_rate == rate {
            &audio.channels
        } else {
            resampled = stemdeck_audio::resample(audio.clone(), rate)?;
            &resampled.channels
        };
        let sources = stemdeck_demucs::separate(&self.bag, channels, apply, listener)?;
        Ok(self
            .bag
            .sources()
            .iter()
            .cloned()
            .zip(sources.into_iter().map(|s| AudioBuffer::new(rate, s)))
            .collect())
    }

    /// Separates `input` into `<out_dir>/<input file stem>/<stem>.<ext>`. On failure nothing
    /// written by this call is left behind.
    pub fn separate_file(
        &self,
        input: &Path,
        out_dir: &Path,
        apply: &ApplyOptions,
        output: &OutputOptions,
        listener: &dyn JobListener,
    ) -> Result<WrittenFiles> {
        let stem_dir = out_dir.join(output_folder_name(input));
        let tags = Tags {
            title: Some(output_folder_name(input)),
            stem: None,
            source: Some(input.display().to_string()),
        };
        self.separate_file_into(input, &stem_dir, apply, output, &tags, listener)
    }

    /// Separates `input` into `<stem_dir>/<stem>.<ext>` and the requested mixes beside
    /// them; `tags` names the song and its source in every file.
    pub fn separate_file_into(
        &self,
        input: &Path,
        stem_dir: &Path,
        apply: &ApplyOptions,
        output: &OutputOptions,
        tags: &Tags,
        listener: &dyn JobListener,
    ) -> Result<WrittenFiles> {
        output.format.validate()?;
        if let Some(source) = &output.two_stems
            && !self.sources().contains(source)
        {
            return Err(EngineError::UnknownSource {
                model: self.name.clone(),
                source_name: source.clone(),
                sources: self.sources().join(", "),
            });
        }
        let stem_names: Vec<String> = match &output.two_stems {
            Some(source) => vec![source.clone(), format!("no_{source}")],
            None => self.sources().to_vec(),
        };
        // A mix naming a stem this job will not have fails now, not after the separation.
        let mix_gains = output
            .mixes
            .iter()
            .map(|recipe| recipe.gains(&stem_names))
            .collect::<Result<Vec<_>>>()?;
        listener.on_event(JobEvent::Decoding {
            input: input.to_owned(),
        });
        let audio = load_for_model(input, self.bag.samplerate() as u32)?;
        let progress = ProgressBridge { input, listener };
        let stems = self
            .separate_audio(&audio, apply, &progress)
            .map_err(|e| match e {
                EngineError::Separation(stemdeck_demucs::DemucsError::Cancelled) => {
                    EngineError::Cancelled
                }
                other => other,
            })?;
        let stems = match &output.two_stems {
            Some(source) => two_stems(stems, source),
            None => stems,
        };
        write_outputs(stem_dir, stems, &mix_gains, output, tags, listener).inspect(|files| {
            listener.on_event(JobEvent::Finished {
                input: input.to_owned(),
                stems: files.stems.clone(),
            })
        })
    }
}

struct ProgressBridge<'a> {
    input: &'a Path,
    listener: &'a dyn JobListener,
}

impl SeparationListener for ProgressBridge<'_> {
    fn on_progress(&self, progress: Progress) {
        self.listener.on_event(JobEvent::Separating {
            input: self.input.to_owned(),
            progress,
        });
    }
    fn is_cancelled(&self) -> bool {
        self.listener.is_cancelled()
    }
}

/// `source` and `no_<source>`, the sum of every other stem, as demucs writes them.
pub fn two_stems(stems: Vec<(String, AudioBuffer)>, source: &str) -> Vec<(String, AudioBuffer)> {
    let mut keep = None;
    let mut rest: Option<AudioBuffer> = None;
    for (name, audio) in stems {
        if name == source {
            keep = Some((name, audio));
        } else if let Some(acc) = rest.as_mut() {
            for (a, b) in acc.channels.iter_mut().zip(&audio.channels) {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
            }
        } else {
            rest = Some(audio);
        }
    }
    keep.into_iter()
        .chain(rest.map(|r| (format!("no_{source}"), r)))
        .collect()
}

/// The folder name for an input's stems: its file name without the extension.
pub fn output_folder_name(input: &Path) -> String {
    input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "stems".into())
}

fn write_outputs(
    dir: &Path,
    stems: Vec<(String, AudioBuffer)>,
    mix_gains: &[Vec<f32>],
    output: &OutputOptions,
    tags: &Tags,
    listener: &dyn JobListener,
) -> Result<WrittenFiles> {
    let created_dir = !dir.exists();
    let mut written = WrittenFiles::default();
    let extension = output.format.extension();
    let result = (|| {
        // Mixes come from the stems as separated, before each stem's own level handling.
        let raw: Vec<&AudioBuffer> = stems.iter().map(|(_, audio)| audio).collect();
        for (recipe, gains) in output.mixes.iter().zip(mix_gains) {
            if listener.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            let path = dir.join(recipe.file_name(extension));
            listener.on_event(JobEvent::Writing { path: path.clone() });
            let tags = Tags {
                stem: Some(recipe.spec().to_string()),
                ..tags.clone()
            };
            write_mix(&path, &raw, gains, output, &tags)?;
            written.mixes.push(path);
        }
        drop(raw);
        for (name, mut audio) in stems {
            if listener.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            let path = dir.join(format!("{name}.{extension}"));
            listener.on_event(JobEvent::Writing { path: path.clone() });
            finish_levels(&mut audio, output);
            let tags = Tags {
                stem: Some(name),
                ..tags.clone()
            };
            write_audio(&path, &audio, output.format, &tags)?;
            written.stems.push(path);
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(written),
        Err(e) => {
            for path in written.stems.iter().chain(&written.mixes) {
                let _ = std::fs::remove_file(path);
            }
            if created_dir {
                let _ = std::fs::remove_dir(dir);
            }
            Err(e)
        }
    }
}
