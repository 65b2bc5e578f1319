//! `swipebot console`: a local web page of every decision (each photo with its score, the
//! threshold, the deciding photo, why a skip was a skip) and a label mode whose likes and nopes go
//! to `<state>/labels.jsonl`; and `swipebot dataset`, which turns those labels into the `like/` +
//! `nope/` folder `train --data` reads.
//!
//! The console only reads the journal and the recorded photos, so it runs beside the daemon. One
//! concern a file: index.rs (paged journal reads), profiles.rs (the record folder), label_store.rs,
//! queue.rs (label mode's order), pages.rs (HTML), assets.rs (script, stylesheet), security.rs
//! (listen address, password, CSRF/Origin, CSP, photo types), server.rs (routes), dataset.rs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use crate::cli::{ConsoleArgs, StateArgs, EXIT_FATAL};
use crate::config::Settings;

mod assets;
pub mod dataset;
pub mod index;
mod label_store;
pub mod pages;
pub mod profiles;
mod queue;
pub mod security;
pub mod server;

pub use label_store::LabelStore;

/// Where the console and `swipebot dataset` read from, and the settings that bound them.
#[derive(Debug, Clone)]
pub struct Places {
    /// The state directory (`decisions.jsonl`, `labels.jsonl`).
    pub state_dir: PathBuf,
    /// The recorded profiles, if any.
    pub record_dir: Option<PathBuf>,
    /// The settings (the config's, or the defaults).
    pub settings: Settings,
}

impl Places {
    /// Resolves the command line against the config: `--state-dir` over `state.dir`,
    /// `--record-dir` over `source.record_dir` over `source.replay_dir` (test mode).
    pub fn resolve(args: &StateArgs) -> Result<Self, String> {
        let settings = match &args.config {
            Some(path) => Settings::load(path).map_err(|e| e.to_string())?,
            None => Settings::default(),
        };
        let state_dir = args.state_dir.clone().unwrap_or_else(|| settings.state.dir.clone());
        let record_dir = args
            .record_dir
            .clone()
            .or_else(|| settings.source.record_dir.clone())
            .or_else(|| settings.source.replay_dir.clone());
        Ok(Places {
            state_dir,
            record_dir,
            settings,
        })
    }

    /// The console's state over these places: nothing read yet, labels loaded.
    pub fn console_state(&self) -> Result<server::ConsoleState, String> {
        Ok(server::ConsoleState {
            index: index::JournalIndex::new(&self.state_dir),
            profiles: profiles::Profiles::new(self.record_dir.clone(), self.settings.source.max_body_bytes),
            labels: LabelStore::open(&self.state_dir)?,
        })
    }
}

/// Runs `swipebot console` until SIGINT or SIGTERM; prints the address served on first.
pub fn run(args: ConsoleArgs) -> ExitCode {
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FATAL)
        }
    }
}

/// Checks the settings, binds, serves.
fn serve(args: ConsoleArgs) -> Result<(), String> {
    let places = Places::resolve(&args.state)?;
    let console = &places.settings.console;
    let listen = args.listen.clone().unwrap_or_else(|| console.listen.clone());
    let addr: SocketAddr =
        crate::metrics::server::parse_listen(&listen).map_err(|e| format!("console.listen (or --listen): {e}"))?;
    let password = security::check_listen(addr, console.password_file.as_deref())?;
    if !places.state_dir.is_dir() {
        return Err(format!(
            "no state directory at {} (give --state-dir, or --config with state.dir)",
            places.state_dir.display()
        ));
    }
    let shared = Arc::new(server::Shared {
        state: Mutex::new(places.console_state()?),
        csrf: security::new_token().map_err(|e| format!("cannot make a CSRF token from /dev/urandom: {e}"))?,
        password,
        page_size: console.page_size,
        max_photo_bytes: places.settings.pipeline.max_photo_bytes,
    });
    let router = server::router(shared, console.max_body_bytes);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e} (another process on that port? set console.listen)"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        if !local.ip().is_loopback() {
            println!("listening on {local}, not loopback: every request needs the password of console.password_file");
        }
        match &places.record_dir {
            Some(dir) => println!("photos from {}", dir.display()),
            None => println!("no record folder: photos are not shown (set source.record_dir to record them)"),
        }
        println!("journal {}", places.state_dir.display());
        println!("swipebot console on http://{local}/");
        axum::serve(listener, router)
            .with_graceful_shutdown(stop_signal())
            .await
            .map_err(|e| format!("serving {local}: {e}"))
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
