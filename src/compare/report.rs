//! The comparison as people and programs read it: a text table, JSON (`--json`), and an HTML page
//! of the flipped profiles with their photos (`--html FILE`). Profile names come from strangers:
//! the page escapes every one of them and runs no script.

use std::fmt::Write as _;
use std::path::Path;

use super::{Comparison, Run};
use crate::profile::PhotoScore;

/// The first 12 hex digits of a SHA-256, as the journal's readers show it.
fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// `model @ threshold`, how a run is named.
fn run_name(c: &Comparison, run: &Run) -> String {
    let model = &c.models[run.model];
    let file = model
        .path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{file} ({}) @ {:.3}", short(&model.sha256), run.threshold)
}

/// The text report.
pub fn text(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "profiles {} ({} photos, {} unreadable folders) in {}",
        c.profile_ids.len(),
        c.photos,
        c.unreadable.len(),
        c.profiles_dir.display()
    );
    for m in &c.models {
        let _ = writeln!(
            out,
            "model {} ({}): {} photos scored, {} from the cache, {} without a score",
            m.path.display(),
            short(&m.sha256),
            m.scored,
            m.cached,
            m.failed
        );
    }
    if c.labelled_photos > 0 {
        let _ = writeln!(
            out,
            "labels: {} photos of {} profiles",
            c.labelled_photos, c.labelled_profiles
        );
    }
    let first = c.runs.first().map(|r| run_name(c, r)).unwrap_or_default();
    for run in &c.runs {
        let _ = write!(
            out,
            "{}: like {} pass {} skip {}, like rate {:.1}%",
            run_name(c, run),
            run.likes,
            run.passes,
            run.skips,
            100.0 * run.like_rate
        );
        if !std::ptr::eq(run, &c.runs[0]) {
            let _ = write!(out, ", {} flip(s) against {first}", run.flips.len());
        }
        out.push('\n');
        if let Some(a) = &run.agreement {
            for (what, m) in [("profiles", &a.profiles), ("photos", &a.photos)] {
                let _ = writeln!(
                    out,
                    "  {what:<8} n {} accuracy {:.3} precision {:.3} recall {:.3} F1 {:.3} ROC AUC {}",
                    m.count,
                    m.accuracy,
                    m.precision,
                    m.recall,
                    m.f1,
                    m.roc_auc.map_or("-".to_string(), |v| format!("{v:.3}"))
                );
            }
            let _ = writeln!(
                out,
                "  threshold with the best profile F1 on these labels: {:.3}",
                a.best_profile_threshold
            );
        }
        for flip in &run.flips {
            let _ = writeln!(
                out,
                "  {} {:?}: {} -> {}, best photo {} ({} -> {})",
                flip.profile_id,
                flip.name,
                flip.was.as_str(),
                flip.now.as_str(),
                flip.best_photo.as_ref().map_or("-", |(p, _)| p.as_str()),
                flip.best_score_was.map_or("-".to_string(), |s| format!("{s:.3}")),
                flip.best_photo
                    .as_ref()
                    .map_or("-".to_string(), |(_, s)| format!("{s:.3}")),
            );
        }
    }
    out
}

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

/// A `file://` URL of a local path, each byte outside the unreserved set percent-encoded.
fn file_url(path: &Path) -> String {
    let mut out = String::from("file://");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The HTML page: the runs' figures, then each flipped profile with its photos and every model's
/// score of each photo. No script; a Content-Security-Policy forbids any, and loads only local
/// images.
pub fn html(c: &Comparison) -> String {
    let mut out = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src file:; style-src 'unsafe-inline'\">\n\
         <title>swipebot compare</title>\n<style>body{font-family:sans-serif;margin:1em}\
         img{height:160px;margin:2px}figure{display:inline-block;margin:4px}.like{color:#080}.pass{color:#a00}</style>\n\
         </head><body>\n<h1>swipebot compare</h1>\n<pre>",
    );
    out.push_str(&escape(&text(c)));
    out.push_str("</pre>\n");
    for run in c.runs.iter().filter(|r| !r.flips.is_empty()) {
        let _ = writeln!(
            out,
            "<h2>{}: {} flip(s)</h2>",
            escape(&run_name(c, run)),
            run.flips.len()
        );
        for flip in &run.flips {
            let profile = &c.recorded[flip.index];
            let _ = writeln!(
                out,
                "<section class=\"flip\" data-profile=\"{}\"><h3>{} <small>{}</small>: <span class=\"{}\">{}</span> &rarr; <span class=\"{}\">{}</span></h3>",
                escape(&flip.profile_id),
                escape(&flip.name),
                escape(&flip.profile_id),
                flip.was.as_str(),
                flip.was.as_str(),
                flip.now.as_str(),
                flip.now.as_str()
            );
            for (i, photo) in profile.photos.iter().enumerate() {
                let scores: Vec<String> = c
                    .models
                    .iter()
                    .map(|m| match &m.results[flip.index][i] {
                        PhotoScore::Scored { score, .. } => format!("{score:.3}"),
                        PhotoScore::Failed { .. } => "-".to_string(),
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
                    escape(&file_url(&profile.folder.join(&photo.name))),
                    escape(&photo.name),
                    escape(&scores.join(" / "))
                );
            }
            out.push_str("</section>\n");
        }
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(file_url(Path::new("/a b/<c>.jpg")), "file:///a%20b/%3Cc%3E.jpg");
    }
}
