//! One separation job: decode a file, run the model, write the stems.

use std::path::{Path, PathBuf};

use stemdeck_audio::{AudioBuffer, AudioWriter, Tags};
use stemdeck_demucs::{
    ApplyOptions, BagOfModels, DemucsError, MixStats, Planar, Precision, Progress,
    SeparationListener, StemSink,
};

use crate::device::DeviceChoice;
use crate::error::{EngineError, Result};
use crate::events::{JobEvent, JobListener, StemsChunk};
use crate::models::manifest;
use crate::models::store::{ModelStore, load_bag};
use crate::outputs::mix::mix_planar;
use crate::pipeline::analyse::AnalysisAlongside;
use crate::pipeline::options::{OutputOptions, level_gain};
use crate::pipeline::spill::{SpillDir, SpillFile, SpillWriter};
use stemdeck_audio::LevelGain;

/// Which model to run.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelChoice {
    /// A model of the manifest, from the store (downloaded when missing).
    Named(String),
    /// A local checkpoint file (`.safetensors` or official `.th`).
    Weights(PathBuf),
}

/// The files one separation wrote.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WrittenFiles {
    pub stems: Vec<PathBuf>,
    pub mixes: Vec<PathBuf>,
    /// The stems' analysis, measured while they were separated; `None` when the files
    /// differ from the separated audio by more than rounding (a level change or clamping),
    /// so that they must be measured themselves.
    pub analysis: Option<stemdeck_analysis::Analysis>,
}

/// A loaded model, ready to separate any number of files.
pub struct Separator {
    bag: BagOfModels,
    name: String,
    /// The SHA-256 of the checkpoint files, for a job's record of what made it.
    model_sha256: Option<String>,
}

impl Separator {
    pub fn load(
        choice: &ModelChoice,
        device: DeviceChoice,
        precision: Precision,
        store: &ModelStore,
        listener: &dyn JobListener,
    ) -> Result<Self> {
        let device = device.open()?;
        match choice {
            ModelChoice::Weights(path) => {
                listener.on_event(JobEvent::LoadingModel);
                let bag = load_bag(std::slice::from_ref(path), None, &device, precision)?;
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Ok(Self {
                    bag,
                    name,
                    model_sha256: files_sha256(std::slice::from_ref(path)),
                })
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
                let bag = load_bag(&paths, info.weights.clone(), &device, precision)?;
                Ok(Self {
                    bag,
                    name: info.name,
                    model_sha256: files_sha256(&paths),
                })
            }
        }
    }

    pub fn from_bag(bag: BagOfModels, name: impl Into<String>) -> Self {
        Self {
            bag,
            name: name.into(),
            model_sha256: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SHA-256 of the files it was loaded from (joined by `+` for a bag).
    pub fn model_sha256(&self) -> Option<&str> {
        self.model_sha256.as_deref()
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
    /// them; `tags` names the song and its source in every file. On failure or cancel
    /// nothing written by this call is left behind.
    ///
    /// The track streams through in bounded memory: it is decoded (and resampled) into a
    /// temporary file, separated a window at a time, and each output spilled to a
    /// temporary file of its own until its peak is known; the files are then written from
    /// those. [`JobListener::on_stems`] hears each stretch of the stems once final.
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
        let kept_source = match &output.two_stems {
            Some(source) => Some(self.sources().iter().position(|s| s == source).ok_or_else(
                || EngineError::UnknownSource {
                    model: self.name.clone(),
                    source_name: source.clone(),
                    sources: self.sources().join(", "),
                },
            )?),
            None => None,
        };
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
        let rate = self.bag.samplerate() as u32;
        let mut decoded = stemdeck_audio::open_for_model(input, rate)?;
        let created_dir = !stem_dir.exists();
        let mut written = WrittenFiles::default();
        let job = Job {
            input,
            dir: stem_dir,
            rate,
            output,
            tags,
            stem_names: &stem_names,
            kept_source,
            mix_gains: &mix_gains,
            listener,
        };
        match self.run_job(&job, &mut decoded, apply, &mut written) {
            Ok(()) => {
                listener.on_event(JobEvent::Finished {
                    input: input.to_owned(),
                    stems: written.stems.clone(),
                });
                Ok(written)
            }
            Err(e) => {
                for path in written.stems.iter().chain(&written.mixes) {
                    let _ = std::fs::remove_file(path);
                }
                if created_dir {
                    let _ = std::fs::remove_dir(stem_dir);
                }
                Err(e)
            }
        }
    }

    /// Decode into a spill, separate into spills, write the files. The spill folder (and
    /// everything in it) goes when this returns.
    fn run_job(
        &self,
        job: &Job,
        decoded: &mut stemdeck_audio::ModelStream,
        apply: &ApplyOptions,
        written: &mut WrittenFiles,
    ) -> Result<()> {
        let spill = SpillDir::new(job.dir)?;
        let mut mix = spill.create("mix", self.bag.audio_channels())?;
        while let Some(block) = decoded.next_block()? {
            if job.listener.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            mix.write(&block)?;
        }
        let mix = mix.finish()?;
        let stats = MixStats::of_reader(&mix).map_err(from_separation)?;

        let channels = self.bag.audio_channels();
        let mut sink = JobSink {
            job,
            total_frames: mix.frames() as usize,
            stems: (0..job.stem_names.len())
                .map(|i| spill.create(&format!("stem{i}"), channels))
                .collect::<Result<_>>()?,
            mixes: (0..job.mix_gains.len())
                .map(|i| spill.create(&format!("mix{i}"), channels))
                .collect::<Result<_>>()?,
            analysis: AnalysisAlongside::start(job.stem_names, channels, job.rate),
        };
        let progress = ProgressBridge {
            input: job.input,
            listener: job.listener,
        };
        stemdeck_demucs::separate_streaming(&self.bag, &mix, stats, apply, &progress, &mut sink)
            .map_err(from_separation)?;
        mix.discard();
        let analysis = sink.analysis.take().and_then(AnalysisAlongside::finish);
        let stems = finish_all(sink.stems)?;
        let mixes = finish_all(sink.mixes)?;

        let extension = job.output.format.extension();
        // Mixes come from the stems as separated, before each stem's own level handling.
        for (recipe, spilled) in job.output.mixes.iter().zip(mixes) {
            let path = job.dir.join(recipe.file_name(extension));
            let tags = Tags {
                stem: Some(recipe.spec().to_string()),
                ..job.tags.clone()
            };
            job.write_file(&path, spilled, &tags)?;
            written.mixes.push(path);
        }
        let mut levels_kept = true;
        for (name, spilled) in job.stem_names.iter().zip(stems) {
            let path = job.dir.join(format!("{name}.{extension}"));
            let tags = Tags {
                stem: Some(name.clone()),
                ..job.tags.clone()
            };
            levels_kept &= job.write_file(&path, spilled, &tags)? == LevelGain::Keep;
            written.stems.push(path);
        }
        written.analysis = analysis.filter(|_| levels_kept);
        Ok(())
    }
}

/// What one file job writes, and for whom.
struct Job<'a> {
    input: &'a Path,
    dir: &'a Path,
    rate: u32,
    output: &'a OutputOptions,
    tags: &'a Tags,
    stem_names: &'a [String],
    /// With two stems, the source kept as it is; the others are summed.
    kept_source: Option<usize>,
    mix_gains: &'a [Vec<f32>],
    listener: &'a dyn JobListener,
}

/// Frames read back from a spill at a time when writing the files.
const WRITE_BLOCK: usize = 1 << 16;

impl Job<'_> {
    /// Writes one output from its spill, its level finished from its peak, as
    /// [`finish_levels`] and `write_audio` would from the whole buffer; returns the level
    /// change it made.
    fn write_file(&self, path: &Path, spilled: SpillFile, tags: &Tags) -> Result<LevelGain> {
        if self.listener.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        self.listener.on_event(JobEvent::Writing {
            path: path.to_owned(),
        });
        let gain = level_gain(spilled.peak(), self.output);
        let mut writer = AudioWriter::create(
            path,
            self.output.format,
            self.rate,
            spilled.channels(),
            tags,
            Some(spilled.frames()),
        )?;
        let mut start = 0;
        while start < spilled.frames() {
            if self.listener.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            let len = (spilled.frames() - start).min(WRITE_BLOCK as u64) as usize;
            let mut block = spilled.read_block(start, len)?;
            block.iter_mut().for_each(|c| gain.apply(c));
            writer.write(&block)?;
            start += len as u64;
        }
        writer.finish()?;
        spilled.discard();
        Ok(gain)
    }
}

/// Takes the separation's finished chunks: makes the job's stems of them (two stems
/// applied), tells the listener, and spills each stem and each mix.
struct JobSink<'a> {
    job: &'a Job<'a>,
    total_frames: usize,
    stems: Vec<SpillWriter>,
    mixes: Vec<SpillWriter>,
    analysis: Option<AnalysisAlongside>,
}

impl JobSink<'_> {
    fn take(&mut self, start_frame: usize, sources: &[Planar]) -> Result<()> {
        let combined;
        let stems = match self.job.kept_source {
            Some(kept) => {
                combined = two_stems_planar(sources, kept);
                combined.as_slice()
            }
            None => sources,
        };
        self.job.listener.on_stems(&StemsChunk {
            start_frame,
            total_frames: self.total_frames,
            sample_rate: self.job.rate,
            names: self.job.stem_names,
            stems,
        });
        if let Some(analysis) = &self.analysis {
            analysis.push(stems);
        }
        for (spill, stem) in self.stems.iter_mut().zip(stems) {
            spill.write(stem)?;
        }
        let planar: Vec<&[Vec<f32>]> = stems.iter().map(Vec::as_slice).collect();
        for (spill, gains) in self.mixes.iter_mut().zip(self.job.mix_gains) {
            spill.write(&mix_planar(&planar, gains))?;
        }
        Ok(())
    }
}

impl StemSink for JobSink<'_> {
    fn write(&mut self, start_frame: usize, stems: &[Planar]) -> stemdeck_demucs::Result<()> {
        self.take(start_frame, stems)
            .map_err(|e| DemucsError::External(Box::new(e)))
    }
}

fn finish_all(spills: Vec<SpillWriter>) -> Result<Vec<SpillFile>> {
    spills.into_iter().map(SpillWriter::finish).collect()
}

/// A separation error as the job reports it: a cancel as a cancel, and the job's own
/// failures (a spill file that cannot be written) as they were raised.
fn from_separation(e: DemucsError) -> EngineError {
    match e {
        DemucsError::Cancelled => EngineError::Cancelled,
        DemucsError::External(inner) => match inner.downcast::<EngineError>() {
            Ok(own) => *own,
            Err(other) => EngineError::Separation(DemucsError::External(other)),
        },
        other => EngineError::Separation(other),
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
            add_into(&mut acc.channels, &audio.channels);
        } else {
            rest = Some(audio);
        }
    }
    keep.into_iter()
        .chain(rest.map(|r| (format!("no_{source}"), r)))
        .collect()
}

/// [`two_stems`] of one chunk of separated sources: source `kept`, then the others summed
/// in the same order.
fn two_stems_planar(sources: &[Planar], kept: usize) -> Vec<Planar> {
    let mut rest: Option<Planar> = None;
    for (i, source) in sources.iter().enumerate() {
        if i == kept {
            continue;
        }
        match rest.as_mut() {
            Some(acc) => add_into(acc, source),
            None => rest = Some(source.clone()),
        }
    }
    std::iter::once(sources[kept].clone()).chain(rest).collect()
}

fn add_into(acc: &mut [Vec<f32>], other: &[Vec<f32>]) {
    for (a, b) in acc.iter_mut().zip(other) {
        a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
    }
}

/// The folder name for an input's stems: its file name without the extension.
pub fn output_folder_name(input: &Path) -> String {
    input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "stems".into())
}

/// The checkpoints' SHA-256s joined by `+`; `None` when one cannot be read again (the
/// model is loaded already, so this only loses the record).
fn files_sha256(paths: &[PathBuf]) -> Option<String> {
    let hashes = paths
        .iter()
        .map(|p| crate::hash::sha256_file(p).ok())
        .collect::<Option<Vec<_>>>()?;
    Some(hashes.join("+"))
}
