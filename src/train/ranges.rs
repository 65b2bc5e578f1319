//! Activation ranges for int8 quantization, measured on calibration images by running the fp32
//! graph ([`crate::interpret`]): the range of a tensor sets its uint8 scale and zero point.
//!
//! Two methods (`--calibration`): `minmax`, the smallest and largest value seen, and `percentile`,
//! which cuts the `PERCENTILE` tails of the values seen (a histogram per tensor over the min/max
//! range, in a second pass), trading the rare extreme activations for a finer step on the common
//! ones. Which one flips fewer decisions is measured, not assumed (README, "Precision").

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use tch::{Kind, Tensor};

use crate::interpret::Interpreter;

/// How a tensor's range is read from the calibration activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RangeMethod {
    /// The smallest and the largest value seen.
    Minmax,
    /// The [`PERCENTILE`] and 100 - [`PERCENTILE`] percentiles of the values seen.
    Percentile,
}

/// The upper percentile kept by [`RangeMethod::Percentile`] (the lower one is 100 minus it).
pub const PERCENTILE: f64 = 99.999;

/// Histogram bins per tensor for [`RangeMethod::Percentile`].
const BINS: i64 = 2048;

/// The range `[lo, hi]` of each tensor named in `names`, over every batch of `batches` run through
/// `graph`; with [`RangeMethod::Percentile`] the batches are run twice.
pub fn measure(
    graph: &Interpreter,
    batches: &[Tensor],
    names: &HashSet<String>,
    method: RangeMethod,
) -> anyhow::Result<HashMap<String, (f32, f32)>> {
    let mut extremes: HashMap<String, (f32, f32)> = HashMap::new();
    for x in batches {
        let _probabilities = graph.run(x, &mut |name, y| {
            if names.contains(name) {
                let (lo, hi) = (y.min().double_value(&[]) as f32, y.max().double_value(&[]) as f32);
                let e = extremes.entry(name.to_string()).or_insert((lo, hi));
                *e = (e.0.min(lo), e.1.max(hi));
            }
        })?;
    }
    if let Some(missing) = names.iter().find(|n| !extremes.contains_key(*n)) {
        anyhow::bail!("no node of the graph writes `{missing}`: nothing to calibrate it on");
    }
    if method == RangeMethod::Minmax {
        return Ok(extremes);
    }
    let mut histograms: HashMap<String, Tensor> = HashMap::new();
    for x in batches {
        let _probabilities = graph.run(x, &mut |name, y| {
            if let Some(&(lo, hi)) = extremes.get(name) {
                if hi > lo {
                    let range = [f64::from(lo), f64::from(hi)];
                    let (h, _) = y
                        .to_kind(Kind::Float)
                        .histogram_bin_ct(BINS, range.as_slice(), None::<Tensor>, false);
                    let sum = histograms.remove(name).map_or_else(|| h.shallow_clone(), |s| s + &h);
                    histograms.insert(name.to_string(), sum);
                }
            }
        })?;
    }
    let mut ranges = extremes.clone();
    for (name, h) in histograms {
        let counts = Vec::<f32>::try_from(h.to_kind(Kind::Float)).context("histogram counts")?;
        let (lo, hi) = extremes[&name];
        ranges.insert(name, percentile_range(&counts, lo, hi, PERCENTILE));
    }
    Ok(ranges)
}

/// The values at percentiles `100 - p` and `p` of a histogram `counts` over `[lo, hi]`, as bin edges
/// (the lower edge of the low bin, the upper edge of the high bin, so the kept range never shrinks
/// past the values it is meant to keep).
pub fn percentile_range(counts: &[f32], lo: f32, hi: f32, p: f64) -> (f32, f32) {
    let total: f64 = counts.iter().map(|&c| f64::from(c)).sum();
    if total == 0.0 || counts.is_empty() {
        return (lo, hi);
    }
    let width = f64::from(hi - lo) / counts.len() as f64;
    let cut = total * (1.0 - p / 100.0);
    let edge = |from_top: bool| -> usize {
        let mut seen = 0.0;
        let order: Box<dyn Iterator<Item = usize>> = if from_top {
            Box::new((0..counts.len()).rev())
        } else {
            Box::new(0..counts.len())
        };
        for i in order {
            seen += f64::from(counts[i]);
            if seen > cut {
                return i;
            }
        }
        if from_top {
            0
        } else {
            counts.len() - 1
        }
    };
    let (low_bin, high_bin) = (edge(false), edge(true));
    let low = f64::from(lo) + width * low_bin as f64;
    let high = f64::from(lo) + width * (high_bin + 1) as f64;
    (low as f32, (high as f32).min(hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_cut_the_rare_tails_only() {
        // 1000 values in bin 10, one outlier in the last bin of 100 over [0, 100].
        let mut counts = vec![0f32; 100];
        counts[10] = 1000.0;
        counts[99] = 1.0;
        let (lo, hi) = percentile_range(&counts, 0.0, 100.0, 99.9);
        assert_eq!((lo, hi), (10.0, 11.0), "the outlier is cut at 99.9");
        let (lo, hi) = percentile_range(&counts, 0.0, 100.0, 99.99);
        assert_eq!((lo, hi), (10.0, 100.0), "1 in 1001 is more than 0.01%: kept");
        assert_eq!(percentile_range(&[0.0; 4], -1.0, 1.0, 99.9), (-1.0, 1.0));
    }
}
