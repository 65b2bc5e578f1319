//! What keeps the console safe to run: where it may listen, the password asked for off loopback,
//! the headers of every answer (a Content-Security-Policy without inline scripts), the checks that
//! make a cross-site POST or a DNS-rebound page useless, and which photo bytes may be served.

use std::net::SocketAddr;
use std::path::Path;

use axum::http::{header, HeaderMap, HeaderValue};

/// The Content-Security-Policy of every answer: scripts, styles and images from the console
/// itself only; no inline script or style, no frames, no form posting elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The header a label POST carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-swipebot-csrf";

/// Largest password file read, in bytes.
const MAX_PASSWORD_BYTES: u64 = 4096;

/// Checks where the console is to listen: loopback is always allowed; any other address needs a
/// password, whose file is read here. Returns the password, if any.
pub fn check_listen(addr: SocketAddr, password_file: Option<&Path>) -> Result<Option<String>, String> {
    let password = match password_file {
        None => None,
        Some(file) => Some(read_password(file)?),
    };
    if !addr.ip().is_loopback() && password.is_none() {
        return Err(format!(
            "console.listen = {addr} is not a loopback address: anyone who can reach it would see every \
             decision and write labels. Set console.password_file to a file holding a password, or \
             listen on 127.0.0.1"
        ));
    }
    Ok(password)
}

/// Reads the console's password: the file's first line, at least 12 characters.
fn read_password(file: &Path) -> Result<String, String> {
    let parent = file.parent().unwrap_or(Path::new("."));
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bytes = crate::source::replay::read_bounded(parent, &name, MAX_PASSWORD_BYTES)
        .map_err(|e| format!("console.password_file: {e}"))?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("console.password_file {}: not UTF-8 text", file.display()))?;
    let password = text.lines().next().unwrap_or("").trim().to_string();
    if password.chars().count() < 12 {
        return Err(format!(
            "console.password_file {}: the password must be at least 12 characters on the first line",
            file.display()
        ));
    }
    Ok(password)
}

/// Whether the request carries HTTP Basic credentials with `password` (any user name); compared in
/// time independent of where the first difference lies.
pub fn authorized(headers: &HeaderMap, password: &str) -> bool {
    use base64::Engine as _;
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|b| *b == b':') else {
        return false;
    };
    equal_in_constant_time(&decoded[colon + 1..], password.as_bytes())
}

/// Compares two byte strings without stopping at the first difference.
pub fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the `Host` header names an IP address or `localhost` (with any port): a page of another
/// site whose name was rebound to 127.0.0.1 sends its own name and is refused.
pub fn host_allowed(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => {
            return rest
                .split(']')
                .next()
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Whether a state-changing request comes from the console's own page: its `Origin` is this very
/// host, and it carries the token the page was given.
pub fn same_origin_with_token(headers: &HeaderMap, token: &str) -> Result<(), &'static str> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match origin {
        Some(o) if o == format!("http://{host}") => {}
        Some(_) => return Err("the request comes from another site (Origin)"),
        None => return Err("the request has no Origin header"),
    }
    let sent = headers.get(CSRF_HEADER).map(HeaderValue::as_bytes).unwrap_or_default();
    if !equal_in_constant_time(sent, token.as_bytes()) {
        return Err("the request lacks the page's CSRF token; reload the page");
    }
    Ok(())
}

/// A fresh random token (128 bits from the kernel's generator, hex) for this run of the console.
pub fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The headers every answer carries.
pub fn add_headers(headers: &mut HeaderMap) {
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::CONTENT_SECURITY_POLICY, CSP);
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
}

/// The image type of photo bytes (JPEG, PNG or WebP, by their first bytes); anything else is not
/// served, whatever its file is called.
pub fn image_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_loopback_listens_without_a_password() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_listen("127.0.0.1:0".parse().unwrap(), None), Ok(None));
        assert_eq!(check_listen("[::1]:0".parse().unwrap(), None), Ok(None));
        let err = check_listen("0.0.0.0:8470".parse().unwrap(), None).unwrap_err();
        assert!(err.contains("console.password_file"), "{err}");
        let file = dir.path().join("pw");
        std::fs::write(&file, "short\n").unwrap();
        assert!(check_listen("0.0.0.0:1".parse().unwrap(), Some(&file))
            .unwrap_err()
            .contains("12"));
        std::fs::write(&file, "a long enough secret\n").unwrap();
        assert_eq!(
            check_listen("0.0.0.0:1".parse().unwrap(), Some(&file)),
            Ok(Some("a long enough secret".into()))
        );
    }

    #[test]
    fn basic_auth_hosts_and_origins_are_checked() {
        // "u:a long enough secret"
        let good = headers(&[("authorization", "Basic dTphIGxvbmcgZW5vdWdoIHNlY3JldA==")]);
        assert!(authorized(&good, "a long enough secret"));
        assert!(!authorized(&good, "another secret!!"));
        assert!(!authorized(&HeaderMap::new(), "a long enough secret"));
        assert!(host_allowed(&headers(&[("host", "127.0.0.1:8470")])));
        assert!(host_allowed(&headers(&[("host", "localhost:8470")])));
        assert!(host_allowed(&headers(&[("host", "[::1]:8470")])));
        assert!(!host_allowed(&headers(&[("host", "evil.example:8470")])));
        let ok = headers(&[
            ("host", "127.0.0.1:1"),
            ("origin", "http://127.0.0.1:1"),
            (CSRF_HEADER, "tok"),
        ]);
        assert_eq!(same_origin_with_token(&ok, "tok"), Ok(()));
        assert!(same_origin_with_token(&ok, "other").is_err());
        let cross = headers(&[
            ("host", "127.0.0.1:1"),
            ("origin", "http://evil.example"),
            (CSRF_HEADER, "tok"),
        ]);
        assert!(same_origin_with_token(&cross, "tok")
            .unwrap_err()
            .contains("another site"));
    }

    #[test]
    fn only_image_bytes_are_served() {
        assert_eq!(image_type(b"\xFF\xD8\xFF\xE0rest"), Some("image/jpeg"));
        assert_eq!(image_type(b"<html><script>"), None);
        assert_eq!(new_token().unwrap().len(), 32);
        assert_ne!(new_token().unwrap(), new_token().unwrap());
    }
}
