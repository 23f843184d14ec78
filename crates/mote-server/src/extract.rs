//! A JSON body extractor whose every rejection is an [`ApiError`] in OpenAI's shape
//! (axum's own `Json` answers in plain text, with 422 for wrong types).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct JsonBody<T>(pub T);

/// The body size limit; `DefaultBodyLimit` enforces it, this repeats it for the message.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(0);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(limit)
            } else {
                ApiError::invalid(format!("Could not read the request body: {rejection}"))
            }
        })?;
        parse(&bytes).map(JsonBody)
    }
}

/// Malformed JSON and wrong field types are both 400, with the offending field in `param`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::invalid(format!(
            "We could not parse the JSON body of your request ({e}). Send a JSON object."
        ))
        .with_code("invalid_json")
    })?;
    if !value.is_object() {
        return Err(
            ApiError::invalid("The request body must be a JSON object.").with_code("invalid_json")
        );
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = format!("Invalid value for `{path}`: {}", e.inner());
        if path == "." {
            ApiError::invalid(e.inner().to_string())
        } else {
            ApiError::invalid_param(&path, message)
        }
    })
}
