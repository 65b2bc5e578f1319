//! `swipebot compare` with and without its score cache: the same comparison of two models over the
//! same recorded profiles, first on an empty cache (every photo decoded and scored once a model), then
//! again (every score from the cache), then a sweep of 9 thresholds on the warm cache. The ratio is
//! what the cache saves a user who compares again or sweeps thresholds.
//!
//! `cargo bench --bench compare [-- --profiles N --input S]` (the untrained models come from the
//! `train` binary of the same profile: a plain `cargo bench` builds it).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::bench::BenchArgs;
use swipebot::compare::{compare, CompareOptions};
use swipebot::policy::NoPhotos;
use swipebot::vision::scorer::ScorerOptions;

fn main() {
    let args = BenchArgs::parse(
        "cargo bench --bench compare -- [--profiles N] [--input S]",
        &["--profiles", "--input"],
        &[],
    )
    .unwrap_or_else(|e| {
        eprintln!("compare: {e}");
        std::process::exit(1);
    });
    let profiles = args.number("--profiles", 100, 1).unwrap();
    let input = args.number("--input", 224, 1).unwrap() as u32;
    let dir = tempfile::tempdir().unwrap();
    swipebot::demo::write(dir.path(), swipebot::demo::DemoSize { per_class: 2, profiles }).unwrap();
    let models = vec![
        common::models::untrained_model(&dir.path().join("models"), input, true),
        common::models::untrained_model(&dir.path().join("models"), input, false),
    ];
    let mut options = CompareOptions {
        profiles: dir.path().join("profiles"),
        models,
        thresholds: Vec::new(),
        labels: None,
        cache_dir: Some(dir.path().join("cache")),
        scorer: ScorerOptions::default(),
        batch_size: 8,
        decode_threads: 2,
        max_photos: 9,
        no_photos: NoPhotos::Skip,
    };
    let timed = |options: &CompareOptions| {
        let start = Instant::now();
        let c = compare(options).expect("the comparison runs");
        (start.elapsed().as_secs_f64(), c)
    };
    let (cold, c) = timed(&options);
    let scored: usize = c.models.iter().map(|m| m.scored).sum();
    let (warm, c) = timed(&options);
    assert_eq!(
        c.models.iter().map(|m| m.scored).sum::<usize>(),
        0,
        "the second run scores nothing"
    );
    options.thresholds = (1..=9).map(|i| i as f32 / 10.0).collect();
    let (sweep, c) = timed(&options);
    println!(
        "compare: {profiles} profiles, {} photos, 2 models at input {input}: {scored} photo scores computed",
        c.photos
    );
    println!("first run (empty cache): {cold:.2} s");
    println!("second run (cache):      {warm:.3} s   ({:.0}x faster)", cold / warm);
    println!(
        "9-threshold sweep (cache, {} runs): {sweep:.3} s   ({:.0}x faster than the first run)",
        c.runs.len(),
        cold / sweep
    );
}
