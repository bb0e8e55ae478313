//! The f32 matrix multiply: the `gemm` crate, called with strides.

use super::threads;

/// `dst[m x n] = (accumulate ? dst : 0) + lhs[m x k] * rhs[k x n]`, every matrix given by
/// its base slice and its (row, column) strides in elements. Large products use every
/// thread.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_strides: (usize, usize),
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) {
    let parallel = m * n * k >= 64 * 64 * 64 && threads() > 1;
    // SAFETY: `dst` is an exclusive borrow of `dst.len()` values.
    unsafe {
        gemm_raw(
            m,
            n,
            k,
            (dst.as_mut_ptr(), dst.len()),
            dst_strides,
            accumulate,
            lhs,
            lhs_strides,
            rhs,
            rhs_strides,
            parallel,
        )
    }
}

/// [`gemm`] into a destination given as a pointer and the number of values it may reach.
///
/// # Safety
/// `dst.0` must be valid for writes of `dst.1` values, and no other thread may access the
/// elements this product writes while it runs.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm_raw(
    m: usize,
    n: usize,
    k: usize,
    dst: (*mut f32, usize),
    dst_strides: (usize, usize),
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last =
        |rows: usize, cols: usize, (rs, cs): (usize, usize)| (rows - 1) * rs + (cols - 1) * cs;
    assert!(
        last(m, n, dst_strides) < dst.1,
        "gemm: destination too short"
    );
    if k > 0 {
        assert!(
            last(m, k, lhs_strides) < lhs.len(),
            "gemm: left operand too short"
        );
        assert!(
            last(k, n, rhs_strides) < rhs.len(),
            "gemm: right operand too short"
        );
    }
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every element the strides reach inside its buffer; the
    // caller guarantees `dst` is writable and not accessed elsewhere meanwhile.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst_strides.1 as isize,
            dst_strides.0 as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_strides.1 as isize,
            lhs_strides.0 as isize,
            rhs.as_ptr(),
            rhs_strides.1 as isize,
            rhs_strides.0 as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// [`gemm`] on the calling thread only, for tasks that are already parallel.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_single(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_strides: (usize, usize),
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) {
    // SAFETY: `dst` is an exclusive borrow of `dst.len()` values.
    unsafe {
        gemm_raw(
            m,
            n,
            k,
            (dst.as_mut_ptr(), dst.len()),
            dst_strides,
            accumulate,
            lhs,
            lhs_strides,
            rhs,
            rhs_strides,
            false,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::*;

    #[test]
    fn pointwise_and_strided_gemm_agree_with_candle_matmul() {
        let a = randn(&[7, 5], 21);
        let b = randn(&[5, 9], 22);
        let mut c = vec![1f32; 7 * 9];
        gemm(
            7,
            9,
            5,
            &mut c,
            (9, 1),
            true,
            &values(&a),
            (5, 1),
            &values(&b),
            (9, 1),
        );
        let want = (a.matmul(&b).unwrap() + 1.0).unwrap();
        assert_close(&c, &values(&want), 1e-6, "gemm");
        // A transposed operand through strides.
        let at = a.t().unwrap().contiguous().unwrap();
        let mut c = vec![0f32; 7 * 9];
        gemm(
            7,
            9,
            5,
            &mut c,
            (9, 1),
            false,
            &values(&at),
            (1, 7),
            &values(&b),
            (9, 1),
        );
        assert_close(&c, &values(&a.matmul(&b).unwrap()), 1e-6, "gemm transposed");
    }
}
