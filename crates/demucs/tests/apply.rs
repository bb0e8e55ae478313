//! The chunked apply on the toy model: the shift trick against PyTorch, bag weighting,
//! progress, cancel and the settings it refuses.

use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::{Device, Tensor};
use stemdeck_demucs::{
    ApplyOptions, BagOfModels, Checkpoint, DemucsError, HTDemucs, Planar, Progress,
    SeparationListener, Silent,
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
