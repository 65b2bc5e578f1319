//! SGD with momentum and weight decay, written out so its state (the momentum buffers) can be saved
//! in a checkpoint and restored on `--resume`; tch's built-in optimizer keeps that state inside
//! libtorch where it cannot be saved.
//!
//! The update is PyTorch's `torch.optim.SGD` (no dampening, no Nesterov): `d = grad + wd * w`,
//! `buf = d` on the first step and `buf = momentum * buf + d` after, `w -= lr * buf`.

use crate::optimizer::{trainable, Update};
use tch::nn::VarStore;
use tch::Tensor;

/// The optimizer: the trainable parameters by name and their momentum buffers.
pub struct Sgd {
    params: Vec<(String, Tensor)>,
    buffers: Vec<Option<Tensor>>,
    momentum: f64,
    weight_decay: f64,
}

impl Sgd {
    /// An optimizer over the trainable variables of `vs`, with empty momentum buffers.
    pub fn new(vs: &VarStore, momentum: f64, weight_decay: f64) -> Self {
        let params = trainable(vs);
        let buffers = params.iter().map(|_| None).collect();
        Sgd {
            params,
            buffers,
            momentum,
            weight_decay,
        }
    }

    /// The momentum buffers by parameter name, for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .zip(&self.buffers)
            .filter_map(|((name, _), b)| b.as_ref().map(|b| (name.clone(), b.shallow_clone())))
            .collect()
    }

    /// Restores momentum buffers saved by [`Sgd::state`]; unknown names are an error.
    pub fn load_state(&mut self, state: Vec<(String, Tensor)>) -> anyhow::Result<()> {
        for (name, tensor) in state {
            let i = self
                .params
                .iter()
                .position(|(n, _)| *n == name)
                .ok_or_else(|| anyhow::anyhow!("checkpoint has momentum for unknown `{name}`"))?;
            let device = self.params[i].1.device();
            self.buffers[i] = Some(tensor.to_device(device));
        }
        Ok(())
    }
}

impl Update for Sgd {
    fn named_params(&mut self) -> &mut [(String, Tensor)] {
        &mut self.params
    }

    /// Applies one update at learning rate `lr` from the gradients in place. Every operation works
    /// in place on the gradient, the buffer or the weight (`addcmul_` with a scalar tensor stands for
    /// PyTorch's `add_(x, alpha=a)`, which tch does not bind): no buffer the size of the network is
    /// allocated per step.
    fn step(&mut self, lr: f64) {
        let Some((_, first)) = self.params.first() else {
            return;
        };
        // The two factors as one-element tensors on the parameters' device, made once a step.
        let scalar = |v: f64| Tensor::from(v as f32).to_kind(first.kind()).to_device(first.device());
        let (decay, minus_lr) = (scalar(self.weight_decay), scalar(-lr));
        tch::no_grad(|| {
            for ((_, p), buf) in self.params.iter_mut().zip(&mut self.buffers) {
                let mut grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                if self.weight_decay != 0.0 {
                    // The gradient is this step's own (cleared before each backward pass).
                    let _ = grad.addcmul_(p, &decay);
                }
                let step = match buf {
                    Some(b) if self.momentum != 0.0 => {
                        let _ = b.g_mul_scalar_(self.momentum).g_add_(&grad);
                        b.shallow_clone()
                    }
                    _ if self.momentum != 0.0 => {
                        let b = grad.copy();
                        *buf = Some(b.shallow_clone());
                        b
                    }
                    _ => grad,
                };
                let _ = p.addcmul_(&step, &minus_lr);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, Module, OptimizerConfig};
    use tch::{Device, Kind};

    /// Same model, same data: this optimizer and tch's (libtorch's) SGD end at the same weights.
    #[test]
    fn matches_libtorch_sgd() {
        // Inputs and starting weights independent of the global RNG (tests run in parallel).
        let x = (Tensor::arange(32, (Kind::Float, Device::Cpu)).view([8, 4]) * 0.37).sin();
        let y = Tensor::from_slice(&[0i64, 1, 1, 0, 1, 0, 0, 1]);
        let start = nn::VarStore::new(Device::Cpu);
        let _ = nn::linear(start.root() / "l", 4, 2, Default::default());
        let run = |ours: bool| {
            let mut vs = VarStore::new(Device::Cpu);
            let lin = nn::linear(vs.root() / "l", 4, 2, Default::default());
            vs.copy(&start).unwrap();
            let mut mine = Sgd::new(&vs, 0.9, 1e-2);
            let mut theirs = nn::Sgd {
                momentum: 0.9,
                dampening: 0.0,
                wd: 1e-2,
                nesterov: false,
            }
            .build(&vs, 0.1)
            .unwrap();
            for _ in 0..5 {
                let loss = lin.forward(&x).cross_entropy_for_logits(&y);
                if ours {
                    mine.backward_step(&loss, 0.1);
                } else {
                    theirs.backward_step(&loss);
                }
            }
            lin.ws.copy()
        };
        let diff = (run(true) - run(false)).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "weights differ by {diff}");
    }
}
