//! `--device` and `--dtype`: where and in what precision the model runs.

use anyhow::Result;
use candle_core::{DType, Device};

use crate::bad_input;

/// Parse `--device auto|cpu|cuda|cuda:N`. `auto` picks the first GPU when this build has
/// CUDA and one is present, else the CPU.
pub fn parse_device(text: &str) -> Result<Device> {
    let text = text.trim().to_ascii_lowercase();
    let ordinal = match text.as_str() {
        "cpu" => return Ok(Device::Cpu),
        "auto" => return Ok(auto_device()),
        "cuda" | "gpu" => 0,
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => {
                return Err(bad_input!(
                    "--device {text}: expected auto, cpu, cuda or cuda:N"
                ))
            }
        },
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(bad_input!(
            "--device {text}: this build of llm-mem has no CUDA support (rebuild with `--features cuda`)"
        ));
    }
    Device::new_cuda(ordinal).map_err(|err| bad_input!("--device {text}: {err}"))
}

fn auto_device() -> Device {
    if candle_core::utils::cuda_is_available() {
        if let Ok(device) = Device::new_cuda(0) {
            return device;
        }
    }
    Device::Cpu
}

/// Parse `--dtype auto|f32|f16|bf16`. `auto` is f32 on the CPU (where half precision is
/// slow) and bf16 on a GPU.
pub fn parse_dtype(text: &str, device: &Device) -> Result<DType> {
    match text.trim().to_ascii_lowercase().as_str() {
        "auto" if device.is_cpu() => Ok(DType::F32),
        "auto" => Ok(DType::BF16),
        "f32" | "float32" => Ok(DType::F32),
        "f16" | "float16" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        other => Err(bad_input!(
            "--dtype {other}: expected auto, f32, f16 or bf16"
        )),
    }
}

/// Keep freed memory in the process instead of returning it to the system after every
/// batch. A sweep allocates and frees the same large activation buffers (up to 32 MiB each)
/// over and over; with glibc's adaptive defaults each round trip is fresh pages from the
/// kernel, zeroed on first touch, a large share of a run's system time (bench/RESULTS.md has
/// the measurement). Buffers above 32 MiB still come from `mmap`: glibc
/// allows no higher threshold (the largest, the LM head's logits, reuses its own buffer:
/// `model::head`).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation policy; called before any threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        _ => "other",
    }
}
