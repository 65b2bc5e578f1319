//! The console's routes (axum on tokio): the pages, the photos, the assets and the one POST that
//! writes labels. Every request passes [`guard`] (Host, password) and leaves with the security
//! headers; the state (journal index, recorded profiles, labels) sits behind one lock and is only
//! touched on tokio's blocking pool, where its file reads belong.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::index::{Filter, JournalIndex};
use super::label_store::LabelStore;
use super::pages::{self, Card};
use super::profiles::{is_recorded, Profiles};
use super::{assets, queue, security};
use crate::labels::Label;
use crate::source::replay::read_bounded;

/// What every request reads: the state behind its lock, and the settings of this run.
#[derive(Debug)]
pub struct Shared {
    /// The journal index, the recorded profiles and the labels.
    pub state: Mutex<ConsoleState>,
    /// This run's CSRF token, given to the page and required back on every POST.
    pub csrf: String,
    /// The console password (off loopback), required on every request.
    pub password: Option<String>,
    /// Profiles on a page of decisions (`console.page_size`).
    pub page_size: usize,
    /// Largest photo served (`pipeline.max_photo_bytes`).
    pub max_photo_bytes: u64,
}

/// The console's view of the state directory and the record folder.
#[derive(Debug)]
pub struct ConsoleState {
    /// `decisions.jsonl`, indexed.
    pub index: JournalIndex,
    /// The recorded profiles.
    pub profiles: Profiles,
    /// `labels.jsonl`.
    pub labels: LabelStore,
}

impl ConsoleState {
    /// Reads what the daemon and the recorder appended since the last request.
    fn refresh(&mut self) -> Result<(), String> {
        self.profiles.refresh();
        self.index.refresh()
    }

    /// The card of the last record of `id`.
    fn card(&self, id: &str) -> Result<Option<Card<'_>>, String> {
        let Some(entry) = self.index.entry(id) else {
            return Ok(None);
        };
        let record = self.index.record(entry)?;
        let photos: Vec<&str> = record.scores.iter().map(pages::photo_name).collect();
        let recorded = self.profiles.get(id);
        let labels = photos.iter().map(|p| self.labels.get(id, p)).collect();
        let served = photos
            .iter()
            .map(|p| recorded.is_some_and(|r| r.can_serve(p)))
            .collect();
        Ok(Some(Card {
            record,
            recorded,
            labels,
            served,
        }))
    }
}

/// An error answer: a status and a line of text saying what to do.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// Runs `f` on the state, on tokio's blocking pool, after reading what is new.
async fn with_state<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&mut ConsoleState, &Shared) -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || {
        let mut state = shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state
            .refresh()
            .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        f(&mut state, &shared)
    })
    .await
    .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, format!("the request stopped: {e}")))?
}

/// The console's routes over `shared`, each request read up to `max_body_bytes`.
pub fn router(shared: Arc<Shared>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/", get(decisions))
        .route("/profile", get(profile))
        .route("/label", get(label_mode))
        .route("/photo", get(photo))
        .route("/assets/{name}", get(asset))
        .route("/api/labels", post(post_labels))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&shared), guard))
        .with_state(shared)
}

/// Refuses a request whose `Host` is a name (a DNS-rebound page) or that lacks the password when
/// there is one; adds the security headers to every answer.
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let mut response = if !security::host_allowed(request.headers()) {
        (
            StatusCode::MISDIRECTED_REQUEST,
            "open the console by its IP address or as localhost",
        )
            .into_response()
    } else if shared
        .password
        .as_deref()
        .is_some_and(|p| !security::authorized(request.headers(), p))
    {
        let mut r = (StatusCode::UNAUTHORIZED, "the console's password is needed").into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"swipebot console\", charset=\"UTF-8\""),
        );
        r
    } else {
        next.run(request).await
    };
    security::add_headers(response.headers_mut());
    response
}

/// The query of the decisions page.
#[derive(Debug, Deserialize)]
struct DecisionsQuery {
    /// Page, from 0.
    #[serde(default)]
    page: usize,
    /// `like`, `pass`, `skip` or `matched`.
    decision: Option<String>,
    /// A model SHA-256 or its prefix.
    model: Option<String>,
    /// Part of an id or a name.
    q: Option<String>,
}

/// `GET /`: the decisions, newest first.
async fn decisions(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<DecisionsQuery>,
) -> Result<Html<String>, Failure> {
    with_state(&shared, move |state, shared| {
        let filter = Filter {
            decision: q.decision,
            model: q.model,
            search: q.q,
        };
        let page = q.page.min(1_000_000);
        let (entries, matching) = state
            .index
            .page(&filter, page, shared.page_size, |id| state.profiles.name(id));
        let ids: Vec<String> = entries.iter().map(|e| e.profile_id.to_string()).collect();
        let mut cards = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(card) = state
                .card(id)
                .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e))?
            {
                cards.push(card);
            }
        }
        let header = pages::header(&pages::Header {
            total: state.index.total(),
            days: state.index.days(),
            unreadable: state.index.unreadable,
        });
        let body = pages::decisions(&pages::Decisions {
            filter: &filter,
            page,
            page_size: shared.page_size,
            matching,
            cards,
            models: state.index.models(),
        });
        Ok(Html(pages::layout(
            "Decisions",
            &shared.csrf,
            &format!("{header}{body}"),
        )))
    })
    .await
}

/// A query naming one profile.
#[derive(Debug, Deserialize)]
struct IdQuery {
    /// The profile id.
    id: String,
}

/// `GET /profile?id=`: one profile, large.
async fn profile(State(shared): State<Arc<Shared>>, Query(q): Query<IdQuery>) -> Result<Html<String>, Failure> {
    with_state(&shared, move |state, shared| {
        let card = state
            .card(&q.id)
            .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e))?
            .ok_or_else(|| {
                Failure(
                    StatusCode::NOT_FOUND,
                    format!("profile `{}` is not in the journal", q.id),
                )
            })?;
        Ok(Html(pages::layout(
            &card.record.profile_id,
            &shared.csrf,
            &pages::card_html(&card, true),
        )))
    })
    .await
}

/// The query of label mode.
#[derive(Debug, Deserialize)]
struct LabelQuery {
    /// Show this profile (going back to it).
    id: Option<String>,
    /// Show the next profile of the queue after this one.
    after: Option<String>,
}

/// `GET /label`: label mode on the next profile of the queue (or on `id`).
async fn label_mode(State(shared): State<Arc<Shared>>, Query(q): Query<LabelQuery>) -> Result<Html<String>, Failure> {
    with_state(&shared, move |state, shared| {
        let id = match q.id {
            Some(id) => Some(id),
            None => queue::next(&state.index, &state.profiles, &state.labels, q.after.as_deref()),
        };
        let card = match &id {
            Some(id) => state
                .card(id)
                .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e))?,
            None => None,
        };
        let body = pages::label(card.as_ref(), q.after.as_deref(), state.profiles.root().is_some());
        Ok(Html(pages::layout("Label mode", &shared.csrf, &body)))
    })
    .await
}

/// A query naming one photo of one profile.
#[derive(Debug, Deserialize)]
struct PhotoQuery {
    /// The profile id.
    id: String,
    /// The photo as the profile names it.
    photo: String,
}

/// `GET /photo?id=&photo=`: a recorded photo's bytes. Only a photo the recorded profile lists, read
/// inside its folder (links out refused), bounded, and only JPEG, PNG or WebP bytes.
async fn photo(State(shared): State<Arc<Shared>>, Query(q): Query<PhotoQuery>) -> Result<Response, Failure> {
    with_state(&shared, move |state, shared| {
        let not_found = |why: String| Failure(StatusCode::NOT_FOUND, why);
        let recorded = state
            .profiles
            .get(&q.id)
            .ok_or_else(|| not_found(format!("profile `{}` was not recorded", q.id)))?;
        if !is_recorded(&q.photo) || !recorded.profile.photos.contains(&q.photo) {
            return Err(not_found(format!(
                "profile `{}` has no recorded photo `{}`",
                q.id, q.photo
            )));
        }
        let bytes = read_bounded(&recorded.folder, &q.photo, shared.max_photo_bytes).map_err(not_found)?;
        let kind = security::image_type(&bytes).ok_or_else(|| {
            not_found(format!(
                "photo `{}` of `{}` is not a JPEG, PNG or WebP image",
                q.photo, q.id
            ))
        })?;
        let mut response = Response::new(Body::from(bytes));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
        Ok(response)
    })
    .await
}

/// `GET /assets/{name}`: the built-in script and stylesheet.
async fn asset(UrlPath(name): UrlPath<String>) -> Response {
    match assets::get(&name) {
        Some((kind, text)) => ([(header::CONTENT_TYPE, kind)], text).into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// The body of `POST /api/labels`: one profile's labels.
#[derive(Debug, Deserialize)]
struct LabelsBody {
    /// The profile id.
    profile_id: String,
    /// Its photos' labels, in the order given.
    labels: Vec<PhotoLabel>,
}

/// One photo's label in a POST.
#[derive(Debug, Deserialize)]
struct PhotoLabel {
    /// The photo as the profile names it.
    photo: String,
    /// `like` or `nope`.
    label: Label,
}

/// `POST /api/labels`: appends and syncs the labels, answering once they are on disk. Only from the
/// console's own page (Origin and CSRF token), only for photos the recorded profile lists.
async fn post_labels(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<LabelsBody>,
) -> Result<StatusCode, Failure> {
    security::same_origin_with_token(&headers, &shared.csrf)
        .map_err(|why| Failure(StatusCode::FORBIDDEN, why.into()))?;
    with_state(&shared, move |state, _| {
        let recorded = state.profiles.get(&body.profile_id).ok_or_else(|| {
            Failure(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("profile `{}` was not recorded", body.profile_id),
            )
        })?;
        if let Some(bad) = body.labels.iter().find(|l| !recorded.profile.photos.contains(&l.photo)) {
            return Err(Failure(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("profile `{}` has no photo `{}`", body.profile_id, bad.photo),
            ));
        }
        let labels: Vec<(String, Label)> = body.labels.into_iter().map(|l| (l.photo, l.label)).collect();
        state
            .labels
            .add(&body.profile_id, &labels)
            .map_err(|e| Failure(StatusCode::INSUFFICIENT_STORAGE, e))?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}
