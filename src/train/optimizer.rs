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
        self.zero_grad();
        loss.backward();
        self.step(lr);
    }

    /// One step with loss scaling ([`GradScaler`], for fp16): back-propagates `loss` times the
    /// scale, divides the gradients by it and applies the update only when they are all finite.
    /// Returns whether the update was applied.
    pub fn scaled_backward_step(&mut self, loss: &Tensor, lr: f64, scaler: &mut GradScaler) -> bool {
        self.zero_grad();
        (loss * scaler.scale()).backward();
        if !scaler.unscale_and_check(&self.params()) {
            return false;
        }
        self.step(lr);
        true
    }

    /// Sets every gradient to zero before a backward pass.
    fn zero_grad(&mut self) {
        match self {
            Optimizer::Sgd(o) => o.zero_grad(),
            Optimizer::Adam(o) => o.zero_grad(),
        }
    }

    /// The trainable parameters.
    fn params(&self) -> Vec<Tensor> {
        match self {
            Optimizer::Sgd(o) => o.params(),
            Optimizer::Adam(o) => o.params(),
        }
    }

    /// Applies one update at learning rate `lr` from the gradients.
    fn step(&mut self, lr: f64) {
        match self {
            Optimizer::Sgd(o) => o.step(lr),
            Optimizer::Adam(o) => o.step(lr),
        }
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
