//! Checkpoints with the real HTDemucs architecture and made-up weights, for import tests:
//! safetensors files with demucs' `klass`/`args`/`kwargs` metadata, as `demucs.hf` writes
//! them, holding float16 tensors (as the official checkpoints do) of the shapes the model
//! asks for. Shared by the engine's and the CLI's tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::{Value, json};
use stemdeck_demucs::{HTDemucsConfig, parameter_shapes};

pub const FOUR_STEMS: [&str; 4] = ["drums", "bass", "other", "vocals"];
pub const SIX_STEMS: [&str; 6] = ["drums", "bass", "other", "vocals", "guitar", "piano"];

/// The kwargs of the published htdemucs (and of htdemucs_6s and each htdemucs_ft member,
/// which differ only in their sources).
pub fn htdemucs_kwargs(sources: &[&str]) -> Value {
    let mut kwargs: Value = serde_json::from_str(
        r#"{
            "audio_channels": 2, "samplerate": 44100,
            "segment": {"_type": "fraction", "numerator": 39, "denominator": 5},
            "channels": 48, "growth": 2, "nfft": 4096, "depth": 4, "freq_emb": 0.2,
            "emb_scale": 10, "emb_smooth": true, "kernel_size": 8, "stride": 4,
            "time_stride": 2, "context": 1, "context_enc": 0, "norm_starts": 4,
            "norm_groups": 4, "dconv_mode": 3, "dconv_depth": 2, "dconv_comp": 8,
            "dconv_init": 0.001, "bottom_channels": 512, "t_layers": 5,
            "t_hidden_scale": 4.0, "t_heads": 8, "t_dropout": 0.0, "t_layer_scale": true,
            "t_gelu": true, "t_emb": "sin", "t_max_positions": 10000,
            "t_max_period": 10000.0, "t_weight_pos_embed": 1.0, "t_norm_in": true,
            "t_norm_in_group": false, "t_group_norm": false, "t_norm_first": true,
            "t_norm_out": true, "t_cross_first": false, "t_sin_random_shift": 0,
            "cac": true, "rescale": 0.1
        }"#,
    )
    .unwrap();
    kwargs["sources"] = json!(sources);
    kwargs
}

/// The name and shape of every tensor a model with these kwargs needs.
pub fn shapes_for(kwargs: &Value) -> BTreeMap<String, Vec<usize>> {
    parameter_shapes(&HTDemucsConfig::from_kwargs_json(kwargs).unwrap()).unwrap()
}

/// A safetensors checkpoint with `kwargs` in its metadata and one float16 tensor per entry
/// of `shapes`, filled with a repeating pattern of small exactly-representable values.
pub fn safetensors_checkpoint(kwargs: &Value, shapes: &BTreeMap<String, Vec<usize>>) -> Vec<u8> {
    // 0, 0.5, -0.5, 0.25, -0.25, 0.125, -0.125 as float16 bits.
    const PATTERN: [u16; 7] = [0x0000, 0x3800, 0xB800, 0x3400, 0xB400, 0x3000, 0xB000];
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        json!({
            "klass": "demucs.htdemucs.HTDemucs",
            "args": "[]",
            "kwargs": kwargs.to_string(),
        }),
    );
    // Copied in blocks: element by element is slow in an unoptimised test build.
    let block: Vec<u8> = PATTERN
        .iter()
        .cycle()
        .take(PATTERN.len() * 4096)
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let mut data = Vec::new();
    for (name, shape) in shapes {
        let start = data.len();
        let mut left = 2 * shape.iter().product::<usize>();
        while left > 0 {
            let take = left.min(block.len());
            data.extend_from_slice(&block[..take]);
            left -= take;
        }
        header.insert(
            name.clone(),
            json!({"dtype": "F16", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut header = Value::Object(header).to_string().into_bytes();
    // The safetensors writer pads its header to 8 bytes with spaces; so does this one.
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header);
    file.extend(data);
    file
}

/// A valid htdemucs-architecture checkpoint with these sources.
pub fn htdemucs_checkpoint(sources: &[&str]) -> Vec<u8> {
    let kwargs = htdemucs_kwargs(sources);
    safetensors_checkpoint(&kwargs, &shapes_for(&kwargs))
}
