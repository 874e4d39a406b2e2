//! The HTTP API: routes, how a request's image is read, and errors as JSON with a status.
//!
//! `POST /v1/predict` and `POST /v1/explain` take the image as the raw body (`image/*` or
//! `application/octet-stream`) or as the file of a `multipart/form-data` form.

use super::batcher::QueueFull;
use super::AppState;
use axum::body::{Body, Bytes};
use axum::extract::multipart::MultipartError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Multipart, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use mobilenet::imagenet::top_k;
use mobilenet::Target;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Classes in a prediction unless `?top=K` says otherwise.
const DEFAULT_TOP: usize = 5;

/// Longest a refused upload is read on (see [`drain`]).
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    let limit = state.max_bytes;
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/model", get(model))
        .route("/v1/predict", post(predict))
        .route("/v1/explain", post(explain))
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// An error answer: `{"error": ..., "status": ...}` with that HTTP status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.message, "status": self.status.as_u16()});
        (self.status, Json(body)).into_response()
    }
}

impl From<QueueFull> for ApiError {
    fn from(_: QueueFull) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is busy (its queue is full); try again shortly",
        )
    }
}

/// Counts every routed request by endpoint and status, with its latency.
async fn track(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let resp = next.run(req).await;
    let seconds = started.elapsed().as_secs_f64();
    st.metrics
        .observe(&endpoint, resp.status().as_u16(), seconds);
    resp
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: {} {} (see GET /v1/model, POST /v1/predict, POST /v1/explain, GET /healthz, GET /metrics)",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn metrics(State(st): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        st.metrics.render(),
    )
}

async fn model(State(st): State<Shared>) -> Json<serde_json::Value> {
    Json(serde_json::to_value(&st.model).unwrap_or_default())
}

fn multipart_error(e: MultipartError) -> ApiError {
    ApiError::new(e.status(), format!("reading the form: {}", e.body_text()))
}

/// The uploaded image's bytes and a name for it (the form's file name, else "request body").
async fn image_bytes(req: Request, limit: usize) -> Result<(Bytes, String), ApiError> {
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let media = ctype.split(';').next().unwrap_or("").trim().to_owned();
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over the limit of {limit} bytes (--max-bytes)"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        drain(req.into_body(), limit).await;
        return Err(too_large());
    }
    if media == "multipart/form-data" {
        let mut form = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        while let Some(field) = form.next_field().await.map_err(multipart_error)? {
            if field.file_name().is_none() && !matches!(field.name(), Some("image" | "file")) {
                continue;
            }
            let name = field.file_name().unwrap_or("upload").to_owned();
            let bytes = field.bytes().await.map_err(multipart_error)?;
            return Ok((bytes, name));
        }
        return Err(ApiError::bad_request(
            "the form has no file (send it as a field named image or file)",
        ));
    }
    // `curl --data-binary @photo.jpg` labels the bytes as a urlencoded form: take them as they are.
    let raw = media.is_empty()
        || media.starts_with("image/")
        || media == "application/octet-stream"
        || media == "application/x-www-form-urlencoded";
    if !raw {
        drain(req.into_body(), limit).await;
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type {media:?}: send the image bytes (image/*, application/octet-stream) or a multipart/form-data form"
            ),
        ));
    }
    let bytes = read_limited(req.into_body(), limit)
        .await?
        .ok_or_else(too_large)?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty: send an image",
        ));
    }
    Ok((bytes, "request body".to_owned()))
}

/// Reads at most `limit` bytes of `body`: `None` when it holds more (the rest is drained).
async fn read_limited(mut body: Body, limit: usize) -> Result<Option<Bytes>, ApiError> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > limit {
                drain(body, limit).await;
                return Ok(None);
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(Some(Bytes::from(buf)))
}

/// Reads and discards what is left of a refused body (too large, wrong type; up to 4x the limit, for at
/// most [`DRAIN_TIME`]) so that the client, still sending, gets the 413 instead of a reset
/// connection; a larger or slower upload is cut.
async fn drain(mut body: Body, limit: usize) {
    let cap = limit.saturating_mul(4);
    let discard = async {
        let mut seen = 0usize;
        while seen < cap {
            match body.frame().await {
                Some(Ok(f)) => seen += f.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

fn query(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// `?top=K`, between 1 and the number of classes.
fn top_param(q: &HashMap<String, String>, classes: usize) -> Result<usize, ApiError> {
    let Some(v) = q.get("top") else {
        return Ok(DEFAULT_TOP.min(classes));
    };
    match v.parse::<usize>() {
        Ok(k) if (1..=classes).contains(&k) => Ok(k),
        _ => Err(ApiError::bad_request(format!(
            "top={v}: a whole number from 1 to {classes}"
        ))),
    }
}

async fn predict(
    State(st): State<Shared>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    req: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let started = Instant::now();
    // The body is read before any answer, so that a client still sending gets it.
    let upload = image_bytes(req, st.max_bytes).await;
    let top = top_param(&query(q)?, st.model.classes.len())?;
    let (bytes, name) = upload?;
    let decoding = st.decoding;
    let permit = st.decoders.acquire().await.map_err(ApiError::internal)?;
    let pixels = tokio::task::spawn_blocking(move || decoding.load_bytes(&bytes, &name))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::bad_request)?;
    drop(permit);
    let answer = st.batcher.submit(pixels)?;
    let (probs, batch) = answer
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping"))?
        .map_err(ApiError::internal)?;
    let ranked: Vec<_> = top_k(&probs, top)
        .into_iter()
        .map(|(index, p)| json!({"label": st.model.classes[index], "index": index, "probability": p}))
        .collect();
    Ok(Json(json!({
        "model": st.model.name,
        "top": ranked,
        "milliseconds": started.elapsed().as_secs_f64() * 1e3,
        "batch_size": batch,
    })))
}

/// `POST /v1/explain[?class=NAME|INDEX]`: the Grad-CAM overlay as a PNG, for the predicted class
/// or the one asked for; the class and its probability also in `x-class` / `x-probability`.
async fn explain(
    State(st): State<Shared>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let upload = image_bytes(req, st.max_bytes).await;
    if st.explainer.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "this server runs a quantized model; Grad-CAM needs the float model (serve --checkpoint or --weights)",
        ));
    }
    let q = query(q)?;
    let target = match q.get("class") {
        None => Target::Rank(0),
        Some(c) => Target::Class(
            crate::explain::class_index(c, &st.model.classes)
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
    };
    let (bytes, name) = upload?;
    let state = st.clone();
    let (png, class, p) =
        tokio::task::spawn_blocking(move || explain_png(&state, &bytes, &name, target))
            .await
            .map_err(ApiError::internal)??;
    let headers = [
        (header::CONTENT_TYPE, "image/png".to_owned()),
        (header::HeaderName::from_static("x-class"), class),
        (
            header::HeaderName::from_static("x-probability"),
            format!("{p:.6}"),
        ),
    ];
    Ok((headers, png).into_response())
}

/// Decodes, explains and draws one photo: PNG bytes, the class explained and its probability.
fn explain_png(
    st: &AppState,
    bytes: &[u8],
    name: &str,
    target: Target,
) -> Result<(Vec<u8>, String, f32), ApiError> {
    let photo = data::decode_rgb_bytes(bytes, std::path::Path::new(name), st.decoding.limits)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut ex = st
        .explainer
        .as_ref()
        .ok_or_else(|| ApiError::internal("no explainer"))?
        .lock()
        .map_err(|_| ApiError::internal("the explainer failed earlier"))?;
    let x = ex.decoding.pixels(&photo);
    let e = ex.explain(vec![x], &[target]).map_err(ApiError::internal)?;
    drop(ex);
    let map = &e[0].maps[0];
    // Class names come from the model; header values must be visible ASCII.
    let class: String = st.model.classes[map.class]
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    let caption = format!("{} {:.3}", st.model.classes[map.class], map.probability);
    let img = crate::explain::overlay::overlay(&photo, &map.heatmap, Some(&caption))
        .map_err(ApiError::internal)?;
    let png = crate::explain::overlay::png_bytes(&img).map_err(ApiError::internal)?;
    Ok((png, class, map.probability))
}
