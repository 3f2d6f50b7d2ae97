//! The browser client, embedded in the binary so that a deployment is one
//! file and the client always matches the server that serves it.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "web-client/"]
#[exclude = "tests/*"]
#[exclude = "node_modules/*"]
#[exclude = "package*.json"]
struct Assets;

fn asset(path: &str) -> Response {
    serve(path, Assets::get(path))
}

/// An embedded file as a response (its type from its name, `no-cache` so
/// that a new release is picked up at once), or 404.
pub(super) fn serve(path: &str, file: Option<rust_embed::EmbeddedFile>) -> Response {
    match file {
        Some(file) => {
            let mime = mime_guess::from_path(path).first_or_octet_stream();
            (
                [
                    (header::CONTENT_TYPE, mime.as_ref().to_owned()),
                    (header::CACHE_CONTROL, "no-cache".to_owned()),
                ],
                file.data,
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// `/j/{session}`: the join page. The token stays in the fragment, which
/// the browser never sends; the page reads it itself.
pub(crate) async fn join_page(Path(_session): Path<String>) -> Response {
    asset("index.html")
}

/// `/client/{path}`: the page's scripts and styles.
pub(crate) async fn file(Path(path): Path<String>) -> Response {
    asset(&path)
}
