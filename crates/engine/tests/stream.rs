//! A file job streams: the stems reach the listener in order, stretch by stretch, while
//! the separation is still running, and the files it writes are exactly those of the
//! whole-buffer pipeline (separate in memory, two stems, mixes, levels, write).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use stemdeck_audio::{
    AudioBuffer, ClipMode, FlacDepth, OutputFormat, Tags, WavFormat, decode_file, load_for_model,
    write_audio,
};
use stemdeck_demucs::{BagOfModels, Checkpoint, Device, HTDemucs, Silent};
use stemdeck_engine::outputs::mix::{MixRecipe, render_mix};
use stemdeck_engine::pipeline::options::finish_levels;
use stemdeck_engine::pipeline::separate::two_stems;
use stemdeck_engine::{
    ApplyOptions, EngineError, JobEvent, JobListener, OutputOptions, Separator, StemsChunk,
};

/// The toy model: 0.5 s segments, a stride of 16537 frames.
fn separator() -> Separator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../demucs/tests/fixtures/tiny_htdemucs.fixture");
    let ckpt = Checkpoint::from_bytes(&std::fs::read(path).unwrap()).unwrap();
    let model = HTDemucs::from_checkpoint(&ckpt, &Device::Cpu).unwrap();
    Separator::from_bag(BagOfModels::single(model), "tiny")
}

/// A song at `rate`, peaking at `level` in a loud passage.
fn song(dir: &Path, name: &str, rate: u32, frames: usize, level: f32) -> PathBuf {
    let channel = |phase: f32| -> Vec<f32> {
        (0..frames)
            .map(|i| {
                let t = i as f32 / rate as f32;
                let loud = level * if (0.4..0.5).contains(&t) { 2.0 } else { 1.0 };
                loud * (0.3 * (2.0 * std::f32::consts::PI * 220.0 * t + phase).sin()
                    + 0.2 * (2.0 * std::f32::consts::PI * 1500.0 * t).sin())
                    + 0.05 * (((i * 7919) % 101) as f32 / 101.0 - 0.5)
            })
            .collect()
    };
    let path = dir.join(name);
    write_audio(
        &path,
        &AudioBuffer::new(rate, vec![channel(0.0), channel(0.7)]),
        OutputFormat::Wav(WavFormat::Float32),
        &Tags::default(),
    )
    .unwrap();
    path
}

fn tags() -> Tags {
    Tags {
        title: Some("Song".into()),
        stem: None,
        source: Some("song.wav".into()),
    }
}

/// A chunk as heard: `(start, frames, names, segments done when it came, segments in all)`.
type Heard = (usize, usize, Vec<String>, usize, usize);

/// What a job's listener saw, in order.
#[derive(Default)]
struct Recorder {
    chunks: Mutex<Vec<Heard>>,
    audio: Mutex<Vec<Vec<Vec<f32>>>>,
    progress: Mutex<(usize, usize)>,
    cancel_after_chunks: Option<usize>,
}

impl JobListener for Recorder {
    fn on_event(&self, event: JobEvent) {
        if let JobEvent::Separating { progress, .. } = event {
            *self.progress.lock().unwrap() = (progress.segments_done, progress.segments_total);
        }
    }
    fn is_cancelled(&self) -> bool {
        self.cancel_after_chunks
            .is_some_and(|n| self.chunks.lock().unwrap().len() >= n)
    }
    fn on_stems(&self, chunk: &StemsChunk<'_>) {
        assert_eq!(chunk.sample_rate, 44100);
        let (done, total) = *self.progress.lock().unwrap();
        self.chunks.lock().unwrap().push((
            chunk.start_frame,
            chunk.frames(),
            chunk.names.to_vec(),
            done,
            total,
        ));
        let mut audio = self.audio.lock().unwrap();
        if audio.is_empty() {
            *audio = vec![vec![Vec::new(); 2]; chunk.stems.len()];
        }
        for (dst, src) in audio.iter_mut().zip(chunk.stems) {
            assert!(src.iter().all(|c| c.len() == chunk.frames()));
            for (d, s) in dst.iter_mut().zip(src) {
                d.extend_from_slice(s);
            }
        }
    }
}

#[test]
fn a_job_hands_on_its_stems_in_order_while_it_is_still_separating() {
    let dir = tempfile::tempdir().unwrap();
    // One second: three segments.
    let input = song(dir.path(), "song.wav", 44100, 44100, 0.5);
    let output = OutputOptions {
        format: OutputFormat::Wav(WavFormat::Float32),
        clip: ClipMode::None,
        two_stems: Some("vocals".into()),
        ..Default::default()
    };
    let listener = Recorder::default();
    let stem_dir = dir.path().join("out/song");
    let written = separator()
        .separate_file_into(
            &input,
            &stem_dir,
            &ApplyOptions::default(),
            &output,
            &tags(),
            &listener,
        )
        .unwrap();

    let chunks = listener.chunks.into_inner().unwrap();
    let mut next = 0;
    for (start, frames, names, _, _) in &chunks {
        assert_eq!(*start, next, "in order, without gaps: {chunks:?}");
        assert!(*frames > 0);
        assert_eq!(names, &["vocals", "no_vocals"]);
        next = start + frames;
    }
    assert_eq!(next, 44100, "the chunks cover the track");
    let (_, _, _, done, total) = &chunks[0];
    assert_eq!(*total, 3);
    assert!(
        done < total,
        "the first chunk comes while the separation runs: {chunks:?}"
    );
    assert!(chunks.len() >= 3, "{chunks:?}");

    // Without level changes, the files hold exactly what the listener heard.
    let heard = listener.audio.into_inner().unwrap();
    assert_eq!(written.stems.len(), 2);
    for (path, audio) in written.stems.iter().zip(&heard) {
        assert_eq!(&decode_file(path).unwrap().channels, audio, "{path:?}");
    }
    let mut left: Vec<String> = std::fs::read_dir(&stem_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["no_vocals.wav", "vocals.wav"],
        "no temporary files remain"
    );
}

/// The whole-buffer pipeline as it was before the job streamed: decode and resample the
/// whole file, separate it in memory, two stems, mixes from the raw stems, levels, write.
fn whole_buffer_job(
    separator: &Separator,
    input: &Path,
    output: &OutputOptions,
    dir: &Path,
) -> Vec<PathBuf> {
    let audio = load_for_model(input, 44100).unwrap();
    let stems = separator
        .separate_audio(&audio, &ApplyOptions::default(), &Silent)
        .unwrap();
    let stems = match &output.two_stems {
        Some(source) => two_stems(stems, source),
        None => stems,
    };
    let names: Vec<String> = stems.iter().map(|(n, _)| n.clone()).collect();
    let ext = output.format.extension();
    let mut paths = Vec::new();
    for recipe in &output.mixes {
        let raw: Vec<&AudioBuffer> = stems.iter().map(|(_, a)| a).collect();
        let mut mix = render_mix(&raw, &recipe.gains(&names).unwrap());
        finish_levels(&mut mix, output);
        let path = dir.join(recipe.file_name(ext));
        let tags = Tags {
            stem: Some(recipe.spec().to_string()),
            ..tags()
        };
        write_audio(&path, &mix, output.format, &tags).unwrap();
        paths.push(path);
    }
    for (name, mut audio) in stems {
        finish_levels(&mut audio, output);
        let path = dir.join(format!("{name}.{ext}"));
        let tags = Tags {
            stem: Some(name),
            ..tags()
        };
        write_audio(&path, &audio, output.format, &tags).unwrap();
        paths.push(path);
    }
    paths
}

#[test]
fn the_streamed_job_writes_the_files_of_the_whole_buffer_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let separator = separator();
    // At 48 kHz, so the file is resampled on the way in; loud, so that stems need their
    // levels handled.
    let input = song(dir.path(), "song.wav", 48000, 62_000, 4.0);
    let cases = [
        OutputOptions {
            format: OutputFormat::Wav(WavFormat::Int24),
            two_stems: Some("drums".into()),
            mixes: vec![MixRecipe::parse("drums+no_drums").unwrap()],
            ..Default::default()
        },
        OutputOptions {
            format: OutputFormat::Flac(FlacDepth::Bits16),
            normalize_dbfs: Some(-1.0),
            mixes: vec![
                MixRecipe::parse("all-vocals").unwrap(),
                MixRecipe::parse("bass").unwrap(),
            ],
            ..Default::default()
        },
        OutputOptions {
            format: OutputFormat::Mp3 { kbps: 192 },
            clip: ClipMode::Clamp,
            ..Default::default()
        },
    ];
    for (i, output) in cases.iter().enumerate() {
        let streamed_dir = dir.path().join(format!("streamed{i}"));
        let whole_dir = dir.path().join(format!("whole{i}"));
        let written = separator
            .separate_file_into(
                &input,
                &streamed_dir,
                &ApplyOptions::default(),
                output,
                &tags(),
                &Recorder::default(),
            )
            .unwrap();
        let expected = whole_buffer_job(&separator, &input, output, &whole_dir);
        let streamed: Vec<&PathBuf> = written.mixes.iter().chain(&written.stems).collect();
        assert_eq!(streamed.len(), expected.len());
        for (ours, theirs) in streamed.iter().zip(&expected) {
            assert_eq!(ours.file_name(), theirs.file_name());
            assert!(
                std::fs::read(ours).unwrap() == std::fs::read(theirs).unwrap(),
                "{ours:?} differs from the whole-buffer pipeline's file"
            );
        }
        if i == 0 {
            // Clip prevention had work to do: a rescaled file peaks just under full scale.
            let peaks: Vec<f32> = streamed
                .iter()
                .map(|p| decode_file(p).unwrap().peak())
                .collect();
            assert!(peaks.iter().any(|p| (0.98..1.0).contains(p)), "{peaks:?}");
        }
    }
}

#[test]
fn a_cancelled_job_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let input = song(dir.path(), "song.wav", 44100, 60_000, 0.5);
    let listener = Recorder {
        cancel_after_chunks: Some(1),
        ..Default::default()
    };
    let out = dir.path().join("out");
    let err = separator()
        .separate_file_into(
            &input,
            &out.join("song"),
            &ApplyOptions::default(),
            &OutputOptions::default(),
            &tags(),
            &listener,
        )
        .unwrap_err();
    assert!(matches!(err, EngineError::Cancelled), "{err}");
    assert_eq!(listener.chunks.lock().unwrap().len(), 1);
    assert!(!out.join("song").exists(), "the folder it made is gone");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);

    // A file that is not audio fails before anything is made.
    let notes = dir.path().join("notes.wav");
    std::fs::write(&notes, "not a song".repeat(100)).unwrap();
    let err = separator()
        .separate_file_into(
            &notes,
            &out.join("notes"),
            &ApplyOptions::default(),
            &OutputOptions::default(),
            &tags(),
            &Recorder::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("not an audio file"), "{err}");
    assert!(!out.join("notes").exists());
}
