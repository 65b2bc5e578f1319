//! Mixed-precision training (`--precision-train`): the arithmetic of the training step, chosen once per
//! run, and the loss scaling that fp16 needs.
//!
//! The weights, the optimizer's state and the exported model stay fp32. In `bf16` or `fp16` the body
//! of the network (convolutions, pooling, LRN) runs in that type with the weights cast for each step
//! ([`crate::model::GoogLeNet::logits_in`]), while the input normalisation, the classifier and the loss
//! stay fp32, as PyTorch's autocast does; the gradients arrive in fp32 through the casts. Validation,
//! calibration and the threshold are measured in fp32, i.e. on exactly what the daemon will compute.
//!
//! `auto` picks bf16 where the hardware computes it natively (x86 CPUs with AVX512-BF16,
//! ARM CPUs with the BF16 extension, CUDA GPUs of compute capability 8.0 or newer) and fp32 elsewhere:
//! elsewhere libtorch emulates bf16, which is slower than fp32. fp16 is never picked automatically;
//! it is for older CUDA GPUs (no bf16), and its narrow range needs [`GradScaler`].

use std::fmt;

use tch::{Device, Kind, Tensor};

/// What `--precision-train` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionChoice {
    /// bf16 where the hardware has it, else fp32.
    Auto,
    /// Plain fp32 everywhere.
    Fp32,
    /// bf16 body, fp32 weights and loss.
    Bf16,
    /// fp16 body with loss scaling, fp32 weights and loss.
    Fp16,
}

/// The arithmetic a run trains in, once `auto` is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainPrecision {
    /// fp32 throughout.
    Fp32,
    /// bf16 body (same range as fp32, no loss scaling needed).
    Bf16,
    /// fp16 body, with [`GradScaler`].
    Fp16,
}

impl TrainPrecision {
    /// The libtorch type the network's body computes in.
    pub fn kind(self) -> Kind {
        match self {
            TrainPrecision::Fp32 => Kind::Float,
            TrainPrecision::Bf16 => Kind::BFloat16,
            TrainPrecision::Fp16 => Kind::Half,
        }
    }

    /// The name used on the command line and in report.json.
    pub fn name(self) -> &'static str {
        match self {
            TrainPrecision::Fp32 => "fp32",
            TrainPrecision::Bf16 => "bf16",
            TrainPrecision::Fp16 => "fp16",
        }
    }
}

impl fmt::Display for TrainPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A resolved choice with the reason, printed at the start of a run.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The arithmetic of the training step.
    pub precision: TrainPrecision,
    /// Why (`auto`: what the hardware has; otherwise "asked for").
    pub why: String,
    /// A warning for a choice that will be slow on this hardware.
    pub warning: Option<String>,
}

/// Whether this CPU computes bf16 natively (AVX512-BF16 on x86-64, AMX CPUs included, the BF16 extension on
/// AArch64): oneDNN then runs bf16 convolutions faster than fp32 ones.
pub fn cpu_has_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // Every x86 CPU with AMX-BF16 (Sapphire Rapids and later) also has AVX512-BF16.
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("bf16")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The compute capability `(major, minor)` of CUDA device `index`, asked of the CUDA runtime that
/// libtorch has loaded (`cudaDeviceGetAttribute`); `None` when that runtime is not in the process.
pub fn cuda_capability(index: usize) -> Option<(i32, i32)> {
    /// `cudaDevAttrComputeCapabilityMajor` and `...Minor` in the CUDA runtime's enum.
    const MAJOR: i32 = 75;
    const MINOR: i32 = 76;
    type GetAttribute = unsafe extern "C" fn(*mut i32, i32, i32) -> i32;
    // libtorch_cuda links the CUDA runtime, so its symbols are in the process's global scope; the
    // library is not opened again by name (its file name changes with each CUDA major version).
    let this = libloading::os::unix::Library::this();
    // SAFETY: the symbol, when present, is the CUDA runtime's `cudaError_t cudaDeviceGetAttribute(int*,
    // cudaDeviceAttr, int)`, called with a valid out-pointer; a non-zero result is an error and is ignored.
    unsafe {
        let get = this.get::<GetAttribute>(b"cudaDeviceGetAttribute\0").ok()?;
        let (mut major, mut minor) = (0, 0);
        let device = i32::try_from(index).ok()?;
        if get(&mut major, MAJOR, device) != 0 || get(&mut minor, MINOR, device) != 0 {
            return None;
        }
        Some((major, minor))
    }
}

/// Resolves `choice` for `device`, with `bf16_native` saying whether the hardware computes bf16
/// natively (see [`native_bf16`]).
pub fn resolve_with(choice: PrecisionChoice, device: Device, bf16_native: bool) -> Resolved {
    let hardware = match device {
        Device::Cpu => "this CPU",
        _ => "this GPU",
    };
    let (precision, why) = match choice {
        PrecisionChoice::Auto if bf16_native => {
            (TrainPrecision::Bf16, format!("auto: {hardware} computes bf16 natively"))
        }
        PrecisionChoice::Auto => (TrainPrecision::Fp32, format!("auto: {hardware} has no native bf16")),
        PrecisionChoice::Fp32 => (TrainPrecision::Fp32, "asked for".to_string()),
        PrecisionChoice::Bf16 => (TrainPrecision::Bf16, "asked for".to_string()),
        PrecisionChoice::Fp16 => (TrainPrecision::Fp16, "asked for".to_string()),
    };
    let warning = match (precision, device) {
        (TrainPrecision::Bf16, _) if !bf16_native => Some(format!(
            "--precision-train bf16: {hardware} has no native bf16, so libtorch emulates it and the run will likely \
             be slower than fp32; `--precision-train auto` picks what this machine runs fastest"
        )),
        (TrainPrecision::Fp16, Device::Cpu) => Some(
            "--precision-train fp16 on the CPU: few CPUs compute fp16 natively and libtorch's fallback is slow; \
             fp16 is meant for CUDA GPUs without bf16 (use `auto` or `bf16` on a CPU)"
                .to_string(),
        ),
        _ => None,
    };
    Resolved {
        precision,
        why,
        warning,
    }
}

/// Whether `device` computes bf16 natively: [`cpu_has_bf16`] on the CPU, compute capability 8.0 or
/// newer on a CUDA GPU (what `torch.cuda.is_bf16_supported()` checks).
pub fn native_bf16(device: Device) -> bool {
    match device {
        Device::Cuda(i) => cuda_capability(i).is_some_and(|(major, _)| major >= 8),
        _ => cpu_has_bf16(),
    }
}

/// Resolves `choice` for `device` on this machine.
pub fn resolve(choice: PrecisionChoice, device: Device) -> Resolved {
    resolve_with(choice, device, native_bf16(device))
}

/// Dynamic loss scaling for fp16 training (PyTorch's `GradScaler`): the loss is multiplied by
/// `scale` before the backward pass so small gradients do not underflow fp16, and the gradients are
/// divided by it before the update. A step whose gradients overflowed (inf or NaN) is skipped and the
/// scale halved; after `growth_interval` good steps in a row it is doubled.
#[derive(Debug, Clone)]
pub struct GradScaler {
    /// The current loss multiplier.
    scale: f64,
    /// Good steps since the last change of scale.
    good_steps: u32,
    /// Good steps in a row after which the scale doubles.
    growth_interval: u32,
    /// Steps skipped so far for overflowing gradients.
    skipped: u64,
}

impl Default for GradScaler {
    /// PyTorch's defaults: 65536, doubled after 2000 good steps, halved on an overflow.
    fn default() -> Self {
        GradScaler {
            scale: 65536.0,
            good_steps: 0,
            growth_interval: 2000,
            skipped: 0,
        }
    }
}

impl GradScaler {
    /// The current loss multiplier.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Steps skipped so far because their gradients overflowed.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Divides every gradient of `params` by the scale in place and says whether all of them are
    /// finite; then updates the scale (halved on an overflow, doubled after `growth_interval` good
    /// steps). The caller applies the update only when this returns true.
    pub fn unscale_and_check(&mut self, params: &[Tensor]) -> bool {
        let inverse = 1.0 / self.scale;
        let finite = tch::no_grad(|| {
            let mut bad: Option<Tensor> = None;
            for p in params {
                let mut grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let _ = grad.g_mul_scalar_(inverse);
                // One count per tensor, added up on the device; read once at the end (one sync).
                let count = grad.isfinite().logical_not().sum(Kind::Int64);
                bad = Some(match bad {
                    Some(b) => b + count,
                    None => count,
                });
            }
            bad.is_none_or(|b| b.int64_value(&[]) == 0)
        });
        if finite {
            self.good_steps += 1;
            if self.good_steps >= self.growth_interval {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        } else {
            self.scale = (self.scale / 2.0).max(1.0);
            self.good_steps = 0;
            self.skipped += 1;
        }
        finite
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_follows_the_hardware_and_warns_on_emulated_choices() {
        let cpu = |choice, native| resolve_with(choice, Device::Cpu, native);
        assert_eq!(cpu(PrecisionChoice::Auto, true).precision, TrainPrecision::Bf16);
        assert_eq!(cpu(PrecisionChoice::Auto, false).precision, TrainPrecision::Fp32);
        assert!(cpu(PrecisionChoice::Auto, false).warning.is_none());
        assert_eq!(cpu(PrecisionChoice::Fp32, true).precision, TrainPrecision::Fp32);
        let emulated = cpu(PrecisionChoice::Bf16, false);
        assert_eq!(emulated.precision, TrainPrecision::Bf16);
        assert!(emulated.warning.unwrap().contains("emulates"));
        assert!(cpu(PrecisionChoice::Bf16, true).warning.is_none());
        assert!(cpu(PrecisionChoice::Fp16, true).warning.unwrap().contains("CUDA"));
        let gpu = resolve_with(PrecisionChoice::Fp16, Device::Cuda(0), false);
        assert_eq!((gpu.precision, gpu.warning), (TrainPrecision::Fp16, None));
    }

    /// On a machine without CUDA there is no runtime to ask, so no capability is made up.
    #[test]
    fn no_cuda_capability_without_a_gpu() {
        if !tch::Cuda::is_available() {
            assert_eq!(cuda_capability(0), None);
            assert!(!native_bf16(Device::Cuda(0)));
        }
    }

    /// The scaler halves and skips on an overflow, divides good gradients exactly, and doubles after
    /// its growth interval.
    #[test]
    fn grad_scaler_skips_overflows_and_adapts_the_scale() {
        let p = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut scaler = GradScaler {
            growth_interval: 2,
            ..GradScaler::default()
        };
        let backward = |factor: f64| {
            let mut p2 = p.shallow_clone();
            p2.zero_grad();
            (&p * factor).sum(Kind::Float).backward();
        };
        backward(65536.0 * 3.0);
        assert!(scaler.unscale_and_check(std::slice::from_ref(&p)));
        assert!((p.grad() - 3.0).abs().max().double_value(&[]) < 1e-6);
        backward(f64::INFINITY);
        assert!(!scaler.unscale_and_check(std::slice::from_ref(&p)));
        assert_eq!((scaler.scale(), scaler.skipped()), (32768.0, 1));
        for _ in 0..2 {
            backward(1.0);
            assert!(scaler.unscale_and_check(std::slice::from_ref(&p)));
        }
        assert_eq!(scaler.scale(), 65536.0);
    }
}
