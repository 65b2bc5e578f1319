//! AdamW (Adam with decoupled weight decay), written out so its state (the moment estimates and the
//! step count) can be saved in a checkpoint and restored on `--resume`, like [`crate::sgd`].
//!
//! The update is PyTorch's `torch.optim.AdamW`: `w -= lr * wd * w`, `m = b1 m + (1 - b1) g`,
//! `v = b2 v + (1 - b2) g^2`, `w -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`. Each weight
//! gets its own step size, which lets a deep net without normalisation layers (this GoogLeNet)
//! learn from a few thousand photos in a few epochs, where SGD is still creeping.

use crate::optimizer::{trainable, Update};
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// First-moment decay.
pub const BETA1: f64 = 0.9;
/// Second-moment decay.
pub const BETA2: f64 = 0.999;
/// Added to the denominator.
pub const EPS: f64 = 1e-8;

/// The optimizer: the trainable parameters by name, their moment estimates and the step count.
pub struct Adam {
    params: Vec<(String, Tensor)>,
    moments: Vec<Option<(Tensor, Tensor)>>,
    step: i64,
    weight_decay: f64,
}

impl Adam {
    /// An optimizer over the trainable variables of `vs`, at step 0.
    pub fn new(vs: &VarStore, weight_decay: f64) -> Self {
        let params = trainable(vs);
        let moments = params.iter().map(|_| None).collect();
        Adam {
            params,
            moments,
            step: 0,
            weight_decay,
        }
    }

    /// The moment estimates by parameter name (`m.NAME`, `v.NAME`) and the step count (`step`), for
    /// a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(
            "step".to_string(),
            Tensor::from_slice(&[self.step]).to_kind(Kind::Int64),
        )];
        for ((name, _), moments) in self.params.iter().zip(&self.moments) {
            if let Some((m, v)) = moments {
                out.push((format!("m.{name}"), m.shallow_clone()));
                out.push((format!("v.{name}"), v.shallow_clone()));
            }
        }
        out
    }

    /// Restores a state saved by [`Adam::state`]; unknown names are an error.
    pub fn load_state(&mut self, state: Vec<(String, Tensor)>) -> anyhow::Result<()> {
        for (key, tensor) in state {
            if key == "step" {
                self.step = tensor.int64_value(&[0]);
                continue;
            }
            let (which, name) = key
                .split_once('.')
                .ok_or_else(|| anyhow::anyhow!("checkpoint has an unknown optimizer entry `{key}`"))?;
            let i = self
                .params
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(|| anyhow::anyhow!("checkpoint has moments for unknown `{name}`"))?;
            let device = self.params[i].1.device();
            let tensor = tensor.to_device(device);
            let slot = self.moments[i].get_or_insert_with(|| (tensor.zeros_like(), tensor.zeros_like()));
            match which {
                "m" => slot.0 = tensor,
                "v" => slot.1 = tensor,
                _ => anyhow::bail!("checkpoint has an unknown optimizer entry `{key}`"),
            }
        }
        Ok(())
    }
}

impl Update for Adam {
    fn named_params(&mut self) -> &mut [(String, Tensor)] {
        &mut self.params
    }

    /// Applies one update at learning rate `lr` from the gradients. In place throughout: the first
    /// moment by `lerp_`, the second from the gradient squared in place (the gradient is this step's
    /// own and not read again), and the weight by one `addcdiv_` whose divisor carries `-lr` and the
    /// bias corrections (tch binds `addcdiv_` without its `value`); one buffer, the divisor, is
    /// allocated per parameter.
    fn step(&mut self, lr: f64) {
        self.step += 1;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        tch::no_grad(|| {
            for ((_, p), moments) in self.params.iter_mut().zip(&mut self.moments) {
                let mut grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                if self.weight_decay != 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let (m, v) = moments.get_or_insert_with(|| (p.zeros_like(), p.zeros_like()));
                // m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2.
                let _ = m.lerp_(&grad, 1.0 - BETA1);
                let _ = v.lerp_(&grad.square_(), 1.0 - BETA2);
                if lr == 0.0 {
                    continue;
                }
                // w -= lr * (m / c1) / (sqrt(v / c2) + eps) = w + m / ((sqrt(v) / sqrt(c2) + eps) * -c1 / lr).
                let mut divisor = v.sqrt();
                let _ = divisor
                    .g_mul_scalar_(1.0 / c2.sqrt())
                    .g_add_scalar_(EPS)
                    .g_mul_scalar_(-c1 / lr);
                let _ = p.addcdiv_(m, &divisor);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, Module, OptimizerConfig};
    use tch::Device;

    /// Same model, same data: this optimizer and libtorch's AdamW end at the same weights, and a
    /// state saved half way continues to the same weights.
    #[test]
    fn matches_libtorch_adamw_and_resumes() {
        let x = (Tensor::arange(32, (Kind::Float, Device::Cpu)).view([8, 4]) * 0.37).sin();
        let y = Tensor::from_slice(&[0i64, 1, 1, 0, 1, 0, 0, 1]);
        let start = nn::VarStore::new(Device::Cpu);
        let _ = nn::linear(start.root() / "l", 4, 2, Default::default());
        let fresh = || {
            let mut vs = VarStore::new(Device::Cpu);
            let lin = nn::linear(vs.root() / "l", 4, 2, Default::default());
            vs.copy(&start).unwrap();
            (vs, lin)
        };
        let (vs, lin) = fresh();
        let mut theirs = nn::AdamW {
            beta1: BETA1,
            beta2: BETA2,
            wd: 1e-2,
            eps: EPS,
            amsgrad: false,
        }
        .build(&vs, 0.05)
        .unwrap();
        for _ in 0..6 {
            theirs.backward_step(&lin.forward(&x).cross_entropy_for_logits(&y));
        }
        let want = lin.ws.copy();

        let (vs, lin) = fresh();
        let mut mine = Adam::new(&vs, 1e-2);
        for _ in 0..3 {
            mine.backward_step(&lin.forward(&x).cross_entropy_for_logits(&y), 0.05);
        }
        let saved: Vec<(String, Tensor)> = mine.state().into_iter().map(|(k, t)| (k, t.copy())).collect();
        let weights = crate::checkpoint::snapshot(&vs);
        let (vs2, lin2) = fresh();
        crate::checkpoint::restore(&vs2, &weights).unwrap();
        let mut resumed = Adam::new(&vs2, 1e-2);
        resumed.load_state(saved).unwrap();
        for _ in 0..3 {
            resumed.backward_step(&lin2.forward(&x).cross_entropy_for_logits(&y), 0.05);
        }
        let diff = (lin2.ws.copy() - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "weights differ by {diff}");
        assert!(resumed
            .load_state(vec![("m.nope".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu)))])
            .is_err());
    }
}
