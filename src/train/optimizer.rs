//! The optimizer a run uses (`--optimizer`): SGD with momentum ([`crate::sgd`], the original's) or
//! AdamW ([`crate::adam`], the default recipe's), behind one type so the loop and the checkpoint
//! need not know which.

use tch::nn::VarStore;
use tch::Tensor;

use crate::adam::Adam;
use crate::mixed::GradScaler;
use crate::recipe::OptimizerKind;
use crate::sgd::Sgd;

/// The trainable variables of `vs` by name, sorted by name: the order both optimizers keep their
/// state in, so that a checkpoint's entries line up with the parameters.
pub fn trainable(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    params
}

/// What the two optimizers share: clearing the gradients, back-propagating and handing over the
/// parameters are the same for both; only the update differs.
pub trait Update {
    /// The parameters by name, in [`trainable`]'s order.
    fn named_params(&mut self) -> &mut [(String, Tensor)];

    /// Applies one update at learning rate `lr` from the gradients.
    fn step(&mut self, lr: f64);

    /// Sets every gradient to zero before a backward pass (gradients accumulate).
    fn zero_grad(&mut self) {
        for (_, p) in self.named_params() {
            p.zero_grad();
        }
    }

    /// The parameters, in a fixed order (for loss scaling, [`crate::mixed::GradScaler`]).
    fn params(&mut self) -> Vec<Tensor> {
        self.named_params().iter().map(|(_, p)| p.shallow_clone()).collect()
    }

    /// Clears the gradients, back-propagates `loss` and applies one update at learning rate `lr`.
    fn backward_step(&mut self, loss: &Tensor, lr: f64) {
        self.zero_grad();
        loss.backward();
        self.step(lr);
    }
}

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

    /// The optimizer behind the kind.
    fn update(&mut self) -> &mut dyn Update {
        match self {
            Optimizer::Sgd(o) => o,
            Optimizer::Adam(o) => o,
        }
    }

    /// Clears the gradients, back-propagates `loss` and applies one update at learning rate `lr`.
    pub fn backward_step(&mut self, loss: &Tensor, lr: f64) {
        self.update().backward_step(loss, lr);
    }

    /// One step with loss scaling ([`GradScaler`], for fp16): back-propagates `loss` times the
    /// scale, divides the gradients by it and applies the update only when they are all finite.
    /// Returns whether the update was applied.
    pub fn scaled_backward_step(&mut self, loss: &Tensor, lr: f64, scaler: &mut GradScaler) -> bool {
        let update = self.update();
        update.zero_grad();
        (loss * scaler.scale()).backward();
        if !scaler.unscale_and_check(&update.params()) {
            return false;
        }
        update.step(lr);
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
