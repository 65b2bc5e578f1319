//! What systemd sees of the daemon, through the same channels systemd uses: the notification socket
//! (`READY=1`, the `STATUS=` line, `STOPPING=1`) and a journal stream on stderr (`JOURNAL_STREAM`:
//! syslog priorities, no timestamps); and what a bad `SWIPEBOT_LOG` or a fatal error looks like.

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use swipebot::profile::Decision;

use crate::common;
use crate::common::journal::journaled;

/// A model and demo profiles in a temporary folder.
struct Setup {
    /// Holds everything.
    dir: tempfile::TempDir,
    /// The untrained 64x64 grayscale model.
    model: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let model = common::models::untrained_model(dir.path(), 64, true);
        swipebot::demo::write(
            &dir.path().join("demo"),
            swipebot::demo::DemoSize {
                per_class: 0,
                profiles: 6,
            },
        )
        .unwrap();
        Setup { dir, model }
    }

    /// `swipebot replay` on the demo profiles into `state`, with `extra` arguments.
    fn replay(&self, state: &str, extra: &[&str]) -> Command {
        self.replay_with(&self.model, state, extra)
    }

    /// [`Setup::replay`] with another model.
    fn replay_with(&self, model: &Path, state: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(common::paths::bin("swipebot"));
        cmd.arg("replay")
            .arg(self.dir.path().join("demo/profiles"))
            .arg("--model")
            .arg(model)
            .arg("--state-dir")
            .arg(self.dir.path().join(state))
            .args(extra)
            .env_remove("SWIPEBOT_LOG")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET");
        cmd
    }

    /// Runs `cmd` with stderr going to a file that `JOURNAL_STREAM` names, as systemd connects a
    /// service's stderr to the journal; returns the exit status and what was written there.
    fn run_as_journal_stream(&self, mut cmd: Command, name: &str) -> (std::process::ExitStatus, String) {
        let path = self.dir.path().join(name);
        let file = std::fs::File::create(&path).unwrap();
        let meta = file.metadata().unwrap();
        let status = cmd
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .stdout(Stdio::null())
            .stderr(file)
            .status()
            .unwrap();
        (status, std::fs::read_to_string(&path).unwrap())
    }
}

/// Whether `line` holds an RFC 3339 timestamp (`2026-11-29T07:00:00`).
fn has_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.windows(19).any(|w| {
        let digits = |r: std::ops::Range<usize>| w[r].iter().all(u8::is_ascii_digit);
        digits(0..4) && w[4] == b'-' && digits(5..7) && w[7] == b'-' && digits(8..10) && w[10] == b'T'
    })
}

#[test]
fn systemd_is_told_ready_then_a_status_line_with_the_journaled_counts_then_stopping() {
    let s = Setup::new();
    let socket_path = s.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let out = s
        .replay("state", &[])
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut messages = Vec::new();
    socket.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).trim().to_string());
    }
    assert_eq!(messages.first().map(String::as_str), Some("READY=1"), "{messages:?}");
    assert_eq!(messages.last().map(String::as_str), Some("STOPPING=1"), "{messages:?}");
    let status = messages[messages.len() - 2]
        .strip_prefix("STATUS=")
        .unwrap_or_else(|| panic!("the last word before stopping is the status: {messages:?}"));
    let records = journaled(&s.dir.path().join("state"));
    let count = |d: Decision| records.values().filter(|r| r.decision == d).count();
    let expected = format!(
        "decided {} (like {}, pass {}, skip {};",
        records.len(),
        count(Decision::Like),
        count(Decision::Pass),
        count(Decision::Skip)
    );
    assert!(
        status.starts_with(&expected),
        "{status:?} does not start with {expected:?}"
    );
    assert!(status.contains("/min"), "{status}");
}

#[test]
fn on_a_journal_stream_every_line_carries_its_priority_and_no_timestamp_in_text_and_json() {
    let s = Setup::new();
    let (status, text) = s.run_as_journal_stream(s.replay("text", &[]), "text.log");
    assert!(status.success(), "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    for line in &lines {
        assert!(
            ["<3>", "<4>", "<6>", "<7>"].iter().any(|p| line.starts_with(p)),
            "no priority: {line}"
        );
        assert!(!has_timestamp(line), "a second timestamp: {line}");
    }
    // The demo's corrupt photo is a warning, each decision an info line.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>") && l.contains("photo ignored")),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("<6>") && l.contains("decided")),
        "{text}"
    );

    let (status, json) = s.run_as_journal_stream(s.replay("json", &["--log-format", "json"]), "json.log");
    assert!(status.success(), "{json}");
    for line in json.lines().filter(|l| !l.is_empty()) {
        let (priority, object) = line.split_at(3);
        let object: serde_json::Value = serde_json::from_str(object).unwrap_or_else(|e| panic!("{line}: {e}"));
        let want = match object["level"].as_str() {
            Some("ERROR") => "<3>",
            Some("WARN") => "<4>",
            Some("INFO") => "<6>",
            _ => "<7>",
        };
        assert_eq!(priority, want, "{line}");
        assert!(object.get("timestamp").is_none(), "a second timestamp: {line}");
    }

    // Without the journal (a terminal, a file of one's own) lines keep their timestamp.
    let out = s.replay("plain", &[]).output().unwrap();
    let plain = String::from_utf8_lossy(&out.stderr);
    assert!(plain.lines().any(has_timestamp), "{plain}");
    assert!(!plain.starts_with('<'), "{plain}");
}

/// Runs `cmd` to the end with `SWIPEBOT_LOG=value`.
fn with_log_filter(mut cmd: Command, value: &str) -> Output {
    cmd.env("SWIPEBOT_LOG", value).output().unwrap()
}

#[test]
fn a_bad_log_filter_is_a_config_error_and_fatal_errors_follow_the_log_format() {
    let s = Setup::new();
    let bad = "swipebot=loud";
    let out = with_log_filter(s.replay("a", &[]), bad);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("SWIPEBOT_LOG") && stderr.contains(bad),
        "{stderr}"
    );
    assert!(!s.dir.path().join("a").exists(), "nothing ran");

    let out = with_log_filter(s.replay("b", &["--log-format", "json"]), bad);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap_or_else(|e| panic!("{stderr}: {e}"));
    assert_eq!(line["level"], "ERROR");
    assert!(line["message"].as_str().unwrap().contains("SWIPEBOT_LOG"), "{line}");

    // A fatal error of the run itself (a model that is not there), as JSON and under the journal.
    let cmd = s.replay_with(&s.dir.path().join("missing.onnx"), "c", &["--log-format", "json"]);
    let (status, text) = s.run_as_journal_stream(cmd, "fatal.log");
    assert_eq!(status.code(), Some(78), "{text}");
    let last = text.lines().last().unwrap();
    let object: serde_json::Value =
        serde_json::from_str(last.strip_prefix("<3>").unwrap_or_else(|| panic!("{last}"))).unwrap();
    assert!(object["message"].as_str().unwrap().contains("missing.onnx"), "{last}");

    // A good filter from the environment still wins over the config.
    let out = with_log_filter(s.replay("d", &[]), "error");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).trim().is_empty());
}

/// The systemd unit's directory, for the alert rule test.
pub(crate) fn systemd_dir() -> PathBuf {
    common::paths::repo_root().join("systemd")
}

#[test]
fn the_example_alert_rules_pass_promtool() {
    let rules = systemd_dir().join("swipebot-alerts.yml");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap_or_else(|e| panic!("promtool is needed: `apt-get install prometheus` ({e})"));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The README shows the same rules.
    let readme = std::fs::read_to_string(systemd_dir().join("README.md")).unwrap();
    let text = std::fs::read_to_string(&rules).unwrap();
    for expr in text.lines().filter(|l| l.trim_start().starts_with("expr:")) {
        assert!(
            readme.contains(expr.trim()),
            "systemd/README.md lacks `{}`",
            expr.trim()
        );
    }
}
