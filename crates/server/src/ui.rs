//! The browser UI: the app's own `ui/` build, embedded in the binary, served at `/` on the
//! same origin as the API (so no CORS is ever needed). Static files need no token; every
//! call they make to `/api/v1` does.

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

#[derive(rust_embed::Embed)]
#[folder = "../../ui/dist"]
#[allow_missing = true]
struct Built;

/// Scripts, styles and media from this server only; stems play from `blob:` URLs too.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub async fn page(method: Method, uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let reading = method == Method::GET || method == Method::HEAD;
    if !reading || path == "api" || path.starts_with("api/") {
        return ApiError::not_found(
            "there is no such route; the API is described at /api/v1/openapi.json",
        )
        .into_response();
    }
    // One page and its hashed assets; nothing else, and never a way out of them.
    let wanted = if path.is_empty() { "index.html" } else { path };
    let outside = wanted
        .split('/')
        .any(|part| part == ".." || part.is_empty())
        || wanted.contains('\\');
    match (!outside).then(|| Built::get(wanted)).flatten() {
        Some(file) => respond(wanted, file),
        None if wanted == "index.html" => not_built(),
        None => ApiError::not_found(format!("there is no page /{path}")).into_response(),
    }
}

fn respond(path: &str, file: rust_embed::EmbeddedFile) -> Response {
    let mime = file.metadata.mimetype().to_owned();
    // Vite names every asset by its hash: it never changes under its name. The page
    // itself is asked for again each time, so a new build is picked up.
    let cache = if path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = Response::new(Body::from(file.data.into_owned()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&mime)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// A server built before `ui/` was: the API works, and the page says how to get the UI.
fn not_built() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "This stemdeck was built without its browser UI (ui/dist was missing). \
         Run `npm --prefix ui install && npm --prefix ui run build`, then build stemdeck again. \
         The API at /api/v1 works without it.\n",
    )
        .into_response()
}
