use std::time::Instant;
use stemdeck_demucs::kernels::bf16::{self, Packed};
fn main() {
    let (n, lk, hd, dim) = (97usize, 2688usize, 64usize, 512usize);
    let q: Vec<f32> = (0..n * dim)
        .map(|i| ((i * 7919 % 1000) as f32) / 8000.0)
        .collect();
    let k: Vec<f32> = (0..lk * dim)
        .map(|i| ((i * 104_729 % 1000) as f32) / 1000.0 - 0.5)
        .collect();
    let keys = Packed::right(&k, (hd, lk), (1, dim));
    let values = Packed::right(&k, (lk, hd), (dim, 1));
    let mut left = Packed::default();
    let mut scores = vec![0f32; n * lk];
    let mut out = vec![0f32; n * dim];
    let reps = 200;
    let mut t = [0f64; 4];
    for _ in 0..reps {
        let s = Instant::now();
        left.repack_left(&q, (n, hd), (dim, 1));
        bf16::matmul(&left, &keys, &mut scores, lk, false, false);
        t[0] += s.elapsed().as_secs_f64();
        let s = Instant::now();
        for row in scores.chunks_mut(lk) {
            let m = row.iter().cloned().fold(f32::MIN, f32::max);
            for v in row.iter_mut() {
                *v = stemdeck_demucs::kernels::exp(*v - m);
            }
        }
        t[1] += s.elapsed().as_secs_f64();
        let s = Instant::now();
        left.repack_left(&scores, (n, lk), (lk, 1));
        t[2] += s.elapsed().as_secs_f64();
        let s = Instant::now();
        bf16::matmul(&left, &values, &mut out, dim, false, false);
        t[3] += s.elapsed().as_secs_f64();
    }
    let f = (2 * n * lk * hd * reps) as f64;
    println!(
        "scores {:.1} GF/s, exp {:.2} ns/elem, pack {:.2} ns/elem, values {:.1} GF/s",
        f / t[0] / 1e9,
        t[1] / (n * lk * reps) as f64 * 1e9,
        t[2] / (n * lk * reps) as f64 * 1e9,
        f / t[3] / 1e9
    );
}
