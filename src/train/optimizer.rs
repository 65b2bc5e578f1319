//! The optimizer a run uses (`--optimizer`): SGD with momentum ([`crate::sgd`], the original's) or
//! AdamW ([`crate::adam`], the default recipe's), behind one type so the loop and the checkpoint
//! need not know which.

use tch::nn::VarStore;
use tch::Tensor;

use crate::adam::Adam;
use crate::mixed::GradScaler;
use crate::recipe::OptimizerKind;
use crate::sgd::Sgd;

/// One of the optimizers, with its state.
pub enum Optimizer {
    /// SGD with momentum and L2 weight decay.
    Sgd(Sgd),
    /// AdamW.
    Adam(Adam),
}

impl Optimizer {
    /// A fresh optimizer of `kind` over the trainable variables of `vs`.
    pub fn new(kind: OptimizerKind, vs: &VarStore, momentum: f64, weight_decay: f64) -> Self {
        match kind {
            OptimizerKind::Sgd => Optimizer::Sgd(Sgd::new(vs, momentum, weight_decay)),
            OptimizerKind::Adam => Optimizer::Adam(Adam::new(vs, weight_decay)),
        }
    }

    /// Clears the gradients, back-propagates `loss` and applies one update at learning rate `lr`.
    pub fn backward_step(&mut self, loss: &Tensor, lr: f64) {
        match self {
            Optimizer::Sgd(o) => o.backward_step(loss, lr),
            Optimizer::Adam(o) => o.backward_step(loss, lr),
        }
    }

    /// One step with loss scaling ([`GradScaler`], for fp16): back-propagates `loss` times the
    /// scale, divides the gradients by it and applies the update only when they are all finite.
    /// Returns whether the update was applied.
    pub fn scaled_backward_step(&mut self, loss: &Tensor, lr: f64, scaler: &mut GradScaler) -> bool {
        let params = match self {
            Optimizer::Sgd(o) => {
                o.zero_grad();
                o.params()
            }
            Optimizer::Adam(o) => {
                o.zero_grad();
                o.params()
            }
        };
        (loss * scaler.scale()).backward();
        if !scaler.unscale_and_check(&params) {
            return false;
        }
        match self {
            Optimizer::Sgd(o) => o.step(lr),
            Optimizer::Adam(o) => o.step(lr),
        }
        true
    }

    /// The state to save in a checkpoint (`momentum.ot`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        match self {
            Optimizer::Sgd(o) => o.state(),
            Optimizer::Adam(o) => o.state(),
        }
    }

    /// Restores a state saved by [`Optimizer::state`] for the same kind.
    pub fn load_state(&mut self, state: Vec<(String, Tensor)>) -> anyhow::Result<()> {
        match self {
            Optimizer::Sgd(o) => o.load_state(state),
            Optimizer::Adam(o) => o.load_state(state),
        }
    }
}
