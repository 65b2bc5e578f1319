//! The console's HTML, rendered on the server. Every text that comes from a profile or the journal
//! goes through [`escape`] (names and bios are written by strangers); the pages hold no inline
//! script or style (the Content-Security-Policy forbids them): behaviour is in `assets/console.js`.

use std::fmt::Write as _;

use chrono::NaiveDate;

use super::index::{Counts, Filter};
use super::profiles::{is_recorded, Recorded};
use crate::compare::report::escape;
use crate::journal::Record;
use crate::labels::Label;
use crate::profile::{Decision, PhotoScore};

/// Days shown in the header's table.
const DAYS_SHOWN: usize = 14;

/// One profile as a card shows it: its journal record, its recorded profile (name, bio, photo
/// files) when there is one, and the user's labels of its photos.
#[derive(Debug)]
pub struct Card<'a> {
    /// The decision as journaled.
    pub record: Record,
    /// The recorded profile, if the record folder has it.
    pub recorded: Option<&'a Recorded>,
    /// The label in force of each photo of `record.scores`, in the same order.
    pub labels: Vec<Option<Label>>,
    /// Whether each photo of `record.scores` is a file the console can serve (see
    /// [`super::profiles::Recorded::can_serve`]), in the same order.
    pub served: Vec<bool>,
}

/// What the header shows: totals and the last days.
#[derive(Debug)]
pub struct Header<'a> {
    /// Every decision.
    pub total: Counts,
    /// Counts per UTC day.
    pub days: &'a std::collections::BTreeMap<NaiveDate, Counts>,
    /// Journal lines that are not records.
    pub unreadable: usize,
}

/// The decisions page.
#[derive(Debug)]
pub struct Decisions<'a> {
    /// The filter and search shown.
    pub filter: &'a Filter,
    /// The page shown (from 0).
    pub page: usize,
    /// Profiles on a page.
    pub page_size: usize,
    /// Profiles matching the filter.
    pub matching: usize,
    /// The cards of this page.
    pub cards: Vec<Card<'a>>,
    /// Every model SHA-256 in the journal.
    pub models: &'a [String],
}

/// Percent-encodes `text` for a URL's query (every byte outside the unreserved set).
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The photo a score is of, as the profile names it.
pub fn photo_name(score: &PhotoScore) -> &str {
    match score {
        PhotoScore::Scored { photo, .. } | PhotoScore::Failed { photo, .. } => photo,
    }
}

/// The first 12 hex digits of a SHA-256.
fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// The whole page around `body`: the console's one stylesheet and script, the CSRF token for the
/// script's POSTs.
pub fn layout(title: &str, csrf: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · swipebot console</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"csrf-token\" content=\"{}\">\
         <link rel=\"stylesheet\" href=\"/assets/console.css\"><script src=\"/assets/console.js\" defer></script>\
         </head><body><nav class=\"top\"><strong>swipebot console</strong> <a href=\"/\">Decisions</a> \
         <a href=\"/label\">Label mode</a></nav>\n{body}\n</body></html>\n",
        escape(title),
        escape(csrf)
    )
}

/// The header: totals, like rate and match rate, overall and for the last days.
pub fn header(h: &Header) -> String {
    let mut out = String::from("<section class=\"totals\"><table><thead><tr><th>day (UTC)</th><th>profiles</th><th>likes</th><th>passes</th><th>skips</th><th>like rate</th><th>matches</th><th>match rate</th></tr></thead><tbody>");
    let row = |out: &mut String, name: &str, c: &Counts, class: &str| {
        let _ = write!(
            out,
            "<tr class=\"{class}\"><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{}</td><td>{:.1}%</td></tr>",
            c.profiles,
            c.likes,
            c.passes,
            c.skips,
            100.0 * c.like_rate(),
            c.matches,
            100.0 * c.match_rate()
        );
    };
    row(&mut out, "all", &h.total, "total");
    for (day, c) in h.days.iter().rev().take(DAYS_SHOWN) {
        row(&mut out, &day.to_string(), c, "day");
    }
    out.push_str("</tbody></table>");
    if h.unreadable > 0 {
        let _ = write!(
            out,
            "<p class=\"warn\">{} journal line(s) are not records; the daemon moves such a file aside at its next start.</p>",
            h.unreadable
        );
    }
    out.push_str("</section>");
    out
}

/// The query string of a page with `filter`.
fn query(filter: &Filter, page: usize) -> String {
    let mut parts = vec![format!("page={page}")];
    for (key, value) in [
        ("decision", &filter.decision),
        ("model", &filter.model),
        ("q", &filter.search),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("{key}={}", url_encode(v)));
        }
    }
    parts.join("&")
}

/// The decisions page: filters, search, cards, paging.
pub fn decisions(d: &Decisions) -> String {
    let mut out =
        String::from("<form class=\"filters\" method=\"get\" action=\"/\"><label>show <select name=\"decision\">");
    for (value, name) in [
        ("", "all"),
        ("like", "liked"),
        ("pass", "passed"),
        ("skip", "skipped"),
        ("matched", "matched"),
    ] {
        let selected = if d.filter.decision.as_deref().unwrap_or("") == value {
            " selected"
        } else {
            ""
        };
        let _ = write!(out, "<option value=\"{value}\"{selected}>{name}</option>");
    }
    out.push_str("</select></label> <label>model <select name=\"model\"><option value=\"\">any</option>");
    for m in d.models {
        let selected = if d.filter.model.as_deref() == Some(m.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<option value=\"{}\"{selected}>{}</option>",
            escape(m),
            escape(short(m))
        );
    }
    let _ = write!(
        out,
        "</select></label> <label>search <input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"id or name\"></label> <button type=\"submit\">Apply</button></form>",
        escape(d.filter.search.as_deref().unwrap_or(""))
    );
    let pages = d.matching.div_ceil(d.page_size).max(1);
    let _ = write!(
        out,
        "<p class=\"count\"><span id=\"matching\">{}</span> profile(s), newest first; page {} of {pages}</p>",
        d.matching,
        d.page + 1
    );
    out.push_str("<section class=\"cards\">");
    for card in &d.cards {
        out.push_str(&card_html(card, false));
    }
    out.push_str("</section><nav class=\"pages\">");
    if d.page > 0 {
        let _ = write!(
            out,
            "<a rel=\"prev\" href=\"/?{}\">newer</a> ",
            query(d.filter, d.page - 1)
        );
    }
    if d.page + 1 < pages {
        let _ = write!(
            out,
            "<a rel=\"next\" href=\"/?{}\">older</a>",
            query(d.filter, d.page + 1)
        );
    }
    out.push_str("</nav>");
    out
}

/// Why a skip was a skip: its kind ([`Record::skip_kind`], as `swipebot stats` counts it), with the
/// error of a broken profile.
fn skip_reason(r: &Record) -> String {
    let kind = r.skip_kind().unwrap_or_default();
    match &r.error {
        Some(e) => format!("{kind}: {e}"),
        None => kind.to_string(),
    }
}

/// The photo that decided: the best-scoring one (for a like, the one at or above the threshold
/// that scored highest; for a pass, the one that came nearest).
fn deciding(r: &Record) -> Option<usize> {
    if r.decision == Decision::Skip {
        return None;
    }
    r.scores
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.score().map(|v| (i, v)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// One profile: name, decision and why, every photo with its score; `large` for the profile and
/// label pages.
pub fn card_html(card: &Card, large: bool) -> String {
    let r = &card.record;
    let id = escape(&r.profile_id);
    let (name, bio) = card
        .recorded
        .map(|p| (p.profile.name.as_str(), p.profile.bio.as_str()))
        .unwrap_or(("", ""));
    let mut out = String::new();
    let _ = write!(
        out,
        "<article class=\"card{}\" data-profile-id=\"{id}\" data-decision=\"{}\" data-threshold=\"{}\">",
        if large { " large" } else { "" },
        r.decision.as_str(),
        r.threshold
    );
    let _ = write!(
        out,
        "<h2><a href=\"/profile?id={}\"><span class=\"name\">{}</span></a> <span class=\"id\">{id}</span> <span class=\"decision {decision}\">{decision}</span></h2>",
        url_encode(&r.profile_id),
        escape(if name.is_empty() { "(no name)" } else { name }),
        decision = r.decision.as_str()
    );
    let mut facts = vec![
        format!(
            "<time datetime=\"{}\">{}</time>",
            r.at.to_rfc3339(),
            r.at.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        format!("threshold <span class=\"threshold\">{:.3}</span>", r.threshold),
        format!("model <code class=\"model\">{}</code>", escape(short(&r.model_sha256))),
    ];
    facts.push(if r.dry_run {
        "dry run, not sent".into()
    } else if r.sent {
        "sent".into()
    } else {
        "not sent".into()
    });
    if let Some(o) = &r.outcome {
        if o.matched {
            facts.push("<strong class=\"matched\">matched</strong>".into());
        }
        if let Some(left) = o.likes_remaining {
            facts.push(format!("{left} likes left"));
        }
    }
    if r.mixed_pass {
        facts.push("liked, sent as a pass on purpose".into());
    }
    if r.decision == Decision::Skip {
        facts.push(format!(
            "<span class=\"skip-reason\">{}</span>",
            escape(&skip_reason(r))
        ));
    }
    let _ = write!(out, "<p class=\"facts\">{}</p>", facts.join(" · "));
    if !bio.is_empty() {
        let _ = write!(out, "<p class=\"bio\">{}</p>", escape(bio));
    }
    out.push_str("<div class=\"photos\">");
    let best = deciding(r);
    for (i, s) in r.scores.iter().enumerate() {
        let photo = photo_name(s);
        let label = card.labels.get(i).copied().flatten();
        let _ = write!(
            out,
            "<figure class=\"photo{}\" data-photo=\"{}\" data-score=\"{}\" data-label=\"{}\">",
            if best == Some(i) { " deciding" } else { "" },
            escape(photo),
            s.score().map(|v| v.to_string()).unwrap_or_default(),
            label.map_or("", Label::as_str)
        );
        match card.recorded {
            Some(_) if card.served.get(i).copied().unwrap_or(false) => {
                let _ = write!(
                    out,
                    "<img src=\"/photo?id={}&amp;photo={}\" alt=\"photo {}\" loading=\"lazy\">",
                    url_encode(&r.profile_id),
                    url_encode(photo),
                    i + 1
                );
            }
            Some(_) if is_recorded(photo) => out.push_str(
                "<div class=\"missing\">no photo file inside the profile's folder to show</div>",
            ),
            _ => out.push_str(
                "<div class=\"missing\">photo not recorded: set <code>source.record_dir</code> to keep the photos the daemon sees</div>",
            ),
        }
        out.push_str("<figcaption>");
        match s {
            PhotoScore::Scored { score, .. } => {
                let _ = write!(
                    out,
                    "<span class=\"score\">{score:.3}</span> <meter min=\"0\" max=\"1\" low=\"{t}\" high=\"{t}\" optimum=\"1\" value=\"{score}\"></meter>",
                    t = r.threshold
                );
            }
            PhotoScore::Failed { error, .. } => {
                let _ = write!(out, "<span class=\"photo-error\">{}</span>", escape(error));
            }
        }
        if best == Some(i) {
            out.push_str(" <span class=\"tag\">deciding</span>");
        }
        if let Some(l) = label {
            let _ = write!(out, " <span class=\"your-label {0}\">you: {0}</span>", l.as_str());
        }
        out.push_str("</figcaption></figure>");
    }
    out.push_str("</div></article>");
    out
}

/// Label mode on one profile (or the end of the queue when `card` is `None`); `photos` says whether
/// there is a record folder at all.
pub fn label(card: Option<&Card>, prev: Option<&str>, photos: bool) -> String {
    if !photos {
        return "<main class=\"label done\"><p id=\"status\">No recorded photos to label: set <code>source.record_dir</code> so the daemon keeps the photos it sees (or give the console <code>--record-dir</code>).</p></main>".into();
    }
    let Some(card) = card else {
        return "<main class=\"label done\"><p id=\"status\">Nothing left to label: every recorded photo of a scored profile has your label. Export them with <code>swipebot dataset --out DIR</code>.</p></main>".into();
    };
    format!(
        "<main class=\"label\" data-profile-id=\"{}\" data-prev=\"{}\"><p class=\"keys\"><kbd>←</kbd> nope · <kbd>→</kbd> like (this photo) · <kbd>↑</kbd> like all · <kbd>↓</kbd> nope all · <kbd>Backspace</kbd> undo · <kbd>Enter</kbd> save and next</p><p id=\"status\" aria-live=\"polite\"></p>{}</main>",
        escape(&card.record.profile_id),
        escape(prev.unwrap_or("")),
        card_html(card, true)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    #[test]
    fn a_hostile_name_and_bio_are_text_and_photos_link_inside_the_console() {
        let recorded = Recorded {
            profile: Profile {
                id: "x\"><script>".into(),
                name: "<img src=x onerror=alert(1)>".into(),
                bio: "<script>alert(1)</script>".into(),
                photos: vec!["1.jpg".into(), "https://cdn.example/2.jpg".into()],
                placeholder: false,
                extra: Default::default(),
            },
            folder: "/nowhere".into(),
        };
        let record = Record {
            scores: vec![
                PhotoScore::Scored {
                    photo: "1.jpg".into(),
                    score: 0.75,
                },
                PhotoScore::Scored {
                    photo: "https://cdn.example/2.jpg".into(),
                    score: 0.25,
                },
            ],
            threshold: 0.5,
            ..Record::new("x\"><script>", Decision::Like, "replay")
        };
        let card = Card {
            record,
            recorded: Some(&recorded),
            labels: vec![Some(Label::Like), None],
            served: vec![true, false],
        };
        let html = card_html(&card, false);
        assert!(!html.contains("<script") && !html.contains("<img src=x"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(html.contains("/photo?id=x%22%3E%3Cscript%3E&amp;photo=1.jpg"), "{html}");
        assert!(html.contains("photo not recorded"), "a URL photo says so: {html}");
        assert!(html.contains("class=\"decision like\""), "{html}");
        assert_eq!(html.matches(" deciding\"").count(), 1, "{html}");
        let page = layout("<t>", "tok", &html);
        assert_eq!(
            page.matches("<script").count(),
            1,
            "only the console's own script: {page}"
        );
    }
}
