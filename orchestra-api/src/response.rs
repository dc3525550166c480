//! Responses as Kubernetes writes them: JSON bodies, and every failure a `Status` object.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use orchestra_core::status::StatusError;
use serde::Serialize;
use serde_json::{Value, json};

/// The media type of every JSON answer.
pub const JSON: &str = "application/json";

/// A JSON body with a status code.
pub fn json_bytes(code: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    response
}

/// A value serialised as JSON, with a status code.
pub fn json<T: Serialize>(code: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => json_bytes(code, body),
        Err(error) => failure(&StatusError::internal(format!(
            "cannot encode the response: {error}"
        ))),
    }
}

/// The `Status` object of a failure, as JSON.
pub fn status_value(error: &StatusError) -> Value {
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": error.message,
        "reason": error.reason.as_str(),
        "code": error.code,
    });
    if let Some(details) = &error.details
        && let Ok(details) = serde_json::to_value(details.as_ref())
    {
        status["details"] = details;
    }
    status
}

/// A failure: its `Status` object, with its code.
pub fn failure(error: &StatusError) -> Response {
    let code = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match serde_json::to_vec(&status_value(error)) {
        Ok(body) => json_bytes(code, body),
        Err(_) => code.into_response(),
    }
}

/// A `Status` of success (what a delete or a binding answers).
pub fn success(code: StatusCode, details: Value) -> Response {
    json(
        code,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        }),
    )
}

/// A request's outcome: a response, or a failure to answer with a `Status`.
pub type Outcome = Result<Response, StatusError>;

/// Turns an outcome into the response it stands for.
pub fn respond(outcome: Outcome) -> Response {
    outcome.unwrap_or_else(|error| failure(&error))
}
