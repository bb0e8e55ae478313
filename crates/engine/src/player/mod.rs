//! Listening to a job: its stems, read from disk a block at a time, in the synced mixer,
//! with waveform overviews and meters. A finished job plays from its files; a running
//! one from the chunks separated so far, up to the separated edge, and from its files
//! once it is done. Without a sound card it plays on a silent clock, so that the
//! transport still works while the user is told that nothing can be heard.

mod files;
pub mod live;
pub mod mix_state;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use stemdeck_analysis::Analysis;
use stemdeck_audio::MODEL_SAMPLE_RATE;
use stemdeck_playback::{
    AudioOutput, BeatGrid, MeterLevel, MixerControl, MixerRenderer, OutputDevice, OutputError,
    SilentOutput, StemSource, TempoPitch, mixer,
};

use crate::error::{EngineError, Result};
use crate::jobs::library::Job;
use crate::pipeline::StemFile;

pub use files::load_stem_files;
pub use live::{LiveEnd, LiveStems};
pub use mix_state::{MixPreset, MixSettings, Practice, StemMix};
pub use store::{PEAK_BUCKETS, StemStore};

/// Picks the output: `STEMDECK_AUDIO_OUTPUT=none` forces the silent clock, any other value
/// names a device (`null` is ALSA's unpaced sink); unset means the system default.
pub const AUDIO_OUTPUT_ENV: &str = "STEMDECK_AUDIO_OUTPUT";

/// The one sentence the mixer shows when nothing can be heard.
pub const NO_SOUND_NOTICE: &str = "No sound output found: playback is silent";

/// What the results view draws for one stem.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct StemOverview {
    pub name: String,
    /// The stem's file, once the job has written it.
    pub path: Option<PathBuf>,
    /// `[min, max]` per bucket, over both channels; zero where nothing is separated yet.
    pub peaks: Vec<[f32; 2]>,
}

/// Where the sound goes.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct OutputStatus {
    /// The device's name, or `None` when playback is silent.
    pub device: Option<String>,
    /// [`NO_SOUND_NOTICE`] when there is no sound; `None` when there is.
    pub problem: Option<String>,
    /// The system's own account of why, for the curious.
    pub details: Option<String>,
}

/// One meter reading, linear (1.0 is full scale).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Meter {
    pub peak: f32,
    pub rms: f32,
}

impl From<MeterLevel> for Meter {
    fn from(level: MeterLevel) -> Self {
        Self {
            peak: level.peak,
            rms: level.rms,
        }
    }
}

/// Kept only so that dropping the player stops the sound.
enum Sink {
    Device { _output: AudioOutput },
    Silent { _clock: SilentOutput },
}

/// A running job the player follows until it can switch to the job's files.
struct Following {
    live: Arc<LiveStems>,
    /// The finished files being decoded, with the stems they hold.
    finals: Option<(Arc<StemStore>, Vec<StemFile>)>,
}

/// A job's stems, ready to play.
pub struct StemPlayer {
    job_id: u64,
    control: MixerControl,
    store: Arc<StemStore>,
    paths: Vec<Option<PathBuf>>,
    following: Option<Following>,
    ended: Option<String>,
    scratch: PathBuf,
    mix: MixSettings,
    output: OutputStatus,
    /// The song's tempo, key and loudness, once analysed.
    analysis: Option<Analysis>,
    // Dropped last: the control (and its feeder) go first.
    _sink: Sink,
}

/// The mixer's state as the UI shows it, about 30 times a second.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PlayerState {
    pub job_id: u64,
    pub position_secs: f64,
    pub duration_secs: f64,
    /// How far the audio exists: the separated edge while the job runs.
    pub edge_secs: f64,
    /// True while the job is still separating.
    pub separating: bool,
    pub playing: bool,
    /// Playing, but held at the separated edge until more is separated.
    pub waiting: bool,
    /// The gain the renderer applies to each stem now, mute and solo included.
    pub levels: Vec<f32>,
    pub meters: Vec<Meter>,
    pub master: Meter,
    /// Changes whenever the waveform overviews grew.
    pub overview_version: u64,
    /// Why the player can go no further (the job was cancelled or failed).
    pub ended: Option<String>,
    /// The tempo (1.0 is the original speed) and transposition in semitones that the
    /// renderer applies now.
    pub tempo: f32,
    pub semitones: f32,
    /// A count-in bar is playing; the song waits.
    pub counting_in: bool,
    /// The song's own tempo, once analysed (the click and count-in need it).
    pub song_bpm: Option<f64>,
}

impl StemPlayer {
    /// Opens a finished job's stems; the files are decoded into `scratch` as they play.
    pub fn open(job: &Job, scratch: &Path) -> Result<Self> {
        if job.stems.is_empty() {
            return Err(EngineError::NothingToPlay {
                title: job.title.clone(),
            });
        }
        let store = load_stem_files(&job.stems, scratch, MODEL_SAMPLE_RATE, None)?;
        let paths = job.stems.iter().map(|s| Some(s.path.clone())).collect();
        Self::start(job, store, paths, None, scratch)
    }

    /// Opens a running job's stems as far as they are separated, then its files.
    pub fn open_live(job: &Job, live: Arc<LiveStems>, scratch: &Path) -> Result<Self> {
        let store = live.store().clone();
        let paths = vec![None; store.names().len()];
        let following = Following { live, finals: None };
        Self::start(job, store, paths, Some(following), scratch)
    }

    fn start(
        job: &Job,
        store: Arc<StemStore>,
        paths: Vec<Option<PathBuf>>,
        following: Option<Following>,
        scratch: &Path,
    ) -> Result<Self> {
        let rate = store.sample_rate();
        let preference = std::env::var(AUDIO_OUTPUT_ENV).unwrap_or_default();
        let device = match preference.as_str() {
            "none" => Err(OutputError::NoDevice),
            "" => OutputDevice::default_output(rate),
            id => OutputDevice::by_id(id, rate),
        };
        let (control, renderer) = mixer(store.clone(), rate);
        let (sink, output) = match device {
            Ok(device) => match device.start(renderer) {
                Ok(out) => {
                    let device = Some(out.device_name().to_string());
                    (
                        Sink::Device { _output: out },
                        OutputStatus {
                            device,
                            problem: None,
                            details: None,
                        },
                    )
                }
                Err(failure) => match failure.renderer {
                    Some(renderer) => silent(*renderer, rate, &failure.error),
                    None => return Err(failure.error.into()),
                },
            },
            Err(error) => silent(renderer, rate, &error),
        };
        let mix = MixSettings::neutral(store.names());
        let mut player = Self {
            job_id: job.id,
            control,
            store,
            paths,
            following,
            ended: None,
            scratch: scratch.to_owned(),
            mix,
            output,
            analysis: None,
            _sink: sink,
        };
        if let Some(remembered) = &job.mix {
            player.apply_mix(remembered)?;
        }
        if let Some(analysis) = &job.analysis {
            player.set_analysis(analysis);
        }
        Ok(player)
    }

    pub fn job_id(&self) -> u64 {
        self.job_id
    }

    /// The stems' overviews as far as they exist.
    pub fn stems(&self) -> Vec<StemOverview> {
        self.store
            .names()
            .iter()
            .zip(&self.paths)
            .zip(self.store.peaks())
            .map(|((name, path), peaks)| StemOverview {
                name: name.clone(),
                path: path.clone(),
                peaks,
            })
            .collect()
    }

    /// The stems' files, once the job wrote them.
    pub fn files(&self) -> Option<Vec<StemFile>> {
        self.store
            .names()
            .iter()
            .zip(&self.paths)
            .map(|(name, path)| {
                path.clone().map(|path| StemFile {
                    name: name.clone(),
                    path,
                })
            })
            .collect()
    }

    pub fn output(&self) -> &OutputStatus {
        &self.output
    }

    /// The mixer's settings as the user left them.
    pub fn mix(&self) -> &MixSettings {
        &self.mix
    }

    /// Follows a running job: switches to its files once they are decoded, or notes why
    /// it ended without them. Call it regularly (each UI tick does).
    pub fn follow_job(&mut self) {
        let Some(following) = self.following.as_mut() else {
            return;
        };
        match following.live.end() {
            LiveEnd::Running => {}
            LiveEnd::Gone(reason) => {
                self.ended = Some(reason);
                self.following = None;
                return;
            }
            LiveEnd::Done(stems) if following.finals.is_none() => {
                let frames = self.store.frames();
                match load_stem_files(
                    &stems,
                    &self.scratch,
                    self.store.sample_rate(),
                    Some(frames),
                ) {
                    Ok(store) => following.finals = Some((store, stems)),
                    Err(e) => {
                        // The separated audio is the same music; play on from it.
                        tracing::warn!("staying on the separated audio: {e}");
                        self.following = None;
                        return;
                    }
                }
            }
            LiveEnd::Done(_) => {}
        }
        let ready = following
            .finals
            .as_ref()
            .is_some_and(|(store, _)| store.is_complete());
        if ready && let Some((store, stems)) = following.finals.take() {
            match self.control.set_source(store.clone()) {
                Ok(()) => {
                    self.store = store;
                    self.paths = stems.into_iter().map(|s| Some(s.path)).collect();
                }
                Err(e) => tracing::warn!("staying on the separated audio: {e}"),
            }
            self.following = None;
        }
    }

    pub fn state(&self) -> PlayerState {
        let rate = self.control.sample_rate().max(1) as f64;
        PlayerState {
            job_id: self.job_id,
            position_secs: self.control.position() as f64 / rate,
            duration_secs: self.control.frames() as f64 / rate,
            edge_secs: self.control.edge() as f64 / rate,
            separating: self.following.is_some(),
            playing: self.control.is_playing(),
            waiting: self.control.is_waiting(),
            levels: self.control.levels(),
            meters: self.control.meters().into_iter().map(Meter::from).collect(),
            master: self.control.master_meter().into(),
            overview_version: self.store.version(),
            ended: self.ended.clone(),
            tempo: self.control.tempo_pitch().tempo,
            semitones: self.control.tempo_pitch().semitones,
            counting_in: self.control.is_counting_in(),
            song_bpm: self
                .analysis
                .as_ref()
                .and_then(|a| a.tempo.as_ref())
                .map(|t| t.bpm),
        }
    }

    /// Gives the click and the count-in the song's beats (once, when the analysis is
    /// there; later calls change nothing).
    pub fn set_analysis(&mut self, analysis: &Analysis) {
        if self.analysis.is_some() {
            return;
        }
        self.analysis = Some(analysis.clone());
        let Some(tempo) = &analysis.tempo else {
            return;
        };
        let rate = self.control.sample_rate() as f64;
        self.control.set_beats(Some(BeatGrid {
            bpm: tempo.bpm,
            frames: tempo
                .beats
                .iter()
                .map(|s| (s.max(0.0) * rate).round() as u64)
                .collect(),
        }));
    }

    /// Tempo, pitch, click and count-in, in range.
    pub fn set_practice(&mut self, practice: Practice) -> Result<()> {
        let settings = TempoPitch {
            tempo: practice.tempo,
            semitones: practice.semitones,
        }
        .clamped();
        self.control.set_tempo_pitch(settings)?;
        self.control
            .set_click(practice.click, practice.click_volume)?;
        self.control.set_count_in(practice.count_in)?;
        self.mix.practice = Some(Practice {
            tempo: settings.tempo,
            semitones: settings.semitones,
            click_volume: practice.click_volume.clamp(0.0, 1.0),
            ..practice
        });
        Ok(())
    }

    pub fn analysis(&self) -> Option<&Analysis> {
        self.analysis.as_ref()
    }

    pub fn practice(&self) -> Practice {
        self.mix.practice.unwrap_or_default()
    }

    pub fn play(&mut self) -> Result<()> {
        self.control.play().map_err(EngineError::from)
    }

    pub fn pause(&mut self) -> Result<()> {
        self.control.pause().map_err(EngineError::from)
    }

    /// Moves to `secs`, or as far as the audio exists; returns where it moved to.
    pub fn seek(&mut self, secs: f64) -> Result<f64> {
        let frame = self.frames_at(secs);
        let moved = self.control.seek(frame).map_err(EngineError::from)?;
        Ok(moved as f64 / self.control.sample_rate().max(1) as f64)
    }

    pub fn set_gain(&mut self, stem: usize, gain: f32) -> Result<()> {
        self.control.set_gain(stem, gain)?;
        self.mix.stems[stem].gain = gain.max(0.0);
        Ok(())
    }

    pub fn set_mute(&mut self, stem: usize, muted: bool) -> Result<()> {
        self.control.set_mute(stem, muted)?;
        self.mix.stems[stem].muted = muted;
        Ok(())
    }

    pub fn set_solo(&mut self, stem: usize, soloed: bool) -> Result<()> {
        self.control.set_solo(stem, soloed)?;
        self.mix.stems[stem].soloed = soloed;
        Ok(())
    }

    pub fn set_pan(&mut self, stem: usize, pan: f32) -> Result<()> {
        self.control.set_pan(stem, pan)?;
        self.mix.stems[stem].pan = if pan.is_finite() {
            pan.clamp(-1.0, 1.0)
        } else {
            0.0
        };
        Ok(())
    }

    /// Loops `[start, end)` in seconds; `None` clears the loop.
    pub fn set_loop(&mut self, region: Option<(f64, f64)>) -> Result<()> {
        let frames = region.map(|(start, end)| (self.frames_at(start), self.frames_at(end)));
        self.control.set_loop(frames)?;
        self.mix.loop_secs = region;
        Ok(())
    }

    /// Applies a whole mix (a preset, or the one remembered for the song), matching its
    /// stems by name; stems it does not name play as they are.
    pub fn apply_mix(&mut self, mix: &MixSettings) -> Result<()> {
        let names = self.store.names().to_vec();
        for (i, name) in names.iter().enumerate() {
            let stem = mix
                .stems
                .iter()
                .find(|s| &s.name == name)
                .cloned()
                .unwrap_or_else(|| StemMix::neutral(name));
            self.set_gain(i, stem.gain)?;
            self.set_mute(i, stem.muted)?;
            self.set_solo(i, stem.soloed)?;
            self.set_pan(i, stem.pan)?;
        }
        let region = mix.loop_secs.filter(|(start, end)| end > start);
        if region != self.mix.loop_secs {
            self.set_loop(region)?;
        }
        if let Some(practice) = mix.practice {
            self.set_practice(practice)?;
        }
        Ok(())
    }

    fn frames_at(&self, secs: f64) -> u64 {
        (secs.max(0.0) * self.control.sample_rate() as f64).round() as u64
    }
}

fn silent(renderer: MixerRenderer, rate: u32, why: &OutputError) -> (Sink, OutputStatus) {
    tracing::info!("playing silently: {why}");
    (
        Sink::Silent {
            _clock: SilentOutput::start(renderer, rate),
        },
        OutputStatus {
            device: None,
            problem: Some(NO_SOUND_NOTICE.into()),
            details: Some(why.to_string()),
        },
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::events::StemsChunk;
    use crate::jobs::library::{JobSource, JobStage};
    use crate::jobs::settings::JobSettings;

    const RATE: u32 = 44_100;

    fn job(stems: Vec<StemFile>) -> Job {
        Job {
            id: 7,
            title: "Song".into(),
            source: JobSource::File {
                path: "song.wav".into(),
            },
            settings: JobSettings::default(),
            stage: JobStage::Separating,
            error: None,
            can_retry: true,
            stems,
            output_dir: None,
            created_at: 0,
            elapsed_secs: 0.0,
            from_cache: false,
            mix: None,
            analysis: None,
            missing_stems: Vec::new(),
            mixes: Vec::new(),
            timings: None,
            remote_run: None,
        }
    }

    /// Two stems of distinct tones, `frames` long.
    fn tones(frames: usize) -> Vec<Vec<Vec<f32>>> {
        (0..2)
            .map(|s| {
                let c: Vec<f32> = (0..frames)
                    .map(|i| 0.25 * (i as f32 * 0.01 * (s + 1) as f32).sin())
                    .collect();
                vec![c.clone(), c]
            })
            .collect()
    }

    fn chunk<'a>(
        names: &'a [String],
        stems: &'a [Vec<Vec<f32>>],
        start: usize,
        total: usize,
    ) -> StemsChunk<'a> {
        StemsChunk {
            start_frame: start,
            total_frames: total,
            sample_rate: RATE,
            names,
            stems,
        }
    }

    fn slice(stems: &[Vec<Vec<f32>>], from: usize, to: usize) -> Vec<Vec<Vec<f32>>> {
        stems
            .iter()
            .map(|s| s.iter().map(|c| c[from..to].to_vec()).collect())
            .collect()
    }

    fn wait(what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_separating_job_plays_to_its_edge_waits_and_carries_on_from_its_files() {
        // SAFETY: tests that open players all want the silent clock.
        unsafe { std::env::set_var(AUDIO_OUTPUT_ENV, "none") };
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["vocals".to_string(), "no_vocals".to_string()];
        let total = RATE as usize * 3;
        let audio = tones(total);
        let first = slice(&audio, 0, RATE as usize / 2);
        let live =
            Arc::new(LiveStems::start(7, dir.path(), &chunk(&names, &first, 0, total)).unwrap());
        live.append(&chunk(&names, &first, 0, total)).unwrap();

        let mut player = StemPlayer::open_live(&job(Vec::new()), live.clone(), dir.path()).unwrap();
        assert_eq!(player.output().problem.as_deref(), Some(NO_SOUND_NOTICE));
        let state = player.state();
        assert!(
            state.separating && (state.edge_secs - 0.5).abs() < 1e-6,
            "{state:?}"
        );
        assert!((state.duration_secs - 3.0).abs() < 1e-6);
        assert!(
            player.files().is_none(),
            "no files before the job writes them"
        );
        assert_eq!(
            player.seek(2.0).unwrap(),
            0.5,
            "a seek past the edge stops at it"
        );
        player.seek(0.0).unwrap();
        player.play().unwrap();
        wait("playback to reach the edge and wait", || {
            let s = player.state();
            s.waiting && (s.position_secs - 0.5).abs() < 1e-6
        });

        // More is separated: playback goes on by itself.
        live.append(&chunk(
            &names,
            &slice(&audio, RATE as usize / 2, total),
            RATE as usize / 2,
            total,
        ))
        .unwrap();
        wait("playback to go on past the old edge", || {
            player.state().position_secs > 0.6
        });
        assert!(!player.state().waiting);
        player.set_mute(1, true).unwrap();
        player.set_loop(Some((1.0, 2.5))).unwrap();

        // The job writes its files and says it is done; the player moves to them.
        let stems: Vec<StemFile> = names
            .iter()
            .zip(&audio)
            .map(|(name, stem)| {
                let path = dir.path().join(format!("{name}.wav"));
                let buffer = stemdeck_audio::AudioBuffer::new(RATE, stem.clone());
                stemdeck_audio::write_audio(
                    &path,
                    &buffer,
                    stemdeck_audio::OutputFormat::Wav(stemdeck_audio::WavFormat::Float32),
                    &Default::default(),
                )
                .unwrap();
                StemFile {
                    name: name.clone(),
                    path,
                }
            })
            .collect();
        let before = player.state().position_secs;
        live.finish(stems.clone());
        wait("the switch to the files", || {
            player.follow_job();
            !player.state().separating
        });
        let after = player.state();
        assert!(after.playing, "still playing");
        assert!(
            (1.0..2.5).contains(&after.position_secs) || after.position_secs >= before,
            "no jump: {before} then {}",
            after.position_secs
        );
        assert_eq!(player.files(), Some(stems));
        assert_eq!(after.levels, vec![1.0, 0.0], "the mute carried over");
        assert_eq!(player.mix().loop_secs, Some((1.0, 2.5)));
    }

    #[test]
    fn a_cancelled_job_ends_its_player_with_the_reason() {
        unsafe { std::env::set_var(AUDIO_OUTPUT_ENV, "none") };
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["a".to_string()];
        let audio = vec![vec![vec![0.1f32; 1000]; 2]];
        let live =
            Arc::new(LiveStems::start(7, dir.path(), &chunk(&names, &audio, 0, 5000)).unwrap());
        live.append(&chunk(&names, &audio, 0, 5000)).unwrap();
        let mut player = StemPlayer::open_live(&job(Vec::new()), live.clone(), dir.path()).unwrap();
        live.abandon("“Song” was cancelled, so none of it was kept".into());
        player.follow_job();
        assert_eq!(
            player.state().ended.as_deref(),
            Some("“Song” was cancelled, so none of it was kept")
        );
        drop(player);
        drop(live);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "nothing of the job is kept: {left:?}");
    }

    #[test]
    fn a_finished_job_plays_from_its_files_with_its_remembered_mix() {
        unsafe { std::env::set_var(AUDIO_OUTPUT_ENV, "none") };
        let dir = tempfile::tempdir().unwrap();
        let audio = tones(RATE as usize * 2);
        let stems: Vec<StemFile> = ["drums", "bass"]
            .iter()
            .zip(&audio)
            .map(|(name, stem)| {
                let path = dir.path().join(format!("{name}.flac"));
                let buffer = stemdeck_audio::AudioBuffer::new(RATE, stem.clone());
                stemdeck_audio::write_audio(
                    &path,
                    &buffer,
                    stemdeck_audio::OutputFormat::Flac(stemdeck_audio::FlacDepth::Bits24),
                    &Default::default(),
                )
                .unwrap();
                StemFile::from_path(path)
            })
            .collect();
        let mut song = job(stems.clone());
        song.stage = JobStage::Done;
        let mut mix = MixSettings::neutral(&["drums".into(), "bass".into()]);
        mix.stems[0].muted = true;
        mix.stems[1].pan = -1.0;
        mix.practice = Some(Practice {
            tempo: 0.8,
            semitones: -2.0,
            click: true,
            click_volume: 0.3,
            count_in: true,
        });
        song.mix = Some(mix.clone());
        let player = StemPlayer::open(&song, &dir.path().join("playback")).unwrap();
        wait("the files to be read", || player.store.is_complete());
        let state = player.state();
        assert!(
            !state.separating && (state.duration_secs - 2.0).abs() < 1e-3,
            "{state:?}"
        );
        assert_eq!(player.mix(), &mix);
        assert_eq!(player.files(), Some(stems));
        let expected: Vec<[f32; 2]> = stemdeck_audio::waveform_peaks(
            &stemdeck_audio::AudioBuffer::new(RATE, audio[1].clone()),
            PEAK_BUCKETS,
        )
        .into_iter()
        .map(|(lo, hi)| [lo, hi])
        .collect();
        let drawn = &player.stems()[1].peaks;
        assert_eq!(drawn.len(), expected.len());
        let worst = drawn
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a[0] - b[0]).abs().max((a[1] - b[1]).abs()))
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "the overview of the decoded file ({worst})");
    }

    #[test]
    fn practice_settings_reach_the_renderer_and_the_beats_come_from_the_analysis() {
        unsafe { std::env::set_var(AUDIO_OUTPUT_ENV, "none") };
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = vec!["drums".into(), "bass".into()];
        let total = RATE as usize * 4;
        let audio = tones(total);
        let live =
            Arc::new(LiveStems::start(7, dir.path(), &chunk(&names, &audio, 0, total)).unwrap());
        live.append(&chunk(&names, &audio, 0, total)).unwrap();
        let mut player = StemPlayer::open_live(&job(Vec::new()), live, dir.path()).unwrap();
        player
            .set_practice(Practice {
                tempo: 3.0,
                semitones: -2.0,
                ..Practice::default()
            })
            .unwrap();
        assert_eq!(player.practice().tempo, 1.5, "clamped to the range");
        wait("the renderer to take the settings", || {
            let s = player.state();
            s.tempo == 1.5 && s.semitones == -2.0
        });
        assert_eq!(player.state().song_bpm, None);
        let analysis = Analysis {
            tempo: Some(stemdeck_analysis::Tempo {
                bpm: 120.0,
                beats: vec![0.0, 0.5, 1.0, 1.5],
                from: "drums".into(),
            }),
            ..Analysis::default()
        };
        player.set_analysis(&analysis);
        assert_eq!(player.state().song_bpm, Some(120.0));
        assert_eq!(player.analysis(), Some(&analysis));
    }
}
