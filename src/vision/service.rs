//! Scoring for async code: dedicated threads, each owning a [`Scorer`], take prepared photos from a
//! bounded queue and run them in batches of whatever is waiting (up to `batch_size`). Callers await
//! their photo's score; a full queue makes them wait (back-pressure).

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use swipebot_core::model_info::ModelInfo;
use swipebot_core::preprocess::{self, Limits};

use crate::metrics::metrics;
use crate::vision::error::PhotoError;
use crate::vision::scorer::{Device, Scorer, ScorerError, ScorerOptions};

/// One prepared photo waiting for a scoring thread, and where its score goes.
struct Job {
    /// The photo's model input (planar f32, as [`preprocess::prepare`] writes it).
    input: Vec<f32>,
    /// The waiting caller.
    reply: oneshot::Sender<Result<f32, PhotoError>>,
}

/// A pool of scoring threads behind a bounded queue.
pub struct ScoringService {
    /// Where callers put prepared photos; bounded, so a busy scorer slows the producers down.
    queue: mpsc::Sender<Job>,
    /// The model's contract, read once at load.
    info: ModelInfo,
    /// SHA-256 of the model file, journaled with every decision.
    sha256: String,
    /// Where inference actually runs (the CPU after a CUDA fallback).
    device: Device,
    /// Size limits applied before decoding.
    limits: Limits,
    /// Bounds the photos being decoded at once: a decoded photo can take up to
    /// `max_pixels` x 8 bytes, so this (not the number of photos in flight) bounds that memory.
    decode_slots: tokio::sync::Semaphore,
}

impl std::fmt::Debug for ScoringService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScoringService")
            .field("sha256", &self.sha256)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl ScoringService {
    /// Loads `threads` sessions of the model at `path` and starts their threads, with at most
    /// `decodes_at_once` photos being decoded at any time. The threads stop when the service is
    /// dropped and the queue drains.
    pub fn start(
        path: &Path,
        options: &ScorerOptions,
        threads: usize,
        batch_size: usize,
        decodes_at_once: usize,
    ) -> Result<Arc<Self>, ScorerError> {
        let scorers = (0..threads.max(1))
            .map(|_| Scorer::load(path, options))
            .collect::<Result<Vec<_>, _>>()?;
        let first = &scorers[0];
        let (info, sha256, device, limits) = (
            first.info().clone(),
            first.model_sha256().to_string(),
            first.device(),
            *first.limits(),
        );
        let (queue, rx) = mpsc::channel::<Job>(batch_size.max(1) * threads.max(1) * 2);
        let rx = Arc::new(Mutex::new(rx));
        for (i, scorer) in scorers.into_iter().enumerate() {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("scorer-{i}"))
                .spawn(move || run_thread(scorer, &rx, batch_size.max(1)))
                .expect("spawning a scoring thread");
        }
        Ok(Arc::new(ScoringService {
            queue,
            info,
            sha256,
            device,
            limits,
            decode_slots: tokio::sync::Semaphore::new(decodes_at_once.max(1)),
        }))
    }

    /// The model's metadata.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// SHA-256 of the model file.
    pub fn model_sha256(&self) -> &str {
        &self.sha256
    }

    /// The device inference runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Decodes and preprocesses encoded photo `bytes` off the async threads, then scores them.
    pub async fn decode_and_score(&self, bytes: Vec<u8>) -> Result<f32, PhotoError> {
        let (recipe, limits) = (self.info.recipe, self.limits);
        let _slot = self
            .decode_slots
            .acquire()
            .await
            .expect("the decode semaphore is never closed");
        let input = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let mut input = Vec::with_capacity(recipe.input_len());
            let prepared = preprocess::prepare(&bytes, &recipe, &limits, &mut input).map(|()| input);
            metrics().decode_time(started.elapsed());
            prepared
        })
        .await
        .map_err(|e| PhotoError::Engine(format!("the decoder task failed: {e}")))??;
        self.score_prepared(input).await
    }

    /// Scores one blank input within `timeout`: whether the scoring threads answer at all (the
    /// health check).
    pub async fn probe(&self, timeout: std::time::Duration) -> Result<(), PhotoError> {
        let input = vec![0.0; self.info.recipe.input_len()];
        match tokio::time::timeout(timeout, self.score_prepared(input)).await {
            Ok(answer) => answer.map(|_| ()),
            Err(_) => Err(PhotoError::Engine(format!("no score within {} s", timeout.as_secs()))),
        }
    }

    /// Scores one already-prepared input.
    async fn score_prepared(&self, input: Vec<f32>) -> Result<f32, PhotoError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { input, reply })
            .await
            .map_err(|_| PhotoError::Engine("the scoring threads have stopped".into()))?;
        answer
            .await
            .map_err(|_| PhotoError::Engine("the scoring thread dropped the photo".into()))?
    }
}

/// The body of one scoring thread: takes whatever is queued (up to `batch_size`) as one batch, scores
/// it and answers each caller; ends when the service is dropped.
fn run_thread(mut scorer: Scorer, rx: &Mutex<mpsc::Receiver<Job>>, batch_size: usize) {
    let mut jobs = Vec::with_capacity(batch_size);
    let mut data = Vec::new();
    loop {
        {
            let mut rx = rx.lock().expect("scoring queue lock");
            match rx.blocking_recv() {
                Some(job) => jobs.push(job),
                None => return,
            }
            while jobs.len() < batch_size {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        data.clear();
        for job in &jobs {
            data.extend_from_slice(&job.input);
        }
        let started = std::time::Instant::now();
        let scored = scorer.score(&data);
        metrics().inference(jobs.len(), started.elapsed());
        match scored {
            Ok(scores) => {
                for (job, score) in jobs.drain(..).zip(scores) {
                    let _ = job.reply.send(PhotoError::check_score(score));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(PhotoError::Engine(message.clone())));
                }
            }
        }
    }
}
