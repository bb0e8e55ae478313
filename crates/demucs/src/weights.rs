//! Reading HTDemucs checkpoints: safetensors files with demucs' `klass`/`args`/`kwargs`
//! metadata (as `demucs.hf` writes them), and the official `.th` files that
//! `demucs.pretrained` downloads (a torch zip pickle of `{klass, args, kwargs, state, ..}`),
//! read directly so that no user ever needs Python.
//!
//! This module parses bytes handed to it; finding, downloading and opening files is the
//! engine's job.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};
use serde_json::{Map, Value};

use crate::config::HTDemucsConfig;
use crate::error::DemucsError;

const HTDEMUCS_CLASS: &str = "demucs.htdemucs.HTDemucs";

/// A model's configuration and its parameters by PyTorch `state_dict` name.
#[derive(Debug)]
pub struct Checkpoint {
    pub config: HTDemucsConfig,
    pub tensors: HashMap<String, Tensor>,
}

/// Why a checkpoint's bytes could not be used; the engine adds the file name.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Model(#[from] DemucsError),
}

impl CheckpointError {
    fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }
}

type CResult<T> = std::result::Result<T, CheckpointError>;

impl Checkpoint {
    /// Reads either format, told apart by their first bytes (a zip archive for `.th`).
    pub fn from_bytes(bytes: &[u8]) -> CResult<Self> {
        if bytes.is_empty() {
            return Err(CheckpointError::invalid("the file is empty"));
        }
        if bytes.starts_with(b"PK\x03\x04") {
            Self::from_torch_zip(bytes)
        } else {
            Self::from_safetensors(bytes)
        }
    }

    pub fn from_safetensors(bytes: &[u8]) -> CResult<Self> {
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| {
            CheckpointError::invalid(format!("not a safetensors or .th checkpoint ({e})"))
        })?;
        let meta = meta.metadata().as_ref().ok_or_else(|| {
            CheckpointError::invalid("the safetensors file has no demucs metadata (klass/kwargs)")
        })?;
        let klass = meta.get("klass").map(String::as_str).unwrap_or_default();
        check_class(klass)?;
        let kwargs_text = meta
            .get("kwargs")
            .ok_or_else(|| CheckpointError::invalid("the safetensors metadata has no kwargs"))?;
        let kwargs: Value = serde_json::from_str(kwargs_text).map_err(|e| {
            CheckpointError::invalid(format!("the kwargs metadata is not JSON ({e})"))
        })?;
        let config = HTDemucsConfig::from_kwargs_json(&kwargs)?;
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
            .map_err(|e| CheckpointError::invalid(format!("cannot read its tensors ({e})")))?;
        Ok(Self {
            config,
            tensors: to_f32(tensors)?,
        })
    }

    pub fn from_torch_zip(bytes: &[u8]) -> CResult<Self> {
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| CheckpointError::invalid(format!("damaged checkpoint archive ({e})")))?;
        let pkl_name = zip
            .file_names()
            .filter_map(|n| n.ok().map(|n| n.into_owned()))
            .find(|n| n.ends_with("data.pkl"))
            .ok_or_else(|| {
                CheckpointError::invalid("the archive holds no data.pkl; not a torch checkpoint")
            })?;
        let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
        let mut pkl = Vec::new();
        zip.by_name(&pkl_name)
            .and_then(|mut f| f.read_to_end(&mut pkl).map_err(Into::into))
            .map_err(|e| CheckpointError::invalid(format!("cannot read data.pkl ({e})")))?;
        let mut stack = Stack::empty();
        stack.read_loop(&mut Cursor::new(&pkl)).map_err(|e| {
            CheckpointError::invalid(format!("cannot parse the checkpoint pickle ({e})"))
        })?;
        let package = stack.finalize().map_err(|e| {
            CheckpointError::invalid(format!("cannot parse the checkpoint pickle ({e})"))
        })?;
        let Object::Dict(entries) = package else {
            return Err(CheckpointError::invalid(
                "the checkpoint is not a demucs package (no klass/kwargs/state)",
            ));
        };
        let field = |name: &str| {
            entries
                .iter()
                .find(|(k, _)| *k == Object::Unicode(name.into()))
                .map(|(_, v)| v)
        };
        match field("klass") {
            Some(Object::Class {
                module_name,
                class_name,
            }) => check_class(&format!("{module_name}.{class_name}"))?,
            _ => {
                return Err(CheckpointError::invalid(
                    "the checkpoint does not name its model class",
                ));
            }
        }
        let kwargs = field("kwargs")
            .ok_or_else(|| CheckpointError::invalid("the checkpoint has no kwargs"))?;
        let config = HTDemucsConfig::from_kwargs_json(&pickle_to_json(kwargs))?;
        let state = match field("state") {
            Some(Object::Dict(state)) => state.clone(),
            Some(Object::Reduce { args, .. }) => ordered_dict_items(args).ok_or_else(|| {
                CheckpointError::invalid("the checkpoint state is not a dict of tensors")
            })?,
            _ => return Err(CheckpointError::invalid("the checkpoint has no state dict")),
        };
        let data_dir = std::path::PathBuf::from(format!("{prefix}data"));
        let mut tensors = HashMap::new();
        for (name, value) in state {
            let Object::Unicode(name) = name else {
                continue;
            };
            let info = value
                .into_tensor_info(Object::Unicode(name.clone()), &data_dir)
                .map_err(|e| {
                    CheckpointError::invalid(format!("tensor {name} is unreadable ({e})"))
                })?
                .ok_or_else(|| {
                    CheckpointError::invalid(format!("state entry {name} is not a tensor"))
                })?;
            tensors.insert(name.clone(), read_zip_tensor(&mut zip, &info)?);
        }
        if tensors.is_empty() {
            return Err(CheckpointError::invalid(
                "the checkpoint state holds no tensors",
            ));
        }
        Ok(Self {
            config,
            tensors: to_f32(tensors)?,
        })
    }
}

fn check_class(klass: &str) -> CResult<()> {
    if klass == HTDEMUCS_CLASS {
        Ok(())
    } else if klass.is_empty() {
        Err(CheckpointError::invalid(
            "it does not say which model class it holds",
        ))
    } else {
        Err(CheckpointError::Model(DemucsError::Unsupported(format!(
            "model class {klass}; Stemdeck runs HTDemucs (Demucs v4) models"
        ))))
    }
}

fn to_f32(tensors: HashMap<String, Tensor>) -> CResult<HashMap<String, Tensor>> {
    tensors
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_dtype(DType::F32).map_err(DemucsError::from)?)))
        .collect()
}

fn read_zip_tensor(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    info: &candle_core::pickle::TensorInfo,
) -> CResult<Tensor> {
    let layout = &info.layout;
    if !layout.is_contiguous() {
        return Err(CheckpointError::invalid(format!(
            "tensor {} is stored non-contiguously",
            info.name
        )));
    }
    let mut file = zip.by_name(&info.path).map_err(|e| {
        CheckpointError::invalid(format!("tensor data {} is missing ({e})", info.path))
    })?;
    let mut raw = Vec::new();
    file.read_to_end(&mut raw).map_err(|e| {
        CheckpointError::invalid(format!("tensor data {} is unreadable ({e})", info.path))
    })?;
    let elem = info.dtype.size_in_bytes();
    let start = layout.start_offset() * elem;
    let len = layout.shape().elem_count() * elem;
    let data = raw
        .get(start..start + len)
        .ok_or_else(|| CheckpointError::invalid(format!("tensor {} is truncated", info.name)))?;
    Tensor::from_raw_buffer(data, info.dtype, layout.dims(), &Device::Cpu)
        .map_err(|e| CheckpointError::invalid(format!("tensor {} is unreadable ({e})", info.name)))
}

/// `collections.OrderedDict` pickles as a reduce whose argument holds `(key, value)` pairs.
fn ordered_dict_items(args: &Object) -> Option<Vec<(Object, Object)>> {
    let Object::Tuple(items) = args else {
        return None;
    };
    let Some(Object::List(pairs)) = items.first() else {
        return None;
    };
    pairs
        .iter()
        .map(|p| match p {
            Object::Tuple(kv) | Object::List(kv) if kv.len() == 2 => {
                Some((kv[0].clone(), kv[1].clone()))
            }
            _ => None,
        })
        .collect()
}

/// Turns the plain-data part of a pickle (the model kwargs) into JSON, so that both formats
/// share one config parser. `fractions.Fraction` becomes demucs.hf's fraction object.
fn pickle_to_json(obj: &Object) -> Value {
    match obj {
        Object::Int(v) => Value::from(*v),
        Object::Long(v) => Value::from(*v),
        Object::Float(v) => Value::from(*v),
        Object::Bool(v) => Value::from(*v),
        Object::Unicode(s) => Value::from(s.clone()),
        Object::None => Value::Null,
        Object::List(items) | Object::Tuple(items) => {
            Value::Array(items.iter().map(pickle_to_json).collect())
        }
        Object::Dict(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                if let Object::Unicode(k) = k {
                    map.insert(k.clone(), pickle_to_json(v));
                }
            }
            Value::Object(map)
        }
        Object::Reduce { callable, args } => match (callable.as_ref(), args.as_ref()) {
            (
                Object::Class {
                    module_name,
                    class_name,
                },
                Object::Tuple(a),
            ) if module_name == "fractions" && class_name == "Fraction" => {
                fraction_json(a).unwrap_or(Value::Null)
            }
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

fn fraction_json(args: &[Object]) -> Option<Value> {
    let (num, den) = match args {
        [Object::Unicode(s)] => match s.split_once('/') {
            Some((n, d)) => (n.trim().parse().ok()?, d.trim().parse().ok()?),
            None => (s.trim().parse().ok()?, 1i64),
        },
        [n, d] => (int_of(n)?, int_of(d)?),
        _ => return None,
    };
    Some(serde_json::json!({"_type": "fraction", "numerator": num, "denominator": den}))
}

fn int_of(o: &Object) -> Option<i64> {
    match o {
        Object::Int(v) => Some(*v as i64),
        Object::Long(v) => Some(*v),
        _ => None,
    }
}
