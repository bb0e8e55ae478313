//! Matrix multiplies in bf16 with f32 accumulation, through AVX-512 BF16's `vdpbf16ps`.
//!
//! `vdpbf16ps` multiplies pairs of bf16 values and adds both products to one f32 lane, so
//! it does twice the work of an f32 FMA per instruction; on Zen 4, which runs 512-bit f32
//! FMAs at AVX2 width, that is the only way past the f32 peak. Its inputs are pairs along
//! the inner dimension `k`, so both operands are packed into panels of such pairs
//! (one `u32` per pair): the left operand in panels of [`MR`] rows, the right one in panels
//! of [`NR`] columns, each panel `[k / 2][width]` pairs, `k` padded with a zero to even.
//! Weights are packed once when the model is built; activations per block, where the f32
//! path already blocks. The products accumulate in f32 and are written as f32: only the
//! inputs are rounded to bf16 (8 bits of mantissa, round to nearest even).
//!
//! [`supported`] says whether this CPU can run them; callers keep the f32 path otherwise.

use rayon::prelude::*;

use super::threads;

/// Rows of the left operand per panel, and of the output per micro-kernel tile.
pub const MR: usize = 12;
/// Columns of the right operand per panel, and of the output per micro-kernel tile: two
/// 16-lane registers.
pub const NR: usize = 32;

/// Whether this CPU has the bf16 dot product (`avx512_bf16`, with AVX-512F and BW).
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *SUPPORTED.get_or_init(|| {
            std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512bf16")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x` rounded to the nearest bf16 (ties to even), as its 16 bits; NaN stays NaN.
#[inline(always)]
fn bf16_bits(x: f32) -> u32 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16;
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        (bits >> 16) | 0x40
    } else {
        rounded
    }
}

/// Two values rounded to bf16 and packed into one pair, `lo` in the low half.
#[inline(always)]
fn pair(lo: f32, hi: f32) -> u32 {
    bf16_bits(lo) | bf16_bits(hi) << 16
}

/// `out[q] = pair(line[2q], line[2q + 1])`, a missing last value read as zero: the bf16s of
/// a run of values, in order.
fn pairs_along(out: &mut [u32], line: &[f32]) {
    assert_eq!(
        out.len(),
        line.len().div_ceil(2),
        "bf16 pack: pairs for a line"
    );
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if supported() {
        // SAFETY: the CPU has the features; the lengths were checked.
        done = unsafe { avx512::pairs_along(out, line) };
    }
    let mut chunks = line[2 * done..].chunks_exact(2);
    for (o, two) in out[done..].iter_mut().zip(&mut chunks) {
        *o = pair(two[0], two[1]);
    }
    if let ([.., last], [rest]) = (&mut *out, chunks.remainder()) {
        *last = pair(*rest, 0.0);
    }
}

/// `out[r] = pair(lo[r], hi[r])`.
fn pairs_across(out: &mut [u32], lo: &[f32], hi: &[f32]) {
    assert!(
        lo.len() >= out.len() && hi.len() >= out.len(),
        "bf16 pack: runs too short"
    );
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if supported() {
        // SAFETY: the CPU has the features; the lengths were checked.
        done = unsafe { avx512::pairs_across(out, lo, hi) };
    }
    for ((o, &l), &h) in out[done..].iter_mut().zip(&lo[done..]).zip(&hi[done..]) {
        *o = pair(l, h);
    }
}

/// One operand of a bf16 product, packed in the order the micro-kernel reads it.
///
/// `lines` is the operand's other dimension (the left operand's rows, the right operand's
/// columns), `depth` the inner dimension `k`, and `width` the lines per panel.
#[derive(Debug, Clone, Default)]
pub struct Packed {
    pairs: Vec<u32>,
    lines: usize,
    depth: usize,
    width: usize,
    /// A left operand whose lines were rows of values: each line's pairs stay together
    /// (`[line][k / 2]` within a panel), so packing is a vectorised conversion; the
    /// micro-kernel broadcasts from any layout alike.
    line_major: bool,
    /// Two rows of values for [`Packed::repack_right_rows`], kept for the next call.
    scratch: Vec<f32>,
}

impl Packed {
    /// The left operand `a[m x k]` of `a * b`, read from `src` with (row, column) strides.
    pub fn left(src: &[f32], (m, k): (usize, usize), strides: (usize, usize)) -> Self {
        let mut packed = Self::default();
        packed.repack_left(src, (m, k), strides);
        packed
    }

    /// The right operand `b[k x n]` of `a * b`, read from `src` with (row, column) strides.
    pub fn right(src: &[f32], (k, n): (usize, usize), (row, col): (usize, usize)) -> Self {
        let mut packed = Self::default();
        packed.repack_right(src, (k, n), (row, col));
        packed
    }

    /// [`Packed::left`] into this buffer, reusing its memory.
    pub fn repack_left(&mut self, src: &[f32], (m, k): (usize, usize), strides: (usize, usize)) {
        self.line_major = strides.1 == 1;
        self.pack(src, (m, k), strides, MR);
    }

    /// [`Packed::right`] into this buffer, reusing its memory.
    pub fn repack_right(
        &mut self,
        src: &[f32],
        (k, n): (usize, usize),
        (row, col): (usize, usize),
    ) {
        self.line_major = false;
        self.pack(src, (n, k), (col, row), NR);
    }

    /// The right operand `b[k x n]` made row by row: `fill(r, row)` writes row `r` (`n`
    /// values). Each pair of rows is made in a small buffer that stays in L1 and converted
    /// straight into the panels, so an operand built on the fly (an im2col) never exists
    /// as a whole in `f32`.
    pub fn repack_right_rows(&mut self, (k, n): (usize, usize), fill: impl Fn(usize, &mut [f32])) {
        let (pairs, panels) = (k.div_ceil(2), n.div_ceil(NR));
        self.pairs.resize(panels * pairs * NR, 0);
        (self.lines, self.depth, self.width, self.line_major) = (n, k, NR, false);
        // Rows padded to whole panels: the padding columns pack as zeros.
        let padded = panels * NR;
        let mut rows = std::mem::take(&mut self.scratch);
        rows.clear();
        rows.resize(2 * padded, 0.0);
        let (lo, hi) = rows.split_at_mut(padded);
        for q in 0..pairs {
            fill(2 * q, &mut lo[..n]);
            if 2 * q + 1 < k {
                fill(2 * q + 1, &mut hi[..n]);
            } else {
                hi.fill(0.0);
            }
            for (p, panel) in self.pairs.chunks_mut(pairs * NR).enumerate() {
                let at = p * NR;
                pairs_across(
                    &mut panel[q * NR..][..NR],
                    &lo[at..at + NR],
                    &hi[at..at + NR],
                );
            }
        }
        self.scratch = rows;
    }

    /// The left operand `exp(s - max(s))` for each row `s` of `scores` `[rows x width]`,
    /// packed as [`Packed::repack_left`] would pack those values: the unnormalised softmax
    /// of a block of attention scores, converted straight to bf16 without writing it as
    /// f32 first. `sums` receives each row's sum.
    ///
    /// # Panics
    /// If the CPU lacks bf16 ([`supported`]) or `scores` is not `rows x width`.
    pub fn repack_left_exp_shifted(
        &mut self,
        scores: &[f32],
        (rows, width): (usize, usize),
        sums: &mut Vec<f32>,
    ) {
        assert!(supported(), "bf16 exp on a CPU without avx512_bf16");
        assert_eq!(scores.len(), rows * width, "bf16 exp: bad scores length");
        let pairs = width.div_ceil(2);
        let panels = rows.div_ceil(MR);
        self.pairs.resize(panels * pairs * MR, 0);
        (self.lines, self.depth, self.width, self.line_major) = (rows, width, MR, true);
        sums.clear();
        for (p, panel) in self.pairs.chunks_mut(pairs * MR).enumerate() {
            let count = MR.min(rows - p * MR);
            if count < MR {
                panel.fill(0);
            }
            for (r, out) in panel.chunks_mut(pairs).take(count).enumerate() {
                let row = &scores[(p * MR + r) * width..][..width];
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the CPU has the features (asserted); `out` has the row's pairs.
                sums.push(unsafe { avx512::exp_shifted_pairs(out, row) });
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (out, row);
            }
        }
    }

    /// The operand's other dimension: rows of a left operand, columns of a right one.
    pub fn lines(&self) -> usize {
        self.lines
    }

    pub fn depth(&self) -> usize {
        self.depth
    }

    fn pairs_per_line(&self) -> usize {
        self.depth.div_ceil(2)
    }

    fn panel(&self, index: usize) -> &[u32] {
        let size = self.pairs_per_line() * self.width;
        &self.pairs[index * size..][..size]
    }

    /// Packs `lines x depth` values, value `(l, d)` at `src[l * line_stride + d * depth_stride]`.
    fn pack(
        &mut self,
        src: &[f32],
        (lines, depth): (usize, usize),
        (line_stride, depth_stride): (usize, usize),
        width: usize,
    ) {
        if lines > 0 && depth > 0 {
            let last = (lines - 1) * line_stride + (depth - 1) * depth_stride;
            assert!(last < src.len(), "bf16 pack: operand too short");
        }
        let pairs = depth.div_ceil(2);
        let panels = lines.div_ceil(width);
        // Every entry is written below (padding lines of a partial panel as zeros), so the
        // buffer is not cleared first: that would be a second pass over it.
        self.pairs.resize(panels * pairs * width, 0);
        (self.lines, self.depth, self.width) = (lines, depth, width);
        let odd = depth % 2 == 1;
        let line_major = self.line_major;
        assert!(
            !line_major || depth_stride == 1,
            "bf16 pack: line-major needs rows of values"
        );
        let pack_panel = |(p, panel): (usize, &mut [u32])| {
            let l0 = p * width;
            let count = width.min(lines - l0);
            if count < width {
                panel.fill(0);
            }
            if line_major {
                for (r, out) in panel.chunks_mut(pairs).take(count).enumerate() {
                    pairs_along(out, &src[(l0 + r) * line_stride..][..depth]);
                }
            } else if depth_stride == 1 {
                // Each line's pairs are adjacent values: convert a line at a time, then
                // deal its pairs out to the panel.
                let mut line_pairs = vec![0u32; pairs];
                for r in 0..count {
                    let line = &src[(l0 + r) * line_stride..][..depth];
                    pairs_along(&mut line_pairs, line);
                    for (o, &v) in panel[r..].iter_mut().step_by(width).zip(&line_pairs) {
                        *o = v;
                    }
                }
            } else {
                for q in 0..pairs {
                    let out = &mut panel[q * width..][..count];
                    let even = 2 * q * depth_stride;
                    let odd_at = (!(odd && q == pairs - 1)).then_some(even + depth_stride);
                    if line_stride == 1 {
                        // The lines are adjacent: both halves of the pairs are runs.
                        let lo = &src[even + l0..][..count];
                        match odd_at {
                            Some(at) => pairs_across(out, lo, &src[at + l0..][..count]),
                            None => pairs_across(out, lo, &vec![0.0; count]),
                        }
                    } else {
                        for (r, o) in out.iter_mut().enumerate() {
                            let line = (l0 + r) * line_stride;
                            let hi = odd_at.map_or(0.0, |at| src[line + at]);
                            *o = pair(src[line + even], hi);
                        }
                    }
                }
            }
        };
        let chunk = pairs * width;
        if panels * chunk >= 1 << 16 && threads() > 1 {
            self.pairs
                .par_chunks_mut(chunk)
                .enumerate()
                .for_each(pack_panel);
        } else {
            self.pairs
                .chunks_mut(chunk)
                .enumerate()
                .for_each(pack_panel);
        }
    }
}

/// `dst[m x n] = (accumulate ? dst : 0) + a * b` with `a` packed left (`m` rows) and `b`
/// packed right (`n` columns); `dst` is row-major with `ld` values per row. Large products
/// use every thread when `parallel`.
///
/// # Panics
/// If the CPU lacks bf16 ([`supported`]), the depths differ or `dst` is too short.
pub fn matmul(
    a: &Packed,
    b: &Packed,
    dst: &mut [f32],
    ld: usize,
    accumulate: bool,
    parallel: bool,
) {
    let (m, n) = (a.lines, b.lines);
    if m > 0 && n > 0 {
        assert!(
            (m - 1) * ld + n <= dst.len(),
            "bf16 matmul: destination too short"
        );
    }
    // SAFETY: `dst` is an exclusive borrow reaching every value the product writes.
    unsafe {
        matmul_raw(
            a,
            b,
            (dst.as_mut_ptr(), dst.len()),
            ld,
            accumulate,
            parallel,
        )
    }
}

/// [`matmul`] into a destination given as a pointer and the number of values it may reach.
///
/// # Safety
/// `dst.0` must be valid for reads and writes of `dst.1` values, and no other thread may
/// access the elements this product writes while it runs.
pub unsafe fn matmul_raw(
    a: &Packed,
    b: &Packed,
    dst: (*mut f32, usize),
    ld: usize,
    accumulate: bool,
    parallel: bool,
) {
    assert!(supported(), "bf16 matmul on a CPU without avx512_bf16");
    assert_eq!(a.depth, b.depth, "bf16 matmul: inner dimensions differ");
    assert!(
        a.width == MR && b.width == NR && !b.line_major,
        "bf16 matmul: operands packed the wrong way"
    );
    let (m, n) = (a.lines, b.lines);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * ld + n <= dst.1,
        "bf16 matmul: destination too short"
    );
    let (row_panels, col_panels) = (m.div_ceil(MR), n.div_ceil(NR));
    // Columns in groups whose right panels stay in L2 (about 256 KB) while every row panel
    // passes over them.
    let group = ((1 << 16) / (a.pairs_per_line() * NR).max(1)).clamp(1, col_panels);
    let groups = col_panels.div_ceil(group);
    let base = super::SharedOut(dst.0, dst.1);
    // Where pair q of the panel's line i is: interleaved, or each line's pairs together.
    let a_strides = if a.line_major {
        (1, a.pairs_per_line())
    } else {
        (MR, 1)
    };
    let run = |(g, rows): (usize, std::ops::Range<usize>)| {
        let (base, _) = base.base();
        for ip in rows {
            let a_panel = a.panel(ip);
            let height = MR.min(m - ip * MR);
            for jp in g * group..((g + 1) * group).min(col_panels) {
                let width = NR.min(n - jp * NR);
                // SAFETY: the tile's rows ip * MR.. and columns jp * NR.. lie inside the
                // destination (asserted above) and belong to this task alone.
                unsafe {
                    tile(
                        a.pairs_per_line(),
                        (a_panel, a_strides),
                        b.panel(jp),
                        base.add(ip * MR * ld + jp * NR),
                        ld,
                        (height, width),
                        accumulate,
                    )
                }
            }
        }
    };
    let flops = m * n * a.depth;
    if parallel && flops >= 1 << 21 && threads() > 1 {
        // Tasks of a few row panels by one column group, enough of them to balance.
        let per_task = (row_panels * groups)
            .div_ceil(4 * threads())
            .clamp(1, row_panels);
        let row_chunks = row_panels.div_ceil(per_task);
        (0..groups * row_chunks)
            .into_par_iter()
            .map(|t| {
                let (g, c) = (t / row_chunks, t % row_chunks);
                (g, c * per_task..((c + 1) * per_task).min(row_panels))
            })
            .for_each(run);
    } else {
        (0..groups).map(|g| (g, 0..row_panels)).for_each(run);
    }
}

/// One `MR x NR` tile of the output (`rows x cols` of it kept): `pairs` pair-steps of the
/// packed panels.
///
/// # Safety
/// `c` must be valid for `rows` rows of `cols` values, `ld` apart; the CPU must support
/// AVX-512F and AVX-512 BF16.
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    pairs: usize,
    a: (&[u32], (usize, usize)),
    b: &[u32],
    c: *mut f32,
    ld: usize,
    (rows, cols): (usize, usize),
    accumulate: bool,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller's promises.
    unsafe {
        avx512::tile(pairs, a, b, c, ld, (rows, cols), accumulate)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (pairs, a, b, c, ld, rows, cols, accumulate);
        unreachable!("bf16 matmul is only built for x86-64");
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{MR, NR};

    /// [`super::pairs_along`] for whole blocks of 16 pairs; returns how many pairs it wrote.
    /// `vcvtne2ps2bf16` rounds to nearest even like [`super::bf16_bits`] (it reads
    /// subnormal inputs as zero, far below anything a product notices).
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn pairs_along(out: &mut [u32], line: &[f32]) -> usize {
        let blocks = (line.len() / 32).min(out.len() / 16);
        for i in 0..blocks {
            // SAFETY: block i's 32 values and 16 pairs are inside both slices.
            unsafe {
                let lo = _mm512_loadu_ps(line.as_ptr().add(32 * i));
                let hi = _mm512_loadu_ps(line.as_ptr().add(32 * i + 16));
                let bf: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                _mm512_storeu_si512(out.as_mut_ptr().add(16 * i).cast(), bf);
            }
        }
        16 * blocks
    }

    /// [`super::pairs_across`] for whole blocks of 16 pairs; returns how many it wrote.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn pairs_across(out: &mut [u32], lo: &[f32], hi: &[f32]) -> usize {
        // The converted [lo 0..16 | hi 0..16] interleaved to lo0, hi0, lo1, hi1, ...
        let order: [i16; 32] = std::array::from_fn(|j| ((j % 2) * 16 + j / 2) as i16);
        // SAFETY: reading a 64-byte array.
        let order = unsafe { _mm512_loadu_si512(order.as_ptr().cast()) };
        let blocks = out.len() / 16;
        for i in 0..blocks {
            // SAFETY: block i's 16 values of each run and 16 pairs are inside the slices.
            unsafe {
                let l = _mm512_loadu_ps(lo.as_ptr().add(16 * i));
                let h = _mm512_loadu_ps(hi.as_ptr().add(16 * i));
                let bf: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(h, l));
                let pairs = _mm512_permutexvar_epi16(order, bf);
                _mm512_storeu_si512(out.as_mut_ptr().add(16 * i).cast(), pairs);
            }
        }
        16 * blocks
    }

    /// `exp(v - max(row))` of each value of `row`, as bf16 pairs along it into `out` (a
    /// missing last value as zero), and the sum of those values in f32.
    ///
    /// The softmax numerators only need bf16's 8 bits, so the exponential is a degree-4
    /// polynomial after the usual reduction `2^n * e^r`, `|r| <= ln 2 / 2` (relative error
    /// 4e-5, a fiftieth of a bf16 rounding), scaled with `vscalefps`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn exp_shifted_pairs(out: &mut [u32], row: &[f32]) -> f32 {
        let n = row.len();
        assert_eq!(out.len(), n.div_ceil(2), "bf16 exp: pairs for a row");
        let mask = |lanes: usize| -> __mmask16 { ((1u32 << lanes.min(16)) - 1) as __mmask16 };
        let ptr = row.as_ptr();
        // SAFETY (all loads and stores below): masked to the `n` values of `row` and the
        // `n.div_ceil(2)` pairs of `out`.
        let max = unsafe {
            let mut vmax = _mm512_set1_ps(f32::NEG_INFINITY);
            for i in 0..n / 16 {
                vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(ptr.add(16 * i)));
            }
            if !n.is_multiple_of(16) {
                let m = mask(n % 16);
                vmax = _mm512_mask_max_ps(
                    vmax,
                    m,
                    vmax,
                    _mm512_maskz_loadu_ps(m, ptr.add(n / 16 * 16)),
                );
            }
            _mm512_set1_ps(_mm512_reduce_max_ps(vmax))
        };
        let exp16 = |start: usize| -> __m512 {
            let count = n.saturating_sub(start).min(16);
            let m = mask(count);
            unsafe {
                let x = _mm512_maskz_loadu_ps(m, ptr.add(start.min(n)));
                // Far below the max, the value is below bf16's smallest normal: the clamp only
                // keeps -inf from reaching the reduction, and vscalefps takes it to zero.
                let x = _mm512_max_ps(_mm512_sub_ps(x, max), _mm512_set1_ps(-104.0));
                let k = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                    _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
                );
                let r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693_359_4), x);
                let r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.121_944_4e-4), r);
                let mut p = _mm512_set1_ps(1.0 / 24.0);
                p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0 / 6.0));
                p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5));
                p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0));
                p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0));
                _mm512_maskz_mov_ps(m, _mm512_scalef_ps(p, k))
            }
        };
        let mut sum = _mm512_setzero_ps();
        for block in 0..n.div_ceil(32) {
            let start = 32 * block;
            let (lo, hi) = (exp16(start), exp16(start + 16));
            sum = _mm512_add_ps(sum, _mm512_add_ps(lo, hi));
            let pairs = (n - start).min(32).div_ceil(2);
            unsafe {
                let bf: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                _mm512_mask_storeu_epi32(out.as_mut_ptr().add(16 * block).cast(), mask(pairs), bf);
            }
        }
        _mm512_reduce_add_ps(sum)
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn tile(
        pairs: usize,
        (a, (step, line)): (&[u32], (usize, usize)),
        b: &[u32],
        c: *mut f32,
        ld: usize,
        (rows, cols): (usize, usize),
        accumulate: bool,
    ) {
        assert!(pairs == 0 || (pairs - 1) * step + (MR - 1) * line < a.len());
        assert!(b.len() >= pairs * NR);
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        let (a, b) = (a.as_ptr(), b.as_ptr());
        for q in 0..pairs {
            // SAFETY: q < pairs, and both panels hold `pairs` steps (asserted).
            unsafe {
                let b0 = _mm512_loadu_si512(b.add(q * NR).cast());
                let b1 = _mm512_loadu_si512(b.add(q * NR + 16).cast());
                let b0 = std::mem::transmute::<__m512i, __m512bh>(b0);
                let b1 = std::mem::transmute::<__m512i, __m512bh>(b1);
                for (i, acc) in acc.iter_mut().enumerate() {
                    let pair: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*a.add(q * step + i * line) as i32));
                    acc[0] = _mm512_dpbf16_ps(acc[0], pair, b0);
                    acc[1] = _mm512_dpbf16_ps(acc[1], pair, b1);
                }
            }
        }
        let mask = |lanes: usize| -> __mmask16 { ((1u32 << lanes.min(16)) - 1) as __mmask16 };
        let (m0, m1) = (mask(cols), mask(cols.saturating_sub(16)));
        for (i, acc) in acc.iter().enumerate().take(rows) {
            // SAFETY: row i < rows and the masks keep to `cols` columns: inside `c`.
            unsafe {
                let row = c.add(i * ld);
                let (mut v0, mut v1) = (acc[0], acc[1]);
                if accumulate {
                    v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, row));
                    v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, row.add(16)));
                }
                _mm512_mask_storeu_ps(row, m0, v0);
                _mm512_mask_storeu_ps(row.add(16), m1, v1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
            })
            .collect()
    }

    fn round(x: f32) -> f32 {
        f32::from_bits(bf16_bits(x) << 16)
    }

    #[test]
    fn rounding_is_to_nearest_even_and_keeps_nan() {
        assert_eq!(round(1.0), 1.0);
        // 1 + 2^-8 is halfway between two bf16s: ties go to the even one (1.0).
        assert_eq!(round(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
        assert_eq!(
            round(-2.5e-3).to_bits(),
            half::bf16::from_f32(-2.5e-3).to_f32().to_bits()
        );
        assert!(round(f32::NAN).is_nan());
        assert_eq!(round(f32::INFINITY), f32::INFINITY);
        for x in values(10_000, 3) {
            assert_eq!(round(x), half::bf16::from_f32(x).to_f32(), "{x}");
        }
    }

    #[test]
    fn a_right_operand_made_row_by_row_packs_exactly_like_the_whole_matrix() {
        if !supported() {
            eprintln!("bf16 pack: this CPU has no avx512_bf16; skipped");
            return;
        }
        // Odd depths (a zero pair half) and widths that end inside a panel.
        for &(k, n) in &[(1, 1), (3, 33), (24, 64), (97, 515)] {
            let b = values(k * n, 5 + k as u64);
            let whole = Packed::right(&b, (k, n), (n, 1));
            let mut rows = Packed::default();
            rows.repack_right_rows((k, n), |r, row| row.copy_from_slice(&b[r * n..][..n]));
            assert_eq!(
                (rows.lines, rows.depth, rows.width),
                (whole.lines, whole.depth, whole.width)
            );
            assert_eq!(rows.pairs, whole.pairs, "{k}x{n}");
        }
    }

    #[test]
    fn softmax_numerators_pack_like_their_f32_values_to_within_a_bf16_rounding() {
        if !supported() {
            eprintln!("bf16 exp: this CPU has no avx512_bf16; skipped");
            return;
        }
        for &(rows, width) in &[(1, 1), (5, 31), (13, 33), (30, 2688)] {
            // Scores spread like attention's, with a far negative one to underflow.
            let mut scores: Vec<f32> = values(rows * width, 9 + width as u64)
                .iter()
                .map(|v| v * 6.0)
                .collect();
            scores[0] = -200.0;
            let mut sums = Vec::new();
            let mut packed = Packed::default();
            packed.repack_left_exp_shifted(&scores, (rows, width), &mut sums);
            let mut numerators = vec![0f32; rows * width];
            let mut want_sums = Vec::new();
            for (row, out) in scores.chunks(width).zip(numerators.chunks_mut(width)) {
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                for (o, &v) in out.iter_mut().zip(row) {
                    *o = ((v - max) as f64).exp() as f32;
                }
                want_sums.push(out.iter().map(|&v| v as f64).sum::<f64>());
            }
            let reference = Packed::left(&numerators, (rows, width), (width, 1));
            assert_eq!(packed.pairs.len(), reference.pairs.len());
            for (i, (&got, &want)) in packed.pairs.iter().zip(&reference.pairs).enumerate() {
                for shift in [0, 16] {
                    let g = f32::from_bits((got >> shift & 0xffff) << 16);
                    let w = f32::from_bits((want >> shift & 0xffff) << 16);
                    assert!(
                        (g - w).abs() <= w.abs() / 128.0 + 1e-38,
                        "{rows}x{width}: pair {i}: {g} vs {w}"
                    );
                }
            }
            for (got, want) in sums.iter().zip(&want_sums) {
                assert!(
                    ((*got as f64 - want) / want).abs() < 1e-4,
                    "sum {got} vs {want}"
                );
            }
        }
    }

    /// Every shape class: tails in every dimension, odd depths, a single row or column.
    #[test]
    fn matmul_equals_the_f32_product_of_the_rounded_inputs() {
        if !supported() {
            eprintln!("bf16 matmul: this CPU has no avx512_bf16; skipped");
            return;
        }
        for &(m, n, k) in &[
            (1, 1, 1),
            (12, 32, 2),
            (13, 33, 3),
            (48, 1000, 1152),
            (100, 64, 2688),
            (384, 37, 96),
            (7, 515, 513),
        ] {
            let a = values(m * k, 1 + m as u64);
            let b = values(k * n, 2 + n as u64);
            let mut got = vec![0f32; m * n];
            matmul(
                &Packed::left(&a, (m, k), (k, 1)),
                &Packed::right(&b, (k, n), (n, 1)),
                &mut got,
                n,
                false,
                true,
            );
            for i in 0..m {
                for j in 0..n {
                    let (mut exact, mut magnitude) = (0f64, 0f64);
                    for l in 0..k {
                        let p = round(a[i * k + l]) as f64 * round(b[l * n + j]) as f64;
                        exact += p;
                        magnitude += p.abs();
                    }
                    // Only the f32 accumulation differs from the exact sum of rounded
                    // products: a few f32 roundings of the sum of magnitudes.
                    let err = (got[i * n + j] as f64 - exact).abs();
                    assert!(
                        err <= 1e-6 * magnitude + 1e-30,
                        "{m}x{n}x{k} at ({i},{j}): {} vs {exact}",
                        got[i * n + j]
                    );
                }
            }
        }
    }

    #[test]
    fn rounding_error_stays_within_bf16_bounds_and_strides_and_accumulation_work() {
        if !supported() {
            eprintln!("bf16 matmul: this CPU has no avx512_bf16; skipped");
            return;
        }
        let (m, n, k) = (37, 70, 301);
        // a read transposed (stored [k, m]) and b transposed (stored [n, k]).
        let a_t = values(k * m, 11);
        let b_t = values(n * k, 12);
        let mut got = vec![1f32; m * (n + 5)];
        matmul(
            &Packed::left(&a_t, (m, k), (1, m)),
            &Packed::right(&b_t, (k, n), (1, k)),
            &mut got,
            n + 5,
            true,
            false,
        );
        for i in 0..m {
            for j in 0..n + 5 {
                let g = got[i * (n + 5) + j];
                if j >= n {
                    assert_eq!(g, 1.0, "column {j} beyond n must be untouched");
                    continue;
                }
                let (mut exact, mut magnitude) = (1f64, 0f64);
                for l in 0..k {
                    let p = a_t[l * m + i] as f64 * b_t[j * k + l] as f64;
                    exact += p;
                    magnitude += p.abs();
                }
                // Each input is off by at most 2^-9 relative, so each product by 2^-8.
                let bound = magnitude * (2.0f64.powi(-8) + 1e-6) + 1e-6;
                assert!(
                    (g as f64 - exact).abs() <= bound,
                    "({i},{j}): {g} vs {exact}"
                );
            }
        }
    }
}
