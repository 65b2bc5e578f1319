//! The console's decisions page on a large journal: `GET /` (and a deep page, and a search) through
//! the real router over loopback HTTP, set against reading the whole journal once
//! (`Journal::read_all`), which is what a page that did not index would pay on every request. The
//! first request builds the index; later ones read only what was appended and the lines they show.
//!
//! `cargo bench --bench console [-- --records N --requests R]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::bench::{median, BenchArgs};
use swipebot::cli::StateArgs;
use swipebot::console::{server, Places};
use swipebot::journal::{Journal, Record, DECISIONS};
use swipebot::profile::{Decision, PhotoScore};

fn main() {
    let args = BenchArgs::parse(
        "cargo bench --bench console -- [--records N] [--requests R]",
        &["--records", "--requests"],
        &[],
    )
    .unwrap_or_else(|e| {
        eprintln!("console: {e}");
        std::process::exit(1);
    });
    let records = args.number("--records", 100_000, 1).unwrap();
    let requests = args.number("--requests", 20, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    write_journal(&state, records);

    let places = Places::resolve(&StateArgs {
        config: None,
        state_dir: Some(state.clone()),
        record_dir: None,
    })
    .unwrap();
    let shared = Arc::new(server::Shared {
        state: Mutex::new(places.console_state().unwrap()),
        csrf: "bench".into(),
        password: None,
        page_size: places.settings.console.page_size,
        max_photo_bytes: places.settings.pipeline.max_photo_bytes,
    });
    let router = server::router(shared, places.settings.console.max_body_bytes);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let base = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        base
    });
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let start = Instant::now();
        let body = runtime.block_on(async {
            let r = http.get(format!("{base}{path}")).send().await.unwrap();
            assert!(r.status().is_success(), "{path}: {}", r.status());
            r.text().await.unwrap()
        });
        (start.elapsed().as_secs_f64(), body)
    };
    let (first, body) = get("/");
    assert_eq!(body.matches("<article class=\"card\"").count(), 50, "a full page");
    let time = |path: &str| median((0..requests).map(|_| get(path).0).collect());
    let page = time("/");
    let deep = time(&format!("/?page={}", records / 50 / 2));
    let search = time("/?decision=like&q=p0000123");
    let read_all = median(
        (0..3)
            .map(|_| {
                let start = Instant::now();
                assert_eq!(Journal::read_all(&state).unwrap().len(), records);
                start.elapsed().as_secs_f64()
            })
            .collect(),
    );
    println!("console: decisions page over {records} journal records (median of {requests} requests)");
    println!("  first request (builds the index)     {:>9.1} ms", first * 1e3);
    println!("  newest page (50 cards)               {:>9.1} ms", page * 1e3);
    println!("  a page in the middle                 {:>9.1} ms", deep * 1e3);
    println!("  filter and search (all records)      {:>9.1} ms", search * 1e3);
    println!("  baseline: Journal::read_all          {:>9.1} ms", read_all * 1e3);
    println!(
        "  newest page is {:.0}x faster than reading the journal",
        read_all / page
    );
}

/// Writes `n` records as the daemon would (same serializer, one line each), without a sync per
/// line: the bench measures reading, not writing.
fn write_journal(state: &std::path::Path, n: usize) {
    let file = std::fs::File::create(state.join(DECISIONS)).unwrap();
    let mut out = std::io::BufWriter::new(file);
    let start = chrono::Utc::now() - chrono::Duration::days(30);
    for i in 0..n {
        let decision = [Decision::Like, Decision::Pass, Decision::Pass, Decision::Skip][i % 4];
        let record = Record {
            scores: (0..3)
                .map(|k| PhotoScore::Scored {
                    photo: format!("{k}.jpg"),
                    score: ((i * 7 + k * 13) % 100) as f32 / 100.0,
                })
                .collect(),
            threshold: 0.5,
            model_sha256: format!("{:064x}", i / 25_000),
            sent: decision != Decision::Skip,
            at: start + chrono::Duration::seconds((i * 25) as i64),
            ..Record::new(format!("p{i:08}"), decision, "replay")
        };
        serde_json::to_writer(&mut out, &record).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
}
