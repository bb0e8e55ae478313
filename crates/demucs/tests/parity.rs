//! Parity with PyTorch demucs 4.1.0 on a random-init toy HTDemucs.
//!
//! The fixtures come from `tools/make_fixtures.py`: the toy model's weights (as safetensors
//! and as an official-format `.th`), inputs, the outputs of single components and the
//! whole `demucs.separate` recipe. Each component has its own test so that a mismatch
//! points at its layer.

use std::collections::HashMap;
use std::sync::OnceLock;

use candle_core::{Device, Module, Tensor};
use stemdeck_demucs::{ApplyOptions, BagOfModels, Checkpoint, HTDemucs, Silent, separate};

const TOLERANCE: f32 = 1e-4;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn io() -> &'static HashMap<String, Tensor> {
    static IO: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    IO.get_or_init(|| {
        candle_core::safetensors::load_buffer(&fixture("tiny_io.fixture"), &Device::Cpu).unwrap()
    })
}

fn t(name: &str) -> Tensor {
    io().get(name)
        .unwrap_or_else(|| panic!("fixture tensor {name}"))
        .clone()
}

fn model() -> &'static HTDemucs {
    static MODEL: OnceLock<HTDemucs> = OnceLock::new();
    MODEL.get_or_init(|| {
        let ckpt = Checkpoint::from_bytes(&fixture("tiny_htdemucs.fixture")).unwrap();
        HTDemucs::from_checkpoint(&ckpt, &Device::Cpu).unwrap()
    })
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn assert_close(name: &str, ours: &Tensor, theirs: &Tensor) {
    let err = max_abs_diff(ours, theirs);
    let peak = theirs
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    println!("{name}: max abs error {err:.2e} (peak {peak:.3})");
    assert!(
        err <= TOLERANCE,
        "{name}: max abs error {err:e} > {TOLERANCE:e}"
    );
    assert!(
        peak > 1e-3,
        "{name}: the reference is all zeros, the test would prove nothing"
    );
}

/// The fixture spectrogram as the model's complex-as-channels layout.
fn fixture_cac() -> Tensor {
    let (re, im) = (t("spec.real"), t("spec.imag"));
    let (b, c, f, fr) = re.dims4().unwrap();
    Tensor::stack(&[re, im], 2)
        .unwrap()
        .reshape((b, c * 2, f, fr))
        .unwrap()
}

#[test]
fn stft_matches_torch() {
    let ours = model().spectrogram(&t("segment.input")).unwrap();
    assert_close("spec", &ours, &fixture_cac());
}

#[test]
fn istft_matches_torch() {
    let z = fixture_cac().unsqueeze(1).unwrap();
    let ours = model()
        .inverse_spectrogram(&z, 22050)
        .unwrap()
        .squeeze(1)
        .unwrap();
    assert_close("ispec", &ours, &t("ispec.output"));
}

#[test]
fn frequency_encoder_layer_matches_torch() {
    let spec = fixture_cac();
    let (mean, std) = stemdeck_demucs::nn::mean_std_per_item(&spec).unwrap();
    let x = spec
        .broadcast_sub(&mean)
        .unwrap()
        .broadcast_div(&(std + 1e-5).unwrap())
        .unwrap();
    let ours = model().encoder_layer(0).forward(&x).unwrap();
    assert_close("encoder.0", &ours, &t("encoder.0.output"));
}

#[test]
fn time_encoder_layer_matches_torch() {
    let ours = model()
        .time_encoder_layer(0)
        .forward(&t("tencoder.0.input"))
        .unwrap();
    assert_close("tencoder.0", &ours, &t("tencoder.0.output"));
}

#[test]
fn frequency_decoder_layer_matches_torch() {
    let ours = model()
        .decoder_layer(1)
        .forward(&t("decoder.1.input"), &t("decoder.1.skip"), 0)
        .unwrap();
    assert_close("decoder.1", &ours, &t("decoder.1.output"));
}

#[test]
fn transformer_self_attention_layer_matches_torch() {
    let layer = model()
        .transformer()
        .unwrap()
        .freq_self_attention(0)
        .unwrap();
    let ours = layer.forward(&t("ct.layers.0.input")).unwrap();
    assert_close("crosstransformer.layers.0", &ours, &t("ct.layers.0.output"));
}

#[test]
fn transformer_cross_attention_layer_matches_torch() {
    let layer = model()
        .transformer()
        .unwrap()
        .freq_cross_attention(1)
        .unwrap();
    let ours = layer
        .forward(&t("ct.layers.1.q"), &t("ct.layers.1.k"))
        .unwrap();
    assert_close("crosstransformer.layers.1", &ours, &t("ct.layers.1.output"));
}

#[test]
fn one_segment_matches_torch() {
    let ours = model().forward(&t("segment.input")).unwrap();
    assert_close("forward", &ours, &t("segment.output"));
}

fn planar(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

#[test]
fn separate_recipe_with_overlapping_segments_matches_torch() {
    let ckpt = Checkpoint::from_bytes(&fixture("tiny_htdemucs.fixture")).unwrap();
    let bag = BagOfModels::single(HTDemucs::from_checkpoint(&ckpt, &Device::Cpu).unwrap());
    let mix = planar(&t("separate.input"));
    let out = separate(&bag, &mix, &ApplyOptions::default(), &Silent).unwrap();
    let flat: Vec<f32> = out.iter().flatten().flatten().copied().collect();
    let ours = Tensor::from_vec(flat, t("separate.output").dims(), &Device::Cpu).unwrap();
    assert_close("separate", &ours, &t("separate.output"));
}

#[test]
fn official_th_checkpoint_loads_the_same_model() {
    let th = Checkpoint::from_bytes(&fixture("tiny_htdemucs_th.fixture")).unwrap();
    let st = Checkpoint::from_bytes(&fixture("tiny_htdemucs.fixture")).unwrap();
    assert_eq!(th.config.sources, st.config.sources);
    assert_eq!(th.config.segment, st.config.segment);
    assert_eq!(th.config.segment_samples(), 22050);
    assert_eq!(th.tensors.len(), st.tensors.len());
    for (name, tensor) in &st.tensors {
        let other = th
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from .th"));
        assert_eq!(max_abs_diff(tensor, other), 0.0, "{name} differs");
    }
    let model = HTDemucs::from_checkpoint(&th, &Device::Cpu).unwrap();
    let ours = model.forward(&t("segment.input")).unwrap();
    assert_close("forward from .th", &ours, &t("segment.output"));
}
