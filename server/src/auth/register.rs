//! `POST /auth/register`: scriptable out-of-band client registration (AUTH-020, AUTH-024).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::OAuthError;
use super::registry::Registration;
use crate::app::AppState;

/// `POST /auth/register` with a JSON [`Registration`]; answers `{"client_id": ...}`.
pub async fn register(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let reg: Registration = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return OAuthError::request(format!("the registration body is not valid: {e}")).into_response(),
    };
    match state.register_client(reg) {
        Ok(id) => (StatusCode::CREATED, axum::Json(json!({"client_id": id}))).into_response(),
        Err(message) => OAuthError::request(message).into_response(),
    }
}
