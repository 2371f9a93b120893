//! The one place API errors become HTTP status codes, as Nomad's `wrap` does: plain-text bodies,
//! 400/403/404/405/409/413/500. It does not decide what is an error; handlers do.

use crate::server::Error as ServerError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or asks for something impossible.
    #[error("{0}")]
    BadRequest(String),
    #[error("Permission denied")]
    Forbidden,
    #[error("{0}")]
    NotFound(String),
    #[error("Invalid method")]
    MethodNotAllowed,
    /// A check-and-set condition (`EnforceIndex`) did not hold.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// The cluster could not answer: no leader, no quorum, or a bug.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> Self {
        match e {
            ServerError::UnknownServer(m) => ApiError::NotFound(m),
            e @ ServerError::UnknownNode(_) => ApiError::NotFound(e.to_string()),
            ServerError::Membership(m) => {
                ApiError::BadRequest(format!("membership change refused: {m}"))
            }
            e @ (ServerError::NoLeader { .. }
            | ServerError::NoQuorum { .. }
            | ServerError::Stopped(_)
            | ServerError::NotLeader(_)) => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut resp = (status, self.to_string()).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        resp
    }
}
