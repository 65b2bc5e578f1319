//! Downloading one photo over HTTP, defensively: only http(s) URLs; the address rules of
//! [`super::address`] on the URL, every redirect hop, the resolved addresses and the address actually
//! connected to; a timeout (set on the client); a size cap enforced while streaming; and a check that
//! the body is an image, so an HTML error page is never decoded or recorded.

use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION};
use reqwest::redirect::Policy;
use reqwest::Url;

use crate::source::address::{refused_in, AddressPolicy, Refused};
use crate::source::{SetupError, SourceError};

/// Most redirects a photo download follows.
pub const MAX_REDIRECTS: usize = 5;

/// Whether a photo reference is a URL rather than a file name.
pub fn is_url(photo: &str) -> bool {
    photo.starts_with("http://") || photo.starts_with("https://")
}

/// Parses a photo URL; only http(s) is accepted.
pub fn parse_url(url: &str) -> Result<Url, SourceError> {
    let parsed = Url::parse(url).map_err(|e| SourceError::Permanent(format!("bad photo URL {url}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(SourceError::Permanent(format!("photo URL {url} is not http or https")));
    }
    Ok(parsed)
}

/// An HTTP client for photo downloads that carry no credentials. It follows at most
/// [`MAX_REDIRECTS`] redirects, to any origin, each hop checked against `addresses`; unless private
/// addresses are allowed, host names resolve through [`super::address::PublicResolver`], so no name
/// leads to a private address.
pub fn client(
    timeout: Duration,
    user_agent: Option<&str>,
    addresses: AddressPolicy,
) -> Result<reqwest::Client, SetupError> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(redirect_policy(addresses));
    if let Some(agent) = user_agent {
        builder = builder.user_agent(agent);
    }
    if let Some(resolver) = addresses.resolver() {
        builder = builder.dns_resolver(resolver);
    }
    builder.build().map_err(|e| SetupError::HttpClient(e.to_string()))
}

/// Follows at most [`MAX_REDIRECTS`] redirects, each hop checked against `addresses`.
fn redirect_policy(addresses: AddressPolicy) -> Policy {
    Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            let message = format!("more than {MAX_REDIRECTS} redirects");
            return attempt.error(Refused(message));
        }
        match addresses.check_url(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(e) => {
                let message = format!("redirect to {} refused: {e}", attempt.url());
                attempt.error(Refused(message))
            }
        }
    })
}

/// Fetches `url` with `headers` through `client`, refusing private addresses (unless `addresses`
/// allows them), bodies over `max_bytes` and bodies that are not images ([`check_declared_type`],
/// [`is_image`]). Only a body that passed every check is returned.
pub async fn fetch(
    client: &reqwest::Client,
    url: &Url,
    headers: HeaderMap,
    max_bytes: u64,
    addresses: AddressPolicy,
) -> Result<Vec<u8>, SourceError> {
    addresses
        .check_url(url)
        .map_err(|e| SourceError::Permanent(format!("downloading {url}: {e}")))?;
    let mut response = client
        .get(url.clone())
        .headers(headers)
        .send()
        .await
        .map_err(|e| send_error(url, &e))?;
    addresses
        .check_connected(response.url(), response.remote_addr())
        .map_err(|e| SourceError::Permanent(format!("downloading {url}: {e}")))?;
    let status = response.status();
    if status.is_redirection() {
        let to = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        return Err(SourceError::Permanent(format!(
            "downloading {url}: HTTP {status} to {to} not followed (a request carrying the API token stays on its origin)"
        )));
    }
    if !status.is_success() {
        let message = format!("downloading {url}: HTTP {status}");
        return Err(if status.is_server_error() || status.as_u16() == 429 {
            SourceError::Transient(message)
        } else {
            SourceError::Permanent(message)
        });
    }
    let declared = check_declared_type(url, response.headers())?;
    if response.content_length().is_some_and(|n| n > max_bytes) {
        return Err(SourceError::Permanent(format!(
            "{url} is {} bytes, over the limit of {max_bytes}",
            response.content_length().unwrap_or(0)
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| SourceError::Transient(format!("downloading {url}: {}", without_url(&e))))?
    {
        if body.len() as u64 + chunk.len() as u64 > max_bytes {
            return Err(SourceError::Permanent(format!(
                "{url} is over the limit of {max_bytes} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    if let Declared::Unlabelled(label) = declared {
        if !is_image(&body) {
            return Err(SourceError::Permanent(format!(
                "{url} is {label} and its bytes are not a JPEG, PNG or WebP image"
            )));
        }
    }
    Ok(body)
}

/// A failed send as a [`SourceError`]: refused by the address rules or a redirect is permanent,
/// network trouble is worth another try.
fn send_error(url: &Url, e: &reqwest::Error) -> SourceError {
    if let Some(refused) = refused_in(e) {
        SourceError::Permanent(format!("downloading {url}: {refused}"))
    } else if e.is_redirect() {
        SourceError::Permanent(format!("downloading {url}: {}", without_url(e)))
    } else {
        SourceError::Transient(format!("downloading {url}: {}", without_url(e)))
    }
}

/// What a response's `Content-Type` says of its body.
#[derive(Debug, PartialEq, Eq)]
pub enum Declared {
    /// An `image/*` type.
    Image,
    /// No type, or `application/octet-stream` (named here for errors): the bytes must show an image.
    Unlabelled(&'static str),
}

/// Reads the `Content-Type`: `image/*` is an image; none or `application/octet-stream` leaves it to the
/// bytes; anything else is refused, with the URL and the type named, before the body is read.
pub fn check_declared_type(url: &Url, headers: &HeaderMap) -> Result<Declared, SourceError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(Declared::Unlabelled("sent without a content type"));
    };
    let Ok(kind) = value.to_str() else {
        return Err(SourceError::Permanent(format!(
            "{url} has an unreadable content type, not an image"
        )));
    };
    let essence = kind.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence.starts_with("image/") {
        Ok(Declared::Image)
    } else if essence == "application/octet-stream" {
        Ok(Declared::Unlabelled("`application/octet-stream`"))
    } else {
        Err(SourceError::Permanent(format!("{url} is `{kind}`, not an image")))
    }
}

/// Whether `body` starts like a JPEG, PNG or WebP file.
pub fn is_image(body: &[u8]) -> bool {
    body.starts_with(&[0xFF, 0xD8, 0xFF])
        || body.starts_with(b"\x89PNG\r\n\x1a\n")
        || (body.len() >= 12 && body.starts_with(b"RIFF") && &body[8..12] == b"WEBP")
}

/// A reqwest error's text without the URL it repeats (the caller names the URL once).
pub fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "body broken off"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} ({detail})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::test_server::{Reply, TestServer};

    const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\x00\x10JFIF";
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR";
    const WEBP: &[u8] = b"RIFF\x24\x00\x00\x00WEBPVP8 ";
    const HTML: &[u8] = b"<html>Access denied</html>";
    const ALLOW: AddressPolicy = AddressPolicy { allow_private: true };

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    async fn get(client: &reqwest::Client, u: &str, addresses: AddressPolicy) -> Result<Vec<u8>, SourceError> {
        fetch(client, &url(u), HeaderMap::new(), 1 << 20, addresses).await
    }

    #[tokio::test]
    async fn only_image_bodies_come_back_by_their_type_or_their_first_bytes() {
        let server = TestServer::start(|r| match r.path.as_str() {
            "/html" => Reply::ok(Some("text/html; charset=utf-8"), HTML),
            "/json" => Reply::ok(Some("application/json"), b"{}"),
            "/octet-html" => Reply::ok(Some("application/octet-stream"), HTML),
            "/none-html" => Reply::ok(None, HTML),
            "/octet-jpeg" => Reply::ok(Some("Application/Octet-Stream"), JPEG),
            "/none-png" => Reply::ok(None, PNG),
            "/none-webp" => Reply::ok(None, WEBP),
            "/text-jpeg" => Reply::ok(Some("text/plain"), JPEG),
            _ => Reply::ok(Some("image/jpeg"), b"declared an image: the decoder judges it"),
        });
        let client = client(Duration::from_secs(5), None, ALLOW).unwrap();
        for (path, named) in [
            ("/html", "text/html"),
            ("/json", "application/json"),
            ("/octet-html", "application/octet-stream"),
            ("/none-html", "without a content type"),
            ("/text-jpeg", "text/plain"),
        ] {
            let u = server.url(path);
            match get(&client, &u, ALLOW).await {
                Err(SourceError::Permanent(e)) => assert!(e.contains(&u) && e.contains(named), "{path}: {e}"),
                other => panic!("{path} is not an image, got {other:?}"),
            }
        }
        for (path, body) in [
            ("/octet-jpeg", JPEG),
            ("/none-png", PNG),
            ("/none-webp", WEBP),
            ("/image", b"declared an image: the decoder judges it".as_slice()),
        ] {
            assert_eq!(get(&client, &server.url(path), ALLOW).await.unwrap(), body, "{path}");
        }
    }

    #[tokio::test]
    async fn private_addresses_are_refused_before_any_request_unless_allowed() {
        let server = TestServer::start(|_| Reply::ok(Some("image/jpeg"), JPEG));
        let port = server.addr.port();
        let urls = [
            format!("http://127.0.0.1:{port}/a.jpg"),
            format!("http://2130706433:{port}/a.jpg"),
            format!("http://0x7f.0.0.1:{port}/a.jpg"),
            format!("http://[::ffff:127.0.0.1]:{port}/a.jpg"),
            format!("http://localhost:{port}/a.jpg"),
        ];
        let public = client(Duration::from_secs(5), None, AddressPolicy::PUBLIC_ONLY).unwrap();
        for u in &urls {
            match get(&public, u, AddressPolicy::PUBLIC_ONLY).await {
                Err(SourceError::Permanent(e)) => {
                    assert!(
                        e.contains("127.0.0.1") && e.contains(crate::source::address::ALLOW_KEY),
                        "{u}: {e}"
                    )
                }
                other => panic!("{u} must be refused, got {other:?}"),
            }
        }
        assert!(
            server.requests().is_empty(),
            "a refused photo was requested: {:?}",
            server.requests()
        );
        let allowed = client(Duration::from_secs(5), None, ALLOW).unwrap();
        for u in urls.iter().filter(|u| !u.contains("[::ffff:")) {
            assert_eq!(get(&allowed, u, ALLOW).await.unwrap(), JPEG, "{u} is allowed");
        }
        assert_eq!(server.requests().len(), 4);
    }

    #[tokio::test]
    async fn the_address_connected_to_is_checked_even_when_the_name_was_not() {
        // A client that resolves names freely: only the check of the connected address is left.
        let server = TestServer::start(|_| Reply::ok(Some("image/jpeg"), JPEG));
        let plain = reqwest::Client::new();
        let u = format!("http://localhost:{}/a.jpg", server.addr.port());
        match get(&plain, &u, AddressPolicy::PUBLIC_ONLY).await {
            Err(SourceError::Permanent(e)) => assert!(e.contains("answered from 127.0.0.1"), "{e}"),
            other => panic!("the connected address is private, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn every_redirect_hop_is_checked() {
        let target = TestServer::start(|_| Reply::ok(Some("image/jpeg"), JPEG));
        let hop = target.url("/secret.jpg");
        let start = TestServer::start(move |_| Reply::redirect(&hop));
        // Names resolve freely here, so the redirect policy alone stands between the hop and 127.0.0.1.
        let client = reqwest::Client::builder()
            .redirect(redirect_policy(AddressPolicy::PUBLIC_ONLY))
            .build()
            .unwrap();
        let u = format!("http://localhost:{}/a.jpg", start.addr.port());
        let err = fetch(&client, &url(&u), HeaderMap::new(), 1 << 20, ALLOW)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SourceError::Permanent(e) if e.contains("redirect to") && e.contains("127.0.0.1")),
            "{err:?}"
        );
        assert_eq!(start.requests().len(), 1);
        assert!(
            target.requests().is_empty(),
            "the redirect to a private address was followed"
        );
    }
}
