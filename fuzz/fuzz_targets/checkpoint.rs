//! Any bytes through the checkpoint loader (safetensors, or a `.th` torch zip) and, when
//! they parse, the model build that checks every tensor: an error or a model, never a
//! panic or an allocation the file's size does not justify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stemdeck_demucs::{Checkpoint, Device, HTDemucs, tensor_problems};

fuzz_target!(|data: &[u8]| {
    let Ok(checkpoint) = Checkpoint::from_bytes(data) else {
        return;
    };
    if tensor_problems(&checkpoint).is_ok_and(|p| p.is_empty()) {
        let _ = HTDemucs::from_checkpoint(&checkpoint, &Device::Cpu);
    }
});
