//! What an HTDemucs is made of: the name and shape of every parameter it reads, and a
//! strict load that, like PyTorch's `load_state_dict(strict=True)` (which demucs itself
//! uses), refuses a checkpoint with missing, misshapen or unexpected tensors and names them.
//!
//! Both work by building the model through a recording `VarBuilder` backend, so the list
//! is always the one the model code really asks for, never a copy that could drift.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use candle_nn::var_builder::SimpleBackend;

use crate::config::HTDemucsConfig;
use crate::error::{DemucsError, Result};
use crate::model::HTDemucs;
use crate::weights::Checkpoint;

/// One way a checkpoint's tensors do not fit the model built from its own settings.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorProblem {
    Missing {
        name: String,
        expected: Vec<usize>,
    },
    WrongShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    Unexpected {
        name: String,
        found: Vec<usize>,
    },
}

impl fmt::Display for TensorProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorProblem::Missing { name, expected } => {
                write!(
                    f,
                    "tensor {name} is missing (the model needs one of shape {expected:?})"
                )
            }
            TensorProblem::WrongShape {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor {name} has shape {found:?} where the model needs {expected:?}"
            ),
            TensorProblem::Unexpected { name, found } => write!(
                f,
                "tensor {name} (shape {found:?}) is not part of this model"
            ),
        }
    }
}

/// A `VarBuilder` backend that notes every parameter the model asks for. With checkpoint
/// tensors it also checks them; a missing or misshapen one is noted and replaced by zeros so
/// that the build goes on and every problem is found in one pass.
struct Recorder<'a> {
    tensors: Option<&'a HashMap<String, Tensor>>,
    requested: Mutex<BTreeMap<String, Vec<usize>>>,
    problems: Mutex<Vec<TensorProblem>>,
}

impl Recorder<'_> {
    fn note(&self, problem: TensorProblem) {
        self.problems.lock().expect("recorder lock").push(problem);
    }
}

impl SimpleBackend for &Recorder<'_> {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let expected = shape.dims().to_vec();
        self.requested
            .lock()
            .expect("recorder lock")
            .insert(name.to_string(), expected.clone());
        if let Some(tensors) = self.tensors {
            match tensors.get(name) {
                Some(t) if t.shape() == &shape => return t.to_device(dev)?.to_dtype(dtype),
                Some(t) => self.note(TensorProblem::WrongShape {
                    name: name.to_string(),
                    expected,
                    found: t.dims().to_vec(),
                }),
                None => self.note(TensorProblem::Missing {
                    name: name.to_string(),
                    expected,
                }),
            }
        }
        // A broadcast scalar: the right shape without allocating the parameter.
        Tensor::zeros((), dtype, dev)?.broadcast_as(shape)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("the model asked for {name} without saying its shape")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.is_none_or(|t| t.contains_key(name))
    }
}

fn build<'a>(
    cfg: &HTDemucsConfig,
    tensors: Option<&'a HashMap<String, Tensor>>,
    device: &Device,
) -> Result<(HTDemucs, Recorder<'a>)> {
    let recorder = Recorder {
        tensors,
        requested: Mutex::new(BTreeMap::new()),
        problems: Mutex::new(Vec::new()),
    };
    let vb = VarBuilder::from_backend(Box::new(&recorder), DType::F32, device.clone());
    let model = HTDemucs::new(cfg, vb).map_err(|e| DemucsError::WeightMismatch(e.to_string()))?;
    Ok((model, recorder))
}

/// Every parameter an HTDemucs with these settings reads, by PyTorch `state_dict` name,
/// with its shape.
pub fn parameter_shapes(cfg: &HTDemucsConfig) -> Result<BTreeMap<String, Vec<usize>>> {
    let (_, recorder) = build(cfg, None, &Device::Cpu)?;
    Ok(recorder.requested.into_inner().expect("recorder lock"))
}

/// Everything about a checkpoint's tensors that does not fit the model its settings
/// describe, in name order; empty when it fits exactly.
pub fn tensor_problems(checkpoint: &Checkpoint) -> Result<Vec<TensorProblem>> {
    Ok(check(checkpoint, &Device::Cpu)?.1)
}

fn check(checkpoint: &Checkpoint, device: &Device) -> Result<(HTDemucs, Vec<TensorProblem>)> {
    let (model, recorder) = build(&checkpoint.config, Some(&checkpoint.tensors), device)?;
    let requested = recorder.requested.into_inner().expect("recorder lock");
    let mut problems = recorder.problems.into_inner().expect("recorder lock");
    problems.extend(
        checkpoint
            .tensors
            .iter()
            .filter(|(name, _)| !requested.contains_key(*name))
            .map(|(name, t)| TensorProblem::Unexpected {
                name: name.clone(),
                found: t.dims().to_vec(),
            }),
    );
    problems.sort_by(|a, b| problem_name(a).cmp(problem_name(b)));
    Ok((model, problems))
}

fn problem_name(problem: &TensorProblem) -> &str {
    match problem {
        TensorProblem::Missing { name, .. }
        | TensorProblem::WrongShape { name, .. }
        | TensorProblem::Unexpected { name, .. } => name,
    }
}

impl HTDemucs {
    /// Builds the model like [`HTDemucs::from_checkpoint`], but also refuses tensors the
    /// model does not use, and names up to three problems (and how many more there are).
    pub fn from_checkpoint_strict(checkpoint: &Checkpoint, device: &Device) -> Result<Self> {
        let (model, problems) = check(checkpoint, device)?;
        if problems.is_empty() {
            return Ok(model);
        }
        let mut summary = problems
            .iter()
            .take(3)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        if problems.len() > 3 {
            summary += &format!("; and {} more", problems.len() - 3);
        }
        Err(DemucsError::WeightMismatch(summary))
    }
}
