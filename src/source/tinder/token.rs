//! The API token: where it is read from, where it may be sent, and a type that never shows it.
//!
//! It goes to the API's own origin (scheme, host and port of `source.tinder.base_url`) and to the hosts
//! listed in `source.tinder.token_hosts`, never over plain http to a host other than this machine, and
//! never across a redirect to another origin. A token file readable by others is refused.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::redirect::Policy;
use reqwest::Url;

use crate::config::TinderSettings;
use crate::source::address::is_loopback_host;
use crate::source::{SetupError, SourceError};

/// The header that carries the token.
pub const AUTH_HEADER: &str = "X-Auth-Token";

/// Most redirects a request carrying the token follows (all within its origin).
const MAX_REDIRECTS: usize = 5;

/// An API token. Its `Debug` never shows it, and it is only ever put in a header marked sensitive.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// Wraps a token, trimming the whitespace a file or variable may add.
    pub fn new(token: &str) -> Self {
        Token(token.trim().to_string())
    }

    /// The token as a header value marked sensitive (so HTTP logging never prints it).
    pub(super) fn header(&self) -> Result<HeaderValue, SourceError> {
        let mut v = HeaderValue::from_str(&self.0)
            .map_err(|_| SourceError::Unauthorized("the API token contains characters a header cannot carry".into()))?;
        v.set_sensitive(true);
        Ok(v)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Which URLs a request may carry the token to: the API's origin and the hosts the user listed.
#[derive(Debug, Clone)]
pub struct TokenScope {
    /// The API's base URL, whose origin (scheme, host, port) the token may go to.
    api: Url,
    /// `source.tinder.token_hosts`, lowercased, without a trailing dot.
    hosts: Vec<String>,
}

impl TokenScope {
    /// The scope of an API at `base` with the extra `hosts` (`source.tinder.token_hosts`).
    pub fn new(base: &Url, hosts: &[String]) -> Self {
        TokenScope {
            api: base.clone(),
            hosts: hosts.iter().map(|h| normal_host(h)).collect(),
        }
    }

    /// Whether a request to `url` may carry the token: never over plain http off this machine; then
    /// the API's own origin, or a listed host.
    pub fn allows(&self, url: &Url) -> bool {
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_host(url) => {}
            _ => return false,
        }
        if url.origin() == self.api.origin() {
            return true;
        }
        url.host_str().is_some_and(|h| self.hosts.contains(&normal_host(h)))
    }
}

/// A host name as compared: lowercase, without the trailing dot of a fully qualified name.
fn normal_host(h: &str) -> String {
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// Why `base_url` cannot carry the token, if it cannot: plain http is for this machine only.
pub fn check_base_url(base: &Url) -> Result<(), String> {
    match base.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(base) => Ok(()),
        "http" => Err(format!(
            "`{base}` is plain http to another machine: the API token would travel unencrypted; use https (plain http is accepted for 127.0.0.1, [::1] and localhost only)"
        )),
        _ => Err(format!("`{base}` is not http or https")),
    }
}

/// Why an entry of `source.tinder.token_hosts` is not a bare host name, if it is not.
pub fn check_token_host(host: &str) -> Result<(), String> {
    let ipv6 = host.starts_with('[') && host.ends_with(']');
    let plain = !host.is_empty() && (ipv6 || !host.contains([':', '/', '@', '?', '#', '\\']));
    let parsed = Url::parse(&format!("https://{host}/")).ok();
    let bare = parsed.is_some_and(|u| u.host_str().map(normal_host) == Some(normal_host(host)) && u.path() == "/");
    if !plain || !bare {
        return Err(format!(
            "`{host}` is not a host name; list bare names such as \"images-ssl.gotinder.com\" (no scheme, port or path)"
        ));
    }
    Ok(())
}

/// Why `credential_name` is not a plain name inside `$CREDENTIALS_DIRECTORY`, if it is not (an
/// absolute path or `..` would read a file elsewhere).
pub fn check_credential_name(name: &str) -> Result<(), String> {
    let mut parts = Path::new(name).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(_)), None) if !name.contains('/') => Ok(()),
        _ => Err(format!(
            "`{name}` is not a credential name: it must be a plain name such as \"swipebot-token\" (no `/`, no `..`), looked up inside $CREDENTIALS_DIRECTORY"
        )),
    }
}

/// The HTTP client for requests that carry the token: it follows redirects within the request's
/// origin only, because reqwest keeps custom headers such as [`AUTH_HEADER`] across hosts. A
/// redirect to another origin comes back as the 3xx answer it is, and is logged.
pub(super) fn client(timeout: Duration, user_agent: &str) -> Result<reqwest::Client, SetupError> {
    let redirects = Policy::custom(|attempt| {
        let first = attempt.previous().first().map(Url::origin);
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else if first == Some(attempt.url().origin()) {
            attempt.follow()
        } else {
            tracing::warn!(
                to = %attempt.url(),
                "a redirect to another origin was not followed: the API token stays on its origin"
            );
            attempt.stop()
        }
    });
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(user_agent)
        .redirect(redirects)
        .build()
        .map_err(|e| SetupError::HttpClient(e.to_string()))
}

/// Where a token comes from: a file (systemd `LoadCredential`), else an environment variable.
pub fn load_token(settings: &TinderSettings) -> Result<Token, SetupError> {
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    load_token_from(settings, credentials.as_deref())
}

/// [`load_token`] with the credentials directory given (`$CREDENTIALS_DIRECTORY` under systemd).
fn load_token_from(settings: &TinderSettings, credentials: Option<&Path>) -> Result<Token, SetupError> {
    if let Some(path) = &settings.token_file {
        return read_token_file(path, "source.tinder.token_file", 0o077);
    }
    if let Some(dir) = credentials {
        check_credential_name(&settings.credential_name).map_err(|message| SetupError::Config {
            key: "source.tinder.credential_name",
            message,
        })?;
        let path = dir.join(&settings.credential_name);
        if path.is_file() {
            // systemd writes a credential 0400 and grants the service's user read access with an ACL,
            // whose mask shows in the group bits: only access by others counts here.
            return read_token_file(&path, "source.tinder.credential_name", 0o007);
        }
    }
    match std::env::var(&settings.token_env) {
        Ok(t) if !t.trim().is_empty() => Ok(Token::new(&t)),
        _ => Err(SetupError::Config {
            key: "source.tinder.token_env",
            message: format!(
                "no API token: set the environment variable {} or source.tinder.token_file (under systemd: LoadCredential={})",
                settings.token_env, settings.credential_name
            ),
        }),
    }
}

/// Reads a token file, refusing one whose mode has any of the `refused` permission bits (others, or
/// group and others, may read or write it) and one that is empty.
fn read_token_file(path: &Path, key: &'static str, refused: u32) -> Result<Token, SetupError> {
    use std::io::Read;
    let unusable = |message: String| SetupError::Config { key, message };
    let mut file = std::fs::File::open(path)
        .map_err(|e| unusable(format!("cannot read the token file {}: {e}", path.display())))?;
    let meta = file
        .metadata()
        .map_err(|e| unusable(format!("cannot read the token file {}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & refused != 0 {
            let who = if refused & 0o070 != 0 {
                "group or others"
            } else {
                "others"
            };
            return Err(unusable(format!(
                "the token file {file} can be read or written by {who} (mode {mode:03o}); run `chmod 600 {file}`",
                file = path.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = (meta, refused);
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| unusable(format!("cannot read the token file {}: {e}", path.display())))?;
    if text.trim().is_empty() {
        return Err(unusable(format!("the token file {} is empty", path.display())));
    }
    Ok(Token::new(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let t = Token::new("secret-token-123\n");
        assert!(!format!("{t:?}").contains("secret"));
        assert!(t.header().unwrap().is_sensitive());
    }

    #[test]
    fn the_scope_is_the_api_origin_and_listed_hosts_over_https() {
        let url = |s: &str| Url::parse(s).unwrap();
        let scope = TokenScope::new(&url("https://api.gotinder.com"), &[]);
        assert!(scope.allows(&url("https://api.gotinder.com/v2/recs/core")));
        assert!(scope.allows(&url("https://API.gotinder.com:443/like/1")));
        assert!(!scope.allows(&url("https://api.gotinder.com:8443/x")), "another port");
        assert!(!scope.allows(&url("http://api.gotinder.com/x")), "plain http");
        assert!(!scope.allows(&url("https://images-ssl.gotinder.com/u/84x84_a.jpg")));
        // The v1 answers' photo URLs are plain http on another host: never with the token.
        assert!(!scope.allows(&url("http://images.gotinder.com/u/84x84_a.jpg")));
        let listed = TokenScope::new(
            &url("https://api.gotinder.com"),
            &["Images-SSL.gotinder.com.".into(), "images.gotinder.com".into()],
        );
        assert!(listed.allows(&url("https://images-ssl.gotinder.com/u/84x84_a.jpg")));
        assert!(
            !listed.allows(&url("http://images.gotinder.com/u/84x84_a.jpg")),
            "listed, but plain http"
        );
        assert!(
            !listed.allows(&url("https://evil.images-ssl.gotinder.com/a.jpg")),
            "names match exactly"
        );
        let local = TokenScope::new(&url("http://127.0.0.1:8080"), &["localhost".into()]);
        assert!(local.allows(&url("http://127.0.0.1:8080/photos/a.jpg")));
        assert!(
            local.allows(&url("http://localhost:9/a.jpg")),
            "plain http on this machine"
        );
        assert!(!local.allows(&url("http://127.0.0.1:8081/a.jpg")));
    }

    /// Settings whose token comes from `file` (or the credential), with no environment fallback.
    fn settings(token_file: Option<&Path>, credential_name: &str) -> TinderSettings {
        TinderSettings {
            token_file: token_file.map(Path::to_path_buf),
            credential_name: credential_name.into(),
            token_env: "SWIPEBOT_UNIT_TEST_NO_SUCH_VARIABLE".into(),
            ..Default::default()
        }
    }

    /// Writes `text` to `path` with permission bits `mode`.
    fn write(path: &Path, text: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// The key and message of a setup error.
    fn config_error(r: Result<Token, SetupError>) -> (&'static str, String) {
        match r {
            Err(SetupError::Config { key, message }) => (key, message),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn a_token_file_others_can_read_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        for mode in [0o644, 0o640, 0o604, 0o660] {
            write(&file, "secret\n", mode);
            let (key, message) = config_error(load_token_from(&settings(Some(&file), "x"), None));
            assert_eq!(key, "source.tinder.token_file");
            let fix = format!("chmod 600 {}", file.display());
            assert!(
                message.contains(&fix) && message.contains(&format!("{mode:03o}")),
                "{message}"
            );
            assert!(!message.contains("secret"));
        }
        for mode in [0o600, 0o400] {
            write(&file, "secret\n", mode);
            assert!(
                load_token_from(&settings(Some(&file), "x"), None).is_ok(),
                "mode {mode:o}"
            );
        }
    }

    #[test]
    fn a_systemd_credential_is_judged_by_what_others_can_do() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("swipebot-token");
        // 0440: a credential readable through systemd's ACL shows the ACL mask in the group bits.
        write(&file, "secret\n", 0o440);
        assert!(load_token_from(&settings(None, "swipebot-token"), Some(dir.path())).is_ok());
        write(&file, "secret\n", 0o444);
        let (key, message) = config_error(load_token_from(&settings(None, "swipebot-token"), Some(dir.path())));
        assert_eq!(key, "source.tinder.credential_name");
        assert!(message.contains("chmod 600"), "{message}");
    }

    #[test]
    fn a_credential_name_cannot_escape_the_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        let credentials = dir.path().join("credentials");
        std::fs::create_dir(&credentials).unwrap();
        let outside = dir.path().join("elsewhere");
        write(&outside, "not-for-this-daemon\n", 0o600);
        for name in ["../elsewhere".to_string(), outside.display().to_string()] {
            let (key, message) = config_error(load_token_from(&settings(None, &name), Some(&credentials)));
            assert_eq!(key, "source.tinder.credential_name", "{name}");
            assert!(message.contains(&name), "{message}");
        }
    }
}
