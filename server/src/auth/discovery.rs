//! `GET [base]/.well-known/smart-configuration` (AUTH-001..013, E-08..E-10).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::assertion::algorithm_name;
use crate::app::AppState;

/// The discovery document.
pub fn document(state: &AppState) -> Value {
    let origin = state.origin();
    let algorithms: Vec<&str> =
        state.auth.as_ref().map(|a| a.config.algorithms.iter().map(algorithm_name).collect()).unwrap_or_default();
    json!({
        "issuer": origin,
        "token_endpoint": state.token_url(),
        "registration_endpoint": format!("{origin}/auth/register"),
        "authorization_endpoint": format!("{origin}/auth/authorize"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": algorithms,
        "scopes_supported": ["system/*.rs", "system/*.read", "system/Patient.rs", "system/Group.rs"],
        "response_types_supported": ["token"],
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
        "code_challenge_methods_supported": ["S256"],
    })
}

/// The handler; always `application/json` (AUTH-002).
pub async fn smart_configuration(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(document(&state)).into_response()
}
