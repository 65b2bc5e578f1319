//! Downloading one photo over HTTP, defensively: only http(s), a timeout (set on the client), a size
//! cap enforced while streaming, and a content-type check so an HTML error page is never decoded.

use reqwest::header::{HeaderMap, CONTENT_TYPE};

use crate::source::SourceError;

/// Whether a photo reference is a URL rather than a file name.
pub fn is_url(photo: &str) -> bool {
    photo.starts_with("http://") || photo.starts_with("https://")
}

/// Fetches `url` with `headers`, refusing bodies over `max_bytes` and non-image content types.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    headers: HeaderMap,
    max_bytes: u64,
) -> Result<Vec<u8>, SourceError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| SourceError::Permanent(format!("bad photo URL {url}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(SourceError::Permanent(format!("photo URL {url} is not http or https")));
    }
    let mut response = client
        .get(parsed)
        .headers(headers)
        .send()
        .await
        .map_err(|e| SourceError::Transient(format!("downloading {url}: {}", without_url(&e))))?;
    let status = response.status();
    if !status.is_success() {
        let message = format!("downloading {url}: HTTP {status}");
        return Err(if status.is_server_error() || status.as_u16() == 429 {
            SourceError::Transient(message)
        } else {
            SourceError::Permanent(message)
        });
    }
    if let Some(kind) = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        if !kind.trim_start().to_ascii_lowercase().starts_with("image/")
            && !kind.starts_with("application/octet-stream")
        {
            return Err(SourceError::Permanent(format!("{url} is `{kind}`, not an image")));
        }
    }
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
    Ok(body)
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
