//! Child processes of the tests and benchmarks: bounded waits, signals, peak memory.

use std::io::Read;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Waits for `child` to exit; kills it and panics, naming `limit`, if it runs longer.
pub fn wait_with_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` (`TERM`, `HUP`, `INT`, ...) to `child` with kill(1); panics if it cannot be sent.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill -{signal} {} failed", child.id());
}

/// Runs `command` to completion (output discarded) and returns its peak resident set in KiB, read
/// from `VmHWM` in `/proc/PID/status` while it runs (the kernel keeps the high-water mark, so the
/// last reading before exit is the peak). Panics if the command fails.
pub fn peak_rss_kib(command: &mut Command) -> u64 {
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting the process");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{command:?} failed: {status}");
            return peak;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs the test `test` (its path inside the crate, e.g. `fsutil::tests::name`) of the current test
/// executable again, in a child process started under `umask` with `env` set, and panics with its
/// output unless that one test passed there. The umask is process-wide: a test that needs another
/// one runs its work in the child (where it finds `env` set) and checks the result in the parent.
pub fn rerun_test_under_umask(test: &str, umask: &str, env: (&str, &std::ffi::OsStr)) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(std::env::current_exe().expect("the test executable"))
        .args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env(env.0, env.1)
        .output()
        .expect("sh runs");
    let log = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{test} under umask {umask} failed:\n{log}");
    assert!(log.contains("1 passed"), "the child ran no test:\n{log}");
}

/// Reads a child's stderr into a shared string, on a thread of its own, until the child closes it.
pub fn collect_stderr(child: &mut Child) -> (Arc<Mutex<String>>, std::thread::JoinHandle<()>) {
    let log = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&log);
    let mut pipe = child.stderr.take().expect("the child's stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (log, reader)
}
