//! Scoring with the exported GoogLeNet through ONNX Runtime.
//!
//! A [`Scorer`] owns one ONNX Runtime session. Running it needs `&mut self`, so async code hands
//! batches to dedicated threads that own their scorer rather than sharing one behind a lock.

use std::fmt;
use std::path::{Path, PathBuf};

use ort::ep::{self, ExecutionProvider};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use crate::vision::cuda;
use crate::vision::runtime::{self, RuntimeError};
use swipebot_core::model_info::{ModelInfo, ModelInfoError, INPUT_NAME, OUTPUT_NAME};
use swipebot_core::preprocess::{self, Limits, PreprocessError};

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// ONNX Runtime's CPU provider.
    #[default]
    Cpu,
    /// ONNX Runtime's CUDA provider (needs the `onnxruntime-gpu` wheel and a GPU).
    Cuda,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        })
    }
}

/// How to build a scorer: which runtime library, device and thread count.
#[derive(Debug, Clone)]
pub struct ScorerOptions {
    /// Explicit ONNX Runtime library (`runtime.library`); `None` looks at ORT_DYLIB_PATH then the default.
    pub library: Option<PathBuf>,
    /// The device asked for.
    pub device: Device,
    /// With `device = cuda`: fail instead of falling back to the CPU.
    pub require_gpu: bool,
    /// Threads inside one operator (1 per session was fastest on a busy 2-core machine).
    pub intra_threads: usize,
    /// Bounds on encoded and decoded photo sizes.
    pub limits: Limits,
}

impl Default for ScorerOptions {
    fn default() -> Self {
        ScorerOptions {
            library: None,
            device: Device::Cpu,
            require_gpu: false,
            intra_threads: 1,
            limits: Limits::default(),
        }
    }
}

/// A model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ScorerError {
    /// ONNX Runtime is missing or broken.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The model file could not be read.
    #[error("cannot read model {path}: {source}; produce one with `train --data DIR --out FILE`", path = path.display())]
    Read {
        /// The model path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// ONNX Runtime rejected the model file.
    #[error("model {path} is not a valid ONNX model: {message}", path = path.display())]
    Invalid {
        /// The model path.
        path: PathBuf,
        /// What ONNX Runtime said.
        message: String,
    },
    /// The model's metadata is missing or wrong.
    #[error("model {path}: {source}", path = path.display())]
    Metadata {
        /// The model path.
        path: PathBuf,
        /// Which key and why.
        source: ModelInfoError,
    },
    /// CUDA was required but could not be used.
    #[error("CUDA was required (runtime.require_gpu = true) but cannot be used: {0}; or set runtime.require_gpu = false to fall back to the CPU")]
    GpuUnavailable(String),
    /// Inference failed.
    #[error("inference failed: {0}")]
    Inference(String),
}

/// Checks the graph's input against the model's metadata: `[batch, channels, size, size]` with the
/// channels and size the metadata promises. A model whose graph and metadata disagree would fail on
/// every photo (and so, in a daemon, skip profile after profile): it is refused at load.
fn check_input_shape(session: &Session, info: &ModelInfo) -> Result<(), String> {
    let want = [
        -1,
        info.recipe.channels.count() as i64,
        i64::from(info.recipe.crop),
        i64::from(info.recipe.crop),
    ];
    let found = match session.inputs().first().map(|i| i.dtype()) {
        Some(ort::value::ValueType::Tensor { shape, .. }) => shape.to_vec(),
        other => return Err(format!("input `{INPUT_NAME}` is not a tensor ({other:?})")),
    };
    // The batch dimension is free (-1) or any size; the others must match the metadata exactly.
    let fits = found.len() == 4 && found[1..] == want[1..];
    if fits {
        Ok(())
    } else {
        Err(format!(
            "the graph's input `{INPUT_NAME}` is {found:?} but its metadata says {} channel(s) of {}x{} (swipebot.channels, swipebot.input_size): the file was edited or exported wrongly; export it again with `train`",
            want[1], want[2], want[3]
        ))
    }
}

/// One loaded model, ready to score batches of preprocessed photos.
pub struct Scorer {
    session: Session,
    info: ModelInfo,
    sha256: String,
    device: Device,
    /// Why CUDA was asked for and not used, when it was not.
    fallback: Option<String>,
    limits: Limits,
    path: PathBuf,
}

impl fmt::Debug for Scorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scorer")
            .field("path", &self.path)
            .field("device", &self.device)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl Scorer {
    /// Loads a model exported by `train`, checks its contract and picks the execution provider.
    pub fn load(path: &Path, options: &ScorerOptions) -> Result<Self, ScorerError> {
        let bytes = std::fs::read(path).map_err(|source| ScorerError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let sha256 = swipebot_core::model_info::sha256_hex(&bytes);
        let (library, env) = runtime::environment(options.library.as_deref())?;
        let invalid = |e: &dyn fmt::Display| ScorerError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        };

        let mut builder = Session::builder(env)
            .map_err(|e| invalid(&e))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| invalid(&e))?
            .with_intra_threads(options.intra_threads.max(1))
            .map_err(|e| invalid(&e))?
            .with_inter_threads(1)
            .map_err(|e| invalid(&e))?
            // Idle intra-op threads would otherwise spin for CPU that photo decoding needs.
            .with_intra_op_spinning(false)
            .map_err(|e| invalid(&e))?;
        let mut device = Device::Cpu;
        let mut fallback = None;
        if options.device == Device::Cuda {
            let problem = match cuda::prepare(library).map(|()| ep::CUDA::is_available()) {
                Err(problem) => Some(problem.to_string()),
                Ok(Ok(true)) => match builder.with_execution_providers([ep::CUDA::default().build().error_on_failure()]) {
                    Ok(b) => {
                        builder = b;
                        device = Device::Cuda;
                        None
                    }
                    Err(e) => {
                        let message = e.to_string();
                        builder = e.recover();
                        Some(message)
                    }
                },
                Ok(Ok(false)) => Some(format!(
                    "the ONNX Runtime at {} lists no CUDA execution provider (it is the CPU build): run `scripts/setup.sh --gpu`",
                    library.display()
                )),
                Ok(Err(e)) => Some(e.to_string()),
            };
            if let Some(problem) = problem {
                if options.require_gpu {
                    return Err(ScorerError::GpuUnavailable(problem));
                }
                tracing::warn!(%problem, "CUDA was asked for but cannot be used; scoring on the CPU");
                fallback = Some(problem);
            }
        }
        let session = builder.commit_from_memory(&bytes).map_err(|e| invalid(&e))?;
        let info = {
            let metadata = session.metadata().map_err(|e| invalid(&e))?;
            ModelInfo::from_lookup(|key| metadata.custom(key)).map_err(|source| ScorerError::Metadata {
                path: path.to_path_buf(),
                source,
            })?
        };
        let names = |outlets: &[ort::value::Outlet]| outlets.iter().map(|o| o.name().to_string()).collect::<Vec<_>>();
        if names(session.inputs()) != [INPUT_NAME] || !names(session.outputs()).iter().any(|n| n == OUTPUT_NAME) {
            return Err(ScorerError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "expected input `{INPUT_NAME}` and output `{OUTPUT_NAME}`, found inputs {:?} and outputs {:?}",
                    names(session.inputs()),
                    names(session.outputs())
                ),
            });
        }
        check_input_shape(&session, &info).map_err(|message| ScorerError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        tracing::info!(model = %path.display(), %device, sha256 = %sha256, input = info.input_size, channels = info.recipe.channels.count(), threshold = info.threshold, "model loaded");
        Ok(Scorer {
            session,
            info,
            sha256,
            device,
            fallback,
            limits: options.limits,
            path: path.to_path_buf(),
        })
    }

    /// What the model file says about itself.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// SHA-256 of the model file, as journaled with every decision.
    pub fn model_sha256(&self) -> &str {
        &self.sha256
    }

    /// The device inference actually runs on (CPU after a fallback).
    pub fn device(&self) -> Device {
        self.device
    }

    /// Why this scorer runs on the CPU although CUDA was asked for (`None` when it was not asked
    /// for, or is in use): the first thing that stood in the way, with what fixes it.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// The photo size limits this scorer applies.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decodes and preprocesses one photo into this model's input, appending it to `batch`.
    pub fn prepare(&self, bytes: &[u8], batch: &mut Vec<f32>) -> Result<(), PreprocessError> {
        preprocess::prepare(bytes, &self.info.recipe, &self.limits, batch)
    }

    /// Scores a batch of prepared inputs (as filled by [`Scorer::prepare`]) and returns each one's
    /// LIKE probability.
    pub fn score(&mut self, batch: &[f32]) -> Result<Vec<f32>, ScorerError> {
        let like = self.info.like_index();
        let classes = self.info.classes.len();
        Ok(self
            .probabilities(batch)?
            .chunks(classes)
            .map(|row| row[like])
            .collect())
    }

    /// Runs a batch of prepared inputs and returns the full output, `[N, classes]` row-major.
    pub fn probabilities(&mut self, batch: &[f32]) -> Result<Vec<f32>, ScorerError> {
        let recipe = self.info.recipe;
        let per_input = recipe.input_len();
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        if !batch.len().is_multiple_of(per_input) {
            return Err(ScorerError::Inference(format!(
                "batch of {} values is not a multiple of {per_input}",
                batch.len()
            )));
        }
        let n = batch.len() / per_input;
        let shape = [n, recipe.channels.count(), recipe.crop as usize, recipe.crop as usize];
        let input = TensorRef::from_array_view((shape, batch)).map_err(|e| ScorerError::Inference(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![INPUT_NAME => input])
            .map_err(|e| ScorerError::Inference(e.to_string()))?;
        let (out_shape, probs) = outputs[OUTPUT_NAME]
            .try_extract_tensor::<f32>()
            .map_err(|e| ScorerError::Inference(e.to_string()))?;
        let classes = self.info.classes.len();
        if out_shape.len() != 2 || out_shape[0] as usize != n || out_shape[1] as usize != classes {
            return Err(ScorerError::Inference(format!(
                "output shape {out_shape:?}, expected [{n}, {classes}]"
            )));
        }
        Ok(probs.to_vec())
    }
}
