//! Parity with PyTorch demucs 4.1.0 for a bag of models with per-source weights, the way
//! htdemucs_ft combines its members: two toy HTDemucs with generated weights (seeds and
//! weights in the fixture), `apply_model(BagOfModels([m1, m2], weights), mix)` within the
//! `demucs.separate` recipe, on a 0.9 s clip (two overlapping segments per member).

mod common;

use common::{GeneratedFixture, parity};
use stemdeck_demucs::{ApplyOptions, BagOfModels, HTDemucs, Planar, Silent, separate};

/// The toy model's end-to-end budget (tests/parity.rs), and the SNR floor of
/// tests/six_stems.rs. Measured: 3-8e-6 and 113-121 dB.
const MAX_ABS_ERROR: f32 = 1e-4;
const MIN_SNR_DB: f64 = 90.0;

fn run(bag: &BagOfModels, mix: &Planar) -> Vec<Planar> {
    separate(bag, mix, &ApplyOptions::default(), &Silent).unwrap()
}

#[test]
fn a_weighted_bag_matches_torch_per_source() {
    let fixture = GeneratedFixture::load("bag.fixture");
    let seeds: Vec<u64> = fixture.meta("model_seeds");
    let weights: Vec<Vec<f64>> = fixture.meta("weights");
    assert_eq!(seeds.len(), 2);
    let sources = fixture.config().sources;
    // Each source is weighed by at least one member, and the members differ per source.
    for s in 0..sources.len() {
        assert!(weights.iter().map(|w| w[s]).sum::<f64>() > 0.0);
    }
    assert_ne!(weights[0], weights[1]);

    let members: Vec<HTDemucs> = seeds.iter().map(|&s| fixture.model(s)).collect();
    let bag = BagOfModels::new(members, Some(weights.clone())).unwrap();
    assert_eq!(bag.sources(), sources.as_slice());

    let mix = fixture.planar("input");
    let reference = fixture.stems("output");
    let ours = run(&bag, &mix);
    assert_eq!(ours.len(), sources.len());

    let mut failures = Vec::new();
    for ((name, ours), reference) in sources.iter().zip(&ours).zip(&reference) {
        let p = parity(ours, reference);
        println!(
            "{name:>6}: max abs error {:.2e}, SNR {:.1} dB (peak {:.3})",
            p.max_abs_error, p.snr_db, p.reference_peak
        );
        assert!(
            p.reference_peak > 0.1,
            "{name}: the reference is near silent"
        );
        if p.snr_db < MIN_SNR_DB || p.max_abs_error > MAX_ABS_ERROR {
            failures.push(name.clone());
        }
    }
    assert!(
        failures.is_empty(),
        "outside the error budget: {failures:?}"
    );

    // The reference is clearly not what either member, or an unweighted average, gives:
    // a bag that ignored or misapplied the weights would fail above by a wide margin.
    let alternatives = [
        (
            "member 1 alone",
            BagOfModels::single(fixture.model(seeds[0])),
        ),
        (
            "member 2 alone",
            BagOfModels::single(fixture.model(seeds[1])),
        ),
        (
            "unweighted bag",
            BagOfModels::new(seeds.iter().map(|&s| fixture.model(s)).collect(), None).unwrap(),
        ),
    ];
    for (what, other) in alternatives {
        let out = run(&other, &mix);
        // Per source, the best that alternative does (sources weighed by one member only
        // match that member alone, as they should).
        let snrs: Vec<f64> = out
            .iter()
            .zip(&reference)
            .map(|(o, r)| parity(o, r).snr_db)
            .collect();
        println!(
            "{what}: SNR per source against the bag's reference {:?} dB",
            snrs.iter()
                .map(|s| (s * 10.0).round() / 10.0)
                .collect::<Vec<_>>()
        );
        let worst = snrs.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(
            worst < 20.0,
            "{what} comes within {worst:.1} dB of the bag on every source"
        );
    }
}
