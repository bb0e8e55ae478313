//! Process-wide memory settings both front ends apply at start-up.

/// Sets glibc's allocator up for the separation: one arena, and large blocks kept for reuse.
///
/// - **One arena.** glibc gives each thread that allocates its own arena, and each keeps
///   its own high-water mark. The model's worker threads allocate and free megabytes of
///   scratch per segment, so with one arena per thread the peak RSS of a separation was
///   ~40 MB higher at the same speed (60 s clip, 2 threads: 453 MiB against 414 MiB).
/// - **Large blocks from the heap, not from `mmap`.** By default every block above 32 MB
///   (the frequency branch's planes are 40–90 MB) is mapped fresh and unmapped on free, so
///   each op's output faulted its pages in again, zeroed by the kernel under the process's
///   memory-map lock, which the second thread then waits for. On a 60 s clip at `-j 2`
///   that was 3.6 s of system time and `conv_tr.freq` ran *slower* on two threads than on
///   one (1.84 s against 1.69 s); kept in the heap, the system time is 0.9 s, the op
///   takes 0.76 s and the whole run 21.0 s instead of 24.0 s, with the peak RSS within
///   the same 500 MB. The heap is trimmed only when asked: each job ends with
///   [`release_free_memory`].
///
/// Call it first thing in `main`, before any thread starts. Elsewhere it does nothing.
pub fn configure_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocator parameters; called before other
    // threads exist, it races with nothing.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        // Only blocks of a gigabyte or more are mapped on their own.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Hands the heap's free pages back to the system; every job ends with it (see
/// `pipeline::run::run_input`), since [`configure_allocator`] keeps them otherwise.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe; it only returns free pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}
