//! Small file-system helpers shared by the binaries.

use std::io::Write;
use std::path::Path;

/// The mode new files are asked for; the kernel takes the process's umask off it, as it does for
/// any program that creates a file (0644 under the usual umask 022, 0600 under 077).
#[cfg(unix)]
const NEW_FILE_MODE: u32 = 0o666;

/// Writes `bytes` to `path` through a temporary file in the same directory, synced and renamed, so a
/// crash never leaves a half-written file under the final name.
///
/// The file gets the permissions any new file of the user gets (0666 less the umask), not the
/// owner-only mode of a temporary file: a model trained by one user must be readable by the account
/// the service runs as. Whoever needs a private file sets a stricter umask (the systemd unit does).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Passed to open(2) as its mode, so the umask applies (and a default ACL, where there is one).
        builder.permissions(std::fs::Permissions::from_mode(NEW_FILE_MODE));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        // Make the rename itself durable; some file systems refuse to sync a directory, which is harmless.
        let _ = d.sync_all();
    }
    Ok(())
}

/// The tests' helpers for child processes, shared with the integration tests.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../tests/common/process.rs"]
mod test_process;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Set in the child process: the file it writes with [`write_atomic`] and nothing else.
    const CHILD_WRITES: &str = "SWIPEBOT_TEST_WRITE_ATOMIC_TO";

    /// Runs this very test again in a child process started under `umask`, where it writes `path`
    /// (the umask is process-wide, so it is never changed in the process running the tests).
    fn write_in_child_under(umask: &str, path: &Path) {
        let name = format!("{}::written_files_get_the_mode_the_umask_allows", module_path!());
        let name = name.split_once("::").map_or(name.as_str(), |(_, rest)| rest);
        super::test_process::rerun_test_under_umask(name, umask, (CHILD_WRITES, path.as_os_str()));
    }

    /// The permission bits of the file at `path`.
    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Written files get 0666 less the umask (not tempfile's owner-only 0600), also when they
    /// replace a file of another mode; the content is whole and no temporary file is left behind.
    #[test]
    fn written_files_get_the_mode_the_umask_allows() {
        if let Some(path) = std::env::var_os(CHILD_WRITES) {
            let path = Path::new(&path);
            let content = format!("written by {}", std::process::id());
            write_atomic(path, content.as_bytes()).unwrap();
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/model.onnx");
        for (umask, expected) in [("022", 0o644), ("077", 0o600), ("027", 0o640), ("002", 0o664)] {
            write_in_child_under(umask, &path);
            assert_eq!(mode(&path), expected, "umask {umask}: {:o}", mode(&path));
            let content = std::fs::read_to_string(&path).unwrap();
            assert!(content.starts_with("written by "), "{content}");
        }
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the file itself: {left:?}");
    }
}
