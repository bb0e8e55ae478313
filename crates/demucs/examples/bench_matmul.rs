//! The bf16 matrix multiply against the f32 one on the shapes HTDemucs multiplies, on every
//! rayon thread: `cargo run --release -p stemdeck-demucs --example bench_matmul`.
//! Prints GFLOP/s of each and their ratio; packing the right operand (the activations in a
//! convolution) is counted on the bf16 side.

use std::time::Instant;

use stemdeck_demucs::kernels::{self, bf16};

fn main() {
    if !bf16::supported() {
        println!("this CPU has no avx512_bf16: only the f32 multiply would run");
        return;
    }
    let shapes = [
        ("ff.linear1 (2688 x 512 -> 2048)", 2688, 2048, 512),
        ("ff.linear2 (2688 x 2048 -> 512)", 2688, 512, 2048),
        ("decoder 3x3 rewrite (384 ch)", 768, 2048, 384 * 9),
        ("frequency conv (48 -> 96, k 8)", 96, 8192, 48 * 8),
        ("attention scores (780 x 2688, hd 64)", 780, 2688, 64),
        ("attention values (780 x 64, lk 2688)", 780, 64, 2688),
    ];
    println!(
        "{:<40} {:>9} {:>9} {:>7}",
        "shape (m x n x k)", "f32", "bf16", "ratio"
    );
    for (name, m, n, k) in shapes {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919 % 1000) as f32) / 1000.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104_729 % 1000) as f32) / 1000.0 - 0.5)
            .collect();
        let mut c = vec![0f32; m * n];
        let flops = (2 * m * n * k) as f64;
        let best = |f: &mut dyn FnMut()| {
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min)
        };
        let f32_s =
            best(&mut || kernels::gemm(m, n, k, &mut c, (n, 1), false, &a, (k, 1), &b, (n, 1)));
        let left = bf16::Packed::left(&a, (m, k), (k, 1));
        let mut right = bf16::Packed::default();
        let bf16_s = best(&mut || {
            right.repack_right(&b, (k, n), (n, 1));
            bf16::matmul(&left, &right, &mut c, n, false, true);
        });
        println!(
            "{:<40} {:>9.1} {:>9.1} {:>6.2}x",
            name,
            flops / f32_s / 1e9,
            flops / bf16_s / 1e9,
            f32_s / bf16_s
        );
    }
    // Attention as the transformer runs it: 8 heads of 64, 2688 frequency tokens.
    let (l, dim) = (2688, 512);
    let q: Vec<f32> = (0..l * dim)
        .map(|i| ((i * 7919 % 1000) as f32) / 8000.0)
        .collect();
    let k: Vec<f32> = (0..l * dim)
        .map(|i| ((i * 104_729 % 1000) as f32) / 1000.0 - 0.5)
        .collect();
    let flops = (4 * l * l * dim) as f64;
    let time = |bf16: bool| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                kernels::attention(&q, &k, &k, (l, l), 8, bf16);
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let (f32_s, bf16_s) = (time(false), time(true));
    println!(
        "{:<40} {:>9.1} {:>9.1} {:>6.2}x",
        "attention (2688 tokens, 8 heads)",
        flops / f32_s / 1e9,
        flops / bf16_s / 1e9,
        f32_s / bf16_s
    );
}
