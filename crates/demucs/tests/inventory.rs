//! The parameter inventory and the strict load: the model asks for exactly the tensors a
//! demucs checkpoint holds, and a checkpoint that differs is refused with every problem named.

use candle_core::{DType, Tensor};
use stemdeck_demucs::{
    Checkpoint, Device, HTDemucs, TensorProblem, parameter_shapes, tensor_problems,
};

fn fixture(name: &str) -> Checkpoint {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    Checkpoint::from_bytes(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn the_inventory_is_exactly_the_tensors_pytorch_saved_for_the_toy_model() {
    for name in ["tiny_htdemucs.fixture", "tiny_htdemucs_th.fixture"] {
        let checkpoint = fixture(name);
        let shapes = parameter_shapes(&checkpoint.config).unwrap();
        let saved: std::collections::BTreeMap<String, Vec<usize>> = checkpoint
            .tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.dims().to_vec()))
            .collect();
        assert_eq!(shapes, saved, "{name}");
        assert_eq!(tensor_problems(&checkpoint).unwrap(), [], "{name}");
        HTDemucs::from_checkpoint_strict(&checkpoint, &Device::Cpu).unwrap();
    }
}

#[test]
fn missing_misshapen_and_extra_tensors_are_all_named() {
    let mut checkpoint = fixture("tiny_htdemucs.fixture");
    let tensors = &mut checkpoint.tensors;
    let bias_shape = tensors["encoder.1.conv.bias"].dims().to_vec();
    tensors.remove("encoder.1.conv.bias").unwrap();
    let weight_shape = tensors["decoder.0.conv_tr.weight"].dims().to_vec();
    tensors.insert(
        "decoder.0.conv_tr.weight".into(),
        Tensor::zeros((2, 3), DType::F32, &candle_core::Device::Cpu).unwrap(),
    );
    tensors.insert(
        "model.extra".into(),
        Tensor::zeros(5, DType::F32, &candle_core::Device::Cpu).unwrap(),
    );
    assert_eq!(
        tensor_problems(&checkpoint).unwrap(),
        [
            TensorProblem::WrongShape {
                name: "decoder.0.conv_tr.weight".into(),
                expected: weight_shape,
                found: vec![2, 3],
            },
            TensorProblem::Missing {
                name: "encoder.1.conv.bias".into(),
                expected: bias_shape,
            },
            TensorProblem::Unexpected {
                name: "model.extra".into(),
                found: vec![5],
            },
        ]
    );
    // The lenient load ignores the extra tensor; the strict one does not.
    checkpoint.tensors.remove("model.extra");
    let mut fixed = fixture("tiny_htdemucs.fixture");
    fixed.tensors.insert(
        "model.extra".into(),
        checkpoint.tensors["encoder.0.conv.bias"].clone(),
    );
    HTDemucs::from_checkpoint(&fixed, &Device::Cpu).unwrap();
    let err = HTDemucs::from_checkpoint_strict(&fixed, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("tensor model.extra"), "{err}");

    for extra in ["a", "b", "c"] {
        checkpoint.tensors.insert(
            format!("{extra}.unused"),
            Tensor::zeros(1, DType::F32, &candle_core::Device::Cpu).unwrap(),
        );
    }
    let err = HTDemucs::from_checkpoint_strict(&checkpoint, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "model weights do not fit the model: tensor a.unused (shape [1]) is not part of this \
         model; tensor b.unused (shape [1]) is not part of this model; tensor c.unused (shape \
         [1]) is not part of this model; and 2 more"
    );
}
