//! The embedded web UI: the files under the repository's `ui/` folder, compiled into the binary
//! and served at `/ui/`.
//!
//! Lookups go only to the embedded file table, never to the filesystem, so no request path can
//! reach a file outside `ui/`. The UI itself is a read-only client of the `/v1/` API; this module
//! knows nothing of what it shows.

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

#[derive(rust_embed::Embed)]
#[folder = "../../ui/"]
struct Assets;

/// Routes for `/`, `/ui` and `/ui/*`.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui/", get(|| async { asset("index.html") }))
        .route("/ui/{*path}", get(|Path(path): Path<String>| async move { asset(&path) }))
}

fn asset(path: &str) -> Response {
    let Some(file) = Assets::get(path) else {
        return (StatusCode::NOT_FOUND, format!("no UI file {path:?}")).into_response();
    };
    let mime = file.metadata.mimetype().to_string();
    let mut response = Response::new(Body::from(file.data.into_owned()));
    if let Ok(value) = HeaderValue::from_str(&mime) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    // The UI is part of the binary: a new binary may ship new files, so never cache for long.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str) -> (StatusCode, String, String) {
        let app: Router = routes();
        let res = app.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = res.status();
        let ctype = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        (status, ctype, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn serves_the_embedded_files() {
        let (status, ctype, body) = get("/ui/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ctype.starts_with("text/html"), "{ctype}");
        assert!(body.contains("<script src=\"app.js\">"), "{body}");
        let (status, ctype, body) = get("/ui/app.js").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ctype.contains("javascript"), "{ctype}");
        assert!(body.contains("/v1/jobs"));
        let (status, ctype, _) = get("/ui/style.css").await;
        assert_eq!((status, ctype.as_str()), (StatusCode::OK, "text/css"));
    }

    #[tokio::test]
    async fn redirects_to_the_ui_and_refuses_paths_outside_it() {
        let (status, _, _) = get("/").await;
        assert_eq!(status, StatusCode::TEMPORARY_REDIRECT);
        for path in
            ["/ui/../Cargo.toml", "/ui/%2e%2e/Cargo.toml", "/ui/..%2fREADME.md", "/ui/nope.js"]
        {
            let (status, _, body) = get(path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        }
    }
}
