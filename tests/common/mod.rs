//! Code shared by the integration tests of both packages (`tests/daemon`, `tests/train`) and by the
//! benchmarks (which include this folder with `#[path]`): one place for each thing more than one of
//! them needs, so that a test and a benchmark never disagree about how it is done.
#![allow(dead_code)]

pub mod bench;
pub mod images;
pub mod journal;
pub mod layout;
pub mod models;
pub mod paths;
pub mod process;
