//! Scoring many photos with decoding overlapped with inference: worker threads decode and
//! preprocess while the calling thread runs batches through the scorer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::vision::error::PhotoError;
use crate::vision::scorer::{Scorer, ScorerError};

/// Scores `count` photos whose bytes `load(i)` returns, in batches of `batch_size`, decoding on
/// `decode_threads` threads. Returns one result per photo, in order. A photo that cannot be loaded
/// or decoded gets its error; the others are still scored. An inference failure stops everything.
pub fn score_all<L>(
    scorer: &mut Scorer,
    count: usize,
    load: L,
    batch_size: usize,
    decode_threads: usize,
) -> Result<Vec<Result<f32, PhotoError>>, ScorerError>
where
    L: Fn(usize) -> Result<Vec<u8>, PhotoError> + Sync,
{
    let batch_size = batch_size.max(1);
    let mut results: Vec<Option<Result<f32, PhotoError>>> = (0..count).map(|_| None).collect();
    let next = AtomicUsize::new(0);
    let per_input = scorer.info().recipe.input_len();
    let (recipe, limits) = (scorer.info().recipe, *scorer.limits());
    let (tx, rx) = mpsc::sync_channel::<(usize, Result<Vec<f32>, PhotoError>)>(batch_size * 2);
    std::thread::scope(|scope| -> Result<(), ScorerError> {
        for _ in 0..decode_threads.clamp(1, count.max(1)) {
            let tx = tx.clone();
            let (load, next) = (&load, &next);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let prepared = load(i).and_then(|bytes| {
                    let mut input = Vec::with_capacity(per_input);
                    swipebot_core::preprocess::prepare(&bytes, &recipe, &limits, &mut input)?;
                    Ok(input)
                });
                if tx.send((i, prepared)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut pending: Vec<usize> = Vec::with_capacity(batch_size);
        let mut data: Vec<f32> = Vec::with_capacity(batch_size * per_input);
        let mut flush = |pending: &mut Vec<usize>,
                         data: &mut Vec<f32>,
                         results: &mut Vec<Option<Result<f32, PhotoError>>>|
         -> Result<(), ScorerError> {
            if pending.is_empty() {
                return Ok(());
            }
            let scores = scorer.score(data)?;
            for (i, s) in pending.drain(..).zip(scores) {
                results[i] = Some(PhotoError::check_score(s));
            }
            data.clear();
            Ok(())
        };
        for (i, prepared) in rx {
            match prepared {
                Ok(input) => {
                    pending.push(i);
                    data.extend_from_slice(&input);
                    if pending.len() == batch_size {
                        flush(&mut pending, &mut data, &mut results)?;
                    }
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        flush(&mut pending, &mut data, &mut results)
    })?;
    Ok(results
        .into_iter()
        .map(|r| r.expect("every photo gets a result"))
        .collect())
}
