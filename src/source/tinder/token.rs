//! The API token: where it is read from, and a type that never shows it.

use reqwest::header::HeaderValue;

use crate::config::TinderSettings;
use crate::source::{SetupError, SourceError};

/// The header that carries the token.
pub const AUTH_HEADER: &str = "X-Auth-Token";

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

/// Where a token comes from: a file (systemd `LoadCredential`), else an environment variable.
pub fn load_token(settings: &TinderSettings) -> Result<Token, SetupError> {
    let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(|d| std::path::Path::new(&d).join(&settings.credential_name))
        .filter(|p| p.is_file());
    let from_file = |path: &std::path::Path, key: &'static str| {
        let unusable = |message: String| SetupError::Config { key, message };
        let text = std::fs::read_to_string(path)
            .map_err(|e| unusable(format!("cannot read the token file {}: {e}", path.display())))?;
        if text.trim().is_empty() {
            return Err(unusable(format!("the token file {} is empty", path.display())));
        }
        Ok(Token::new(&text))
    };
    if let Some(path) = &settings.token_file {
        return from_file(path, "source.tinder.token_file");
    }
    if let Some(path) = credential {
        return from_file(&path, "source.tinder.credential_name");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let t = Token::new("secret-token-123\n");
        assert!(!format!("{t:?}").contains("secret"));
        assert!(t.header().unwrap().is_sensitive());
    }
}
