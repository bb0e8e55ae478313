//! Fast CPU kernels for the hot paths of the forward pass.
//!
//! Candle's CPU backend runs each elementwise op as its own pass over memory with scalar
//! `erf`/`exp`, normalises with several intermediate tensors, and lowers convolutions to an
//! im2col of the whole input, which for HTDemucs' large frequency planes costs hundreds of
//! megabytes and a permute before and after every frequency convolution. These kernels work
//! on the contiguous `f32` buffers instead:
//! - convolutions are an im2col of a block of output columns at a time into a bounded
//!   scratch buffer, multiplied by the weights with the `gemm` crate (the same one candle
//!   uses) straight into the output, in the `[C, F, T]` layout the model keeps, so no
//!   permutes;
//! - transposed convolutions are one gemm per cache-sized block of positions followed by
//!   its overlap-add, blocks that cannot meet running in parallel;
//! - in [`crate::Precision::Fast`] on CPUs with `avx512_bf16`, every large multiply takes
//!   `bf16` inputs instead ([`bf16`]): weights packed once ([`Matrix::Bf16`]), activations
//!   per block, accumulation and everything around the multiplies still `f32`;
//! - GroupNorm computes its statistics in `f64` in one pass and applies the affine map
//!   fused with the activation that follows it (GELU, or GLU plus the residual LayerScale
//!   of a DConv block);
//! - GELU, GLU and softmax use vectorisable `erfc`/`exp` approximations accurate to about
//!   one `f32` rounding.
//!
//! Every loop is written so that LLVM vectorises it; on x86-64 each kernel is compiled twice
//! and the AVX2+FMA copy is chosen at run time. Work is split with rayon, so the thread
//! count follows `RAYON_NUM_THREADS` like candle's own kernels.
//!
//! The model falls back to plain candle ops on other devices; each module's tests check its
//! kernels against those plain ops.

use candle_core::{DType, Result, Storage, Tensor};
use half::slice::HalfFloatSliceExt;

/// Compiles `$body` once for the baseline target and once with AVX2 and FMA enabled, and
/// picks the fastest copy the CPU supports when called.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])* $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn portable($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    portable($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
}

mod attention;
pub mod bf16;
mod conv;
mod gemm;
mod math;
mod norm;
#[cfg(test)]
mod testing;

pub use attention::{attention, linear};
pub use conv::{ConvGeometry, Epilogue, conv_transpose, conv2d};
pub use gemm::gemm;
use gemm::{gemm_raw, gemm_single};
pub use math::{erfc_non_negative, exp, gelu, gelu_in_place, glu, sigmoid, softmax_rows_in_place};
pub use norm::{
    Activation, NormShape, add_scaled_rows, group_norm, group_norm_glu_residual, group_norm_tokens,
    layer_norm_rows, project_norm_glu_residual,
};

thread_local! {
    static WIDE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on the values of a CPU tensor as `f32`, in row-major order. `f16` tensors (the
/// weights [`compact`] kept in half precision) are widened into a temporary buffer.
pub fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let range = layout.start_offset()..layout.start_offset() + t.elem_count();
    match &*storage {
        Storage::Cpu(cpu) if t.dtype() == DType::F16 => {
            let half = &cpu.as_slice::<half::f16>()?[range];
            // One widening buffer per thread, reused: weights are widened on every use.
            let mut wide = WIDE.with(|w| w.take());
            wide.resize(half.len(), 0.0);
            half.convert_to_f32_slice(&mut wide);
            let result = f(&wide);
            WIDE.with(|w| w.replace(wide));
            Ok(result)
        }
        Storage::Cpu(cpu) => Ok(f(&cpu.as_slice::<f32>()?[range])),
        _ => candle_core::bail!("CPU kernel called on a tensor that is not on the CPU"),
    }
}

/// A weight as the CPU kernels keep it: in `f16` when every value is exactly an `f16`
/// (checkpoints stored in half precision, like the ONNX-derived htdemucs), which halves its
/// memory and loses nothing; otherwise as given. Tensors on other devices are left alone,
/// since candle's own ops expect `f32`.
pub fn compact(weight: Tensor) -> Result<Tensor> {
    if !weight.device().is_cpu() || weight.dtype() != DType::F32 {
        return Ok(weight);
    }
    let half = weight.to_dtype(DType::F16)?;
    let exact = with_values(&weight, |wide| {
        with_values(&half, |back| {
            wide.iter()
                .zip(back)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        })
    })??;
    Ok(if exact { half } else { weight })
}

/// A weight matrix as the kernels multiply by it: its `f32` values, or its packed `bf16`
/// copy (see [`bf16`]).
#[derive(Debug, Clone, Copy)]
pub enum Matrix<'a> {
    F32(&'a [f32]),
    Bf16(&'a bf16::Packed),
}

impl Matrix<'_> {
    /// Panics unless this is a `lines x depth` matrix (`[out, in]` for a weight).
    fn assert_shape(&self, lines: usize, depth: usize, what: &str) {
        let ok = match self {
            Matrix::F32(values) => values.len() == lines * depth,
            Matrix::Bf16(packed) => packed.lines() == lines && packed.depth() == depth,
        };
        assert!(ok, "{what}: bad weight shape");
    }
}

/// `dst[m x n] = (accumulate ? dst : 0) + weight[m x k] * rhs[k x n]`, `dst` row-major and
/// `rhs` read with a row stride of `rhs_row` values. An `f32` weight is read with
/// `weight_strides`; a `bf16` one (packed with those strides) makes `rhs` be packed into
/// `scratch` first.
#[allow(clippy::too_many_arguments)]
fn weight_times(
    weight: Matrix,
    weight_strides: (usize, usize),
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    (rhs, rhs_row): (&[f32], usize),
    scratch: &mut bf16::Packed,
    parallel: bool,
) {
    match weight {
        Matrix::F32(w) => {
            let multiply = if parallel { gemm } else { gemm_single };
            multiply(
                m,
                n,
                k,
                dst,
                (n, 1),
                accumulate,
                w,
                weight_strides,
                rhs,
                (rhs_row, 1),
            );
        }
        Matrix::Bf16(w) => {
            scratch.repack_right(rhs, (k, n), (rhs_row, 1));
            bf16::matmul(w, scratch, dst, n, accumulate, parallel);
        }
    }
}

/// Wraps a buffer of this module's output as a CPU tensor, without copying.
pub fn tensor(values: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
    Tensor::from_vec(values, shape, &candle_core::Device::Cpu)
}

pub(crate) fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// A pointer to an output buffer that tasks write disjoint parts of.
pub(crate) struct SharedOut(*mut f32, usize);
// SAFETY: every task writes its own columns; see the uses.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    pub(crate) fn base(&self) -> (*mut f32, usize) {
        (self.0, self.1)
    }

    /// The `width` values of row `row` (of `stride` values) from column `col`.
    ///
    /// # Safety
    /// No two live slices may overlap, and the range must lie inside the buffer.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn row(
        &self,
        row: usize,
        stride: usize,
        col: usize,
        width: usize,
    ) -> &mut [f32] {
        let at = row * stride + col;
        assert!(at + width <= self.1, "conv: output range out of bounds");
        // SAFETY: in bounds (checked) and disjoint (the caller's promise).
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at), width) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::*;
    use candle_core::Device;

    #[test]
    fn weights_are_kept_in_half_precision_only_when_exact() {
        let exact = Tensor::new(&[0.5f32, -2.0, 0.099_975_586, 1024.0], &Device::Cpu).unwrap();
        let kept = compact(exact.clone()).unwrap();
        assert_eq!(kept.dtype(), DType::F16);
        assert_eq!(values(&kept.to_dtype(DType::F32).unwrap()), values(&exact));
        assert_eq!(with_values(&kept, |v| v.to_vec()).unwrap(), values(&exact));
        // 0.1 is not an f16: the weight stays f32 and bit-exact.
        let inexact = Tensor::new(&[0.5f32, 0.1], &Device::Cpu).unwrap();
        let kept = compact(inexact.clone()).unwrap();
        assert_eq!(kept.dtype(), DType::F32);
        assert_eq!(values(&kept), values(&inexact));
    }
}
