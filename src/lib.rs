//! swipebot: scores every photo of a dating profile with a GoogLeNet trained on your own `like/` and
//! `nope/` folders, and swipes right when any photo scores at or above the model's threshold.
//!
//! The library holds everything; the binaries in `src/bin` only parse arguments and call in.
//! See ARCHITECTURE.md for the path of a photo from URL to decision.

#![warn(missing_docs)]

pub mod app;
pub mod cli;
pub mod compare;
pub mod config;
pub mod console;
pub mod daemon;
pub mod demo;
pub mod journal;
pub mod labels;
pub mod logging;
pub mod metrics;
pub mod pacing;
pub mod policy;
pub mod profile;
pub mod shutdown;
pub mod source;
pub mod stats;
pub mod version;
pub mod vision;
