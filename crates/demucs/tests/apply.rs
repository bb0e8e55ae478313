//! The chunked apply on the toy model: the shift trick against PyTorch, bag weighting,
//! progress, cancel and the settings it refuses; the stream of finished chunks against the
//! whole-track apply.

use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::{Device, Tensor};
use stemdeck_demucs::{
    ApplyOptions, BagOfModels, Checkpoint, DemucsError, HTDemucs, MixReader, MixStats, Planar,
    Progress, SeparationListener, Silent, StemSink, separate, separate_streaming,
};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn tiny() -> HTDemucs {
    let ckpt = Checkpoint::from_bytes(&fixture("tiny_htdemucs.fixture")).unwrap();
    HTDemucs::from_checkpoint(&ckpt, &Device::Cpu).unwrap()
}

fn test_mix(frames: usize) -> Planar {
    (0..2)
        .map(|c| {
            (0..frames)
                .map(|i| {
                    ((i as f32) * 0.01 * (c + 1) as f32).sin() * 0.5
                        + ((i * 7919) % 101) as f32 / 500.0
                })
                .collect()
        })
        .collect()
}

fn max_diff(a: &[Planar], b: &[Planar]) -> f32 {
    a.iter()
        .flatten()
        .flatten()
        .zip(b.iter().flatten().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn shifts_match_torch_with_the_same_offsets() {
    let io: HashMap<String, Tensor> =
        candle_core::safetensors::load_buffer(&fixture("tiny_shifts.fixture"), &Device::Cpu)
            .unwrap();
    let mix = io["shifts.input"].to_vec2::<f32>().unwrap();
    let offsets: Vec<usize> = io["shifts.offsets"]
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| *v as usize)
        .collect();
    let bag = BagOfModels::single(tiny());
    let ours = bag
        .apply_with_shift_offsets(&mix, &ApplyOptions::default(), &offsets, &Silent)
        .unwrap();
    let expected = io["shifts.output"].to_vec3::<f32>().unwrap();
    let err = max_diff(&ours, &expected);
    println!("shifts=2: max abs error {err:.2e}");
    assert!(err < 1e-4, "max abs error {err}");
}

#[test]
fn random_shifts_are_repeatable_from_the_seed() {
    let bag = BagOfModels::single(tiny());
    let mix = test_mix(15000);
    let opts = ApplyOptions {
        shifts: 2,
        seed: 7,
        ..Default::default()
    };
    let a = bag.apply(&mix, &opts, &Silent).unwrap();
    let b = bag.apply(&mix, &opts, &Silent).unwrap();
    assert_eq!(max_diff(&a, &b), 0.0);
    let c = bag
        .apply(&mix, &ApplyOptions { seed: 8, ..opts }, &Silent)
        .unwrap();
    assert!(max_diff(&a, &c) > 0.0, "another seed draws other shifts");
    assert!(a.iter().flatten().flatten().all(|v| v.is_finite()));
}

#[test]
fn a_bag_averages_its_models_per_source_by_weight() {
    let mix = test_mix(30000);
    let single = BagOfModels::single(tiny())
        .apply(&mix, &ApplyOptions::default(), &Silent)
        .unwrap();
    // One model per source (as htdemucs_ft) and uneven weights both reduce to the same model.
    for weights in [
        vec![vec![1.0, 0.0, 0.0, 0.0], vec![0.0, 1.0, 1.0, 1.0]],
        vec![vec![3.0; 4], vec![1.0; 4]],
    ] {
        let bag = BagOfModels::new(vec![tiny(), tiny()], Some(weights.clone())).unwrap();
        let out = bag.apply(&mix, &ApplyOptions::default(), &Silent).unwrap();
        assert!(
            max_diff(&single, &out) < 1e-5,
            "{weights:?}: {}",
            max_diff(&single, &out)
        );
    }
    let err = BagOfModels::new(
        vec![tiny(), tiny()],
        Some(vec![vec![1.0, 0.0, 0.0, 0.0]; 2]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("bass"), "{err}");
}

struct Recorder {
    seen: RefCell<Vec<Progress>>,
    cancel_after: Option<usize>,
}

impl SeparationListener for Recorder {
    fn on_progress(&self, progress: Progress) {
        self.seen.borrow_mut().push(progress);
    }
    fn is_cancelled(&self) -> bool {
        self.cancel_after
            .is_some_and(|n| self.seen.borrow().len() >= n)
    }
}

#[test]
fn progress_counts_every_segment_and_cancel_stops_between_segments() {
    let bag = BagOfModels::single(tiny());
    // 0.5 s segments with 25 % overlap: a stride of 16537 frames, so 4 segments for 60000.
    let mix = test_mix(60000);
    let all = Recorder {
        seen: RefCell::new(Vec::new()),
        cancel_after: None,
    };
    bag.apply(&mix, &ApplyOptions::default(), &all).unwrap();
    let seen = all.seen.into_inner();
    assert_eq!(seen.len(), 5, "the start, then each of the 4 segments");
    assert!(
        seen.iter()
            .enumerate()
            .all(|(i, p)| p.segments_done == i && p.segments_total == 4)
    );

    let cancelled = Recorder {
        seen: RefCell::new(Vec::new()),
        cancel_after: Some(2),
    };
    let err = bag
        .apply(&mix, &ApplyOptions::default(), &cancelled)
        .unwrap_err();
    assert!(matches!(err, DemucsError::Cancelled));
    assert_eq!(
        cancelled.seen.borrow().len(),
        2,
        "stops right after the segment in flight"
    );
}

#[test]
fn short_segments_work_and_bad_settings_are_refused() {
    let bag = BagOfModels::single(tiny());
    let mix = test_mix(20000);
    let out = bag
        .apply(
            &mix,
            &ApplyOptions {
                segment: Some(0.3),
                ..Default::default()
            },
            &Silent,
        )
        .unwrap();
    assert_eq!(out[0][0].len(), 20000);
    for (opts, words) in [
        (
            ApplyOptions {
                segment: Some(0.6),
                ..Default::default()
            },
            "trained on",
        ),
        (
            ApplyOptions {
                overlap: 1.0,
                ..Default::default()
            },
            "overlap",
        ),
        (
            ApplyOptions {
                overlap: -0.1,
                ..Default::default()
            },
            "overlap",
        ),
    ] {
        let err = bag.apply(&mix, &opts, &Silent).unwrap_err().to_string();
        assert!(err.contains(words), "{err}");
    }
    assert!(matches!(
        bag.apply(&[vec![], vec![]], &ApplyOptions::default(), &Silent),
        Err(DemucsError::EmptyAudio)
    ));
}

#[test]
fn silence_and_tiny_inputs_separate_without_nan() {
    let bag = BagOfModels::single(tiny());
    for frames in [10, 441, 30000] {
        let silence = vec![vec![0f32; frames]; 2];
        let out =
            stemdeck_demucs::separate(&bag, &silence, &ApplyOptions::default(), &Silent).unwrap();
        assert_eq!(out.len(), 4);
        assert!(out.iter().flatten().all(|c| c.len() == frames));
        assert!(
            out.iter().flatten().flatten().all(|v| v.is_finite()),
            "{frames} frames of silence"
        );
    }
}

/// A second toy model: the fixture's weights with every bias scaled, so that a bag of the
/// two averages two different estimates.
fn tiny_variant() -> HTDemucs {
    let mut ckpt = Checkpoint::from_bytes(&fixture("tiny_htdemucs.fixture")).unwrap();
    for (name, tensor) in ckpt.tensors.iter_mut() {
        if name.ends_with("bias") {
            *tensor = (&*tensor * 1.7).unwrap();
        }
    }
    HTDemucs::from_checkpoint(&ckpt, &Device::Cpu).unwrap()
}

/// `apply_model` as it was before the apply streamed, kept here as the reference: each
/// model runs each pass over the whole track, one segment after another, and adds into
/// one `sources x channels x length` buffer with one weight sum per frame of the pass.
fn whole_track_reference(
    models: &[(&HTDemucs, Vec<f64>)],
    mix: &Planar,
    offsets: &[usize],
) -> Vec<Planar> {
    let (channels, length) = (mix.len(), mix[0].len());
    let cfg = models[0].0.config();
    let (segment, max_shift) = (cfg.segment_samples(), cfg.samplerate / 2);
    let stride = (0.75 * segment as f64) as usize;
    let half = segment / 2;
    let weight: Vec<f32> = (1..=half)
        .chain((1..=segment - half).rev())
        .map(|v| (v as f64 / half as f64) as f32)
        .collect();
    let passes: Vec<(isize, usize)> = if offsets.is_empty() {
        vec![(0, length)]
    } else {
        offsets
            .iter()
            .map(|&o| (o as isize - max_shift as isize, length + max_shift - o))
            .collect()
    };
    let sources = cfg.num_sources();
    let totals: Vec<f64> = (0..sources)
        .map(|s| models.iter().map(|(_, w)| w[s]).sum())
        .collect();
    let mut out = vec![vec![vec![0f32; length]; channels]; sources];
    for (model, weights) in models {
        for &(origin, view_len) in &passes {
            let mut sums = vec![0f32; view_len];
            for offset in (0..view_len).step_by(stride) {
                let n = (view_len - offset).min(segment);
                for (s, w) in sums[offset..offset + n].iter_mut().zip(&weight) {
                    *s += w;
                }
            }
            for offset in (0..view_len).step_by(stride) {
                let n = (view_len - offset).min(segment);
                let delta = segment - n;
                let start = origin + offset as isize - (delta / 2) as isize;
                let mut window = vec![0f32; channels * segment];
                for c in 0..channels {
                    for i in 0..segment {
                        let at = start + i as isize;
                        if at >= 0 && (at as usize) < length {
                            window[c * segment + i] = mix[c][at as usize];
                        }
                    }
                }
                let input = Tensor::from_vec(window, (1, channels, segment), &Device::Cpu).unwrap();
                let separated = model
                    .forward(&input)
                    .unwrap()
                    .squeeze(0)
                    .unwrap()
                    .narrow(2, delta / 2, n)
                    .unwrap()
                    .to_vec3::<f32>()
                    .unwrap();
                let first = origin + offset as isize;
                for s in 0..sources {
                    let scale = (weights[s] / totals[s] / passes.len() as f64) as f32;
                    for c in 0..channels {
                        for i in 0..n {
                            let at = first + i as isize;
                            if at >= 0 && (at as usize) < length {
                                let b = weight[i] / sums[offset + i];
                                out[s][c][at as usize] += scale * b * separated[s][c][i];
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// A sink that records where each chunk starts and how long it is, and keeps the audio.
#[derive(Default)]
struct Chunks {
    spans: Vec<(usize, usize)>,
    audio: Vec<Planar>,
}

impl StemSink for Chunks {
    fn write(&mut self, start_frame: usize, stems: &[Planar]) -> stemdeck_demucs::Result<()> {
        let frames = stems[0][0].len();
        assert!(
            stems.iter().flatten().all(|c| c.len() == frames),
            "every source and channel of a chunk has the same length"
        );
        self.spans.push((start_frame, frames));
        if self.audio.is_empty() {
            self.audio = vec![vec![Vec::new(); stems[0].len()]; stems.len()];
        }
        for (dst, src) in self.audio.iter_mut().zip(stems) {
            for (d, s) in dst.iter_mut().zip(src) {
                d.extend_from_slice(s);
            }
        }
        Ok(())
    }
}

impl Chunks {
    /// The chunks follow each other without gap or overlap from frame 0 to `length`.
    fn assert_cover(&self, length: usize) {
        let mut next = 0;
        for &(start, frames) in &self.spans {
            assert_eq!(
                start, next,
                "chunks in order and contiguous: {:?}",
                self.spans
            );
            assert!(frames > 0, "no empty chunks: {:?}", self.spans);
            next = start + frames;
        }
        assert_eq!(next, length, "the chunks cover the track: {:?}", self.spans);
    }
}

/// A bag member: which toy model, and its weight per source.
type Member = (fn() -> HTDemucs, Vec<f64>);

#[test]
fn streaming_matches_the_whole_track_apply_with_shifts_and_bags() {
    // Five segments a pass; one shift offset is past a stride, another is zero.
    let mix = test_mix(75000);
    let cases: Vec<(&str, Vec<Member>, Vec<usize>)> = vec![
        ("one model", vec![(tiny, vec![1.0; 4])], vec![]),
        ("shifts", vec![(tiny, vec![1.0; 4])], vec![17000, 0, 22050]),
        (
            "a weighted bag with shifts",
            vec![
                (tiny, vec![1.0, 0.0, 2.0, 1.0]),
                (tiny_variant, vec![0.5, 1.0, 1.0, 3.0]),
            ],
            vec![3000, 9000],
        ),
    ];
    for (what, members, offsets) in cases {
        let models: Vec<HTDemucs> = members.iter().map(|(make, _)| make()).collect();
        let reference: Vec<(&HTDemucs, Vec<f64>)> = models
            .iter()
            .zip(&members)
            .map(|(m, (_, w))| (m, w.clone()))
            .collect();
        let expected = whole_track_reference(&reference, &mix, &offsets);
        let weights = members.iter().map(|(_, w)| w.clone()).collect();
        let bag = BagOfModels::new(models, Some(weights)).unwrap();
        let mut chunks = Chunks::default();
        bag.apply_streaming_with_shift_offsets(
            &mix,
            &ApplyOptions::default(),
            &offsets,
            &Silent,
            &mut chunks,
        )
        .unwrap();
        chunks.assert_cover(mix[0].len());
        assert!(chunks.spans.len() >= 4, "{what}: {:?}", chunks.spans);
        let err = max_diff(&chunks.audio, &expected);
        println!(
            "{what}: max abs difference {err:.2e}, chunks {:?}",
            chunks.spans
        );
        assert!(err < 1e-5, "{what}: {err}");
        // The in-memory apply is the same stream, collected.
        let in_memory = bag
            .apply_with_shift_offsets(&mix, &ApplyOptions::default(), &offsets, &Silent)
            .unwrap();
        assert_eq!(max_diff(&in_memory, &chunks.audio), 0.0, "{what}");
    }
}

/// A mix that is not in memory as far as the apply can tell: it answers reads from a
/// function and checks that every read has the size asked for.
struct Generated {
    frames: usize,
    reads: RefCell<usize>,
}

impl MixReader for Generated {
    fn channels(&self) -> usize {
        2
    }
    fn len(&self) -> usize {
        self.frames
    }
    fn read(&self, start: isize, len: usize, out: &mut [f32]) -> stemdeck_demucs::Result<()> {
        assert_eq!(out.len(), 2 * len);
        *self.reads.borrow_mut() += 1;
        let mix = test_mix(self.frames);
        for c in 0..2 {
            for i in 0..len {
                let at = start + i as isize;
                out[c * len + i] = if at >= 0 && (at as usize) < self.frames {
                    mix[c][at as usize]
                } else {
                    0.0
                };
            }
        }
        Ok(())
    }
}

#[test]
fn streaming_separate_equals_the_in_memory_recipe() {
    let bag = BagOfModels::single(tiny());
    let frames = 50000;
    let mix = test_mix(frames);
    let reader = Generated {
        frames,
        reads: RefCell::new(0),
    };
    let stats = MixStats::of_reader(&reader).unwrap();
    assert_eq!(
        stats,
        MixStats::of(&mix),
        "the same statistics, read in blocks"
    );
    let opts = ApplyOptions {
        shifts: 1,
        seed: 3,
        ..Default::default()
    };
    let mut chunks = Chunks::default();
    *reader.reads.borrow_mut() = 0;
    separate_streaming(&bag, &reader, stats, &opts, &Silent, &mut chunks).unwrap();
    chunks.assert_cover(frames);
    assert_eq!(
        *reader.reads.borrow(),
        4,
        "one window read per segment: a 50000-frame pass shifted by up to 22050 frames"
    );
    let in_memory = separate(&bag, &mix, &opts, &Silent).unwrap();
    assert_eq!(max_diff(&in_memory, &chunks.audio), 0.0);
    // Against the recipe spelled out: normalise the whole mix, apply, denormalise.
    let mut spelled_out = bag.apply(&stats.normalise(&mix), &opts, &Silent).unwrap();
    stats.denormalise(&mut spelled_out);
    assert_eq!(max_diff(&spelled_out, &chunks.audio), 0.0);
}

/// Counts progress and chunks in the order they happen, and cancels when told to.
struct Timeline {
    events: RefCell<Vec<String>>,
    cancel_at_chunk: Option<usize>,
}

impl SeparationListener for Timeline {
    fn on_progress(&self, progress: Progress) {
        self.events
            .borrow_mut()
            .push(format!("progress {}", progress.segments_done));
    }
    fn is_cancelled(&self) -> bool {
        self.cancel_at_chunk.is_some_and(|n| {
            self.events
                .borrow()
                .iter()
                .filter(|e| e.starts_with("chunk"))
                .count()
                >= n
        })
    }
}

#[test]
fn chunks_come_as_soon_as_final_and_cancel_stops_the_stream() {
    let bag = BagOfModels::new(vec![tiny(), tiny_variant()], None).unwrap();
    let mix = test_mix(60000);
    let opts = ApplyOptions {
        shifts: 2,
        seed: 11,
        ..Default::default()
    };
    let timeline = Timeline {
        events: RefCell::new(Vec::new()),
        cancel_at_chunk: None,
    };
    let mut spans = Vec::new();
    let mut sink = |start: usize, stems: &[Planar]| {
        spans.push((start, stems[0][0].len()));
        timeline.events.borrow_mut().push(format!("chunk {start}"));
        Ok(())
    };
    bag.apply_streaming(&mix, &opts, &timeline, &mut sink)
        .unwrap();
    let chunks = Chunks {
        spans,
        audio: Vec::new(),
    };
    chunks.assert_cover(60000);
    let events = timeline.events.into_inner();
    // 2 models x 2 passes of 5 segments each. Frame 0 is final once every pass's next
    // segment starts after it: after the first one or two segments of each pass (the toy
    // model's stride is shorter than the half-second shift), long before the last one.
    let first_chunk = events.iter().position(|e| e.starts_with("chunk")).unwrap();
    let last_progress = events
        .iter()
        .rposition(|e| e.starts_with("progress"))
        .unwrap();
    assert_eq!(events[last_progress], "progress 20");
    assert!(
        first_chunk < last_progress / 2,
        "the first chunk comes early: {events:?}"
    );
    assert!(
        events.iter().filter(|e| e.starts_with("chunk")).count() >= 5,
        "chunks keep coming as the segments run: {events:?}"
    );

    let cancelled = Timeline {
        events: RefCell::new(Vec::new()),
        cancel_at_chunk: Some(2),
    };
    let mut received = 0;
    let mut sink = |start: usize, stems: &[Planar]| {
        received += stems[0][0].len();
        cancelled.events.borrow_mut().push(format!("chunk {start}"));
        Ok(())
    };
    let err = bag
        .apply_streaming(&mix, &opts, &cancelled, &mut sink)
        .unwrap_err();
    assert!(matches!(err, DemucsError::Cancelled), "{err}");
    assert!(received > 0 && received < 60000, "{received}");
    let events = cancelled.events.into_inner();
    assert!(
        events.last().unwrap().starts_with("chunk"),
        "nothing runs after the cancel is seen: {events:?}"
    );
}

#[test]
fn a_failing_sink_stops_the_separation_with_its_error() {
    let bag = BagOfModels::single(tiny());
    let mix = test_mix(60000);
    let progress = Recorder {
        seen: RefCell::new(Vec::new()),
        cancel_after: None,
    };
    let mut calls = 0;
    let mut sink = |_: usize, _: &[Planar]| {
        calls += 1;
        Err(DemucsError::External("disk full".into()))
    };
    let err = bag
        .apply_streaming(&mix, &ApplyOptions::default(), &progress, &mut sink)
        .unwrap_err();
    assert_eq!(err.to_string(), "disk full");
    assert_eq!(calls, 1);
    assert!(
        progress.seen.borrow().len() < 5,
        "the remaining segments are not run"
    );
}
