//! The admin API (`/_admin/...`): faults and the transcript over HTTP, for
//! clients and CI jobs that drive a standalone server. Off unless enabled;
//! loopback callers only unless told otherwise; optionally a bearer secret.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::json;

use crate::app::AppState;
use crate::faults::{FaultPlan, FaultRule};
use crate::transport::Peer;

/// The admin routes, every one behind [`guard`].
pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/faults", get(list_faults).post(add_faults).delete(clear_faults))
        .route("/faults/{id}", delete(remove_fault))
        .route("/transcript", get(read_transcript).delete(clear_transcript))
        .route("/reset", post(reset))
        .route("/revision", get(read_revision).post(advance_revision))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), crate::limits::admin_body))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(state, guard))
}

/// Lets a request through when [`refused`] has nothing against it.
async fn guard(
    State(state): State<Arc<AppState>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match refused(&state, peer, request.headers()) {
        Some(denied) => denied,
        None => next.run(request).await,
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

/// The refusal, if any: loopback only (unless configured otherwise) and the bearer secret when one is set.
pub(crate) fn refused(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> Option<Response> {
    let admin = &state.config.admin;
    if !admin.any_host && !peer.ip().is_loopback() {
        return Some(error(StatusCode::FORBIDDEN, "the admin API answers loopback callers only"));
    }
    if let Some(secret) = &admin.token {
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if given != Some(format!("Bearer {secret}").as_str()) {
            return Some(error(StatusCode::UNAUTHORIZED, "the admin API needs Authorization: Bearer <admin token>"));
        }
    }
    None
}

async fn list_faults(State(s): State<Arc<AppState>>) -> Response {
    axum::Json(s.faults.list()).into_response()
}

/// Adds one rule (a JSON rule) or several (`{"fault": [...]}`); answers their ids.
async fn add_faults(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    let rules = match serde_json::from_slice::<FaultRule>(&body) {
        Ok(rule) => vec![rule],
        Err(single) => match serde_json::from_slice::<FaultPlan>(&body) {
            Ok(plan) => plan.rules,
            Err(_) => return error(StatusCode::BAD_REQUEST, format!("not a fault rule: {single}")),
        },
    };
    for (i, rule) in rules.iter().enumerate() {
        let proxied = s.proxy.as_ref().map_or(Ok(()), |_| crate::proxy::support::check_rule(rule));
        if let Err(message) = rule.validate().and(proxied) {
            return error(StatusCode::BAD_REQUEST, format!("fault rule {}: {message}", i + 1));
        }
    }
    let ids: Vec<u64> = rules.into_iter().map(|r| s.faults.add(r)).collect();
    (StatusCode::CREATED, axum::Json(json!({"ids": ids}))).into_response()
}

async fn remove_fault(State(s): State<Arc<AppState>>, Path(id): Path<u64>) -> Response {
    if s.faults.remove(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no fault rule {id}"))
    }
}

async fn clear_faults(State(s): State<Arc<AppState>>) -> Response {
    s.faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

/// Query of `GET /_admin/transcript`.
#[derive(serde::Deserialize)]
struct TranscriptQuery {
    format: Option<String>,
}

async fn read_transcript(State(s): State<Arc<AppState>>, Query(q): Query<TranscriptQuery>) -> Response {
    let exchanges = s.transcript.exchanges();
    if q.format.as_deref() == Some("ndjson") {
        let mut body = Vec::new();
        for e in &exchanges {
            serde_json::to_writer(&mut body, e).expect("serialisable");
            body.push(b'\n');
        }
        return ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response();
    }
    axum::Json(exchanges).into_response()
}

async fn clear_transcript(State(s): State<Arc<AppState>>) -> Response {
    s.transcript.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn reset(State(s): State<Arc<AppState>>) -> Response {
    s.faults.clear();
    s.transcript.clear();
    s.created_groups.clear();
    s.revisions.reset();
    StatusCode::NO_CONTENT.into_response()
}

/// The current revision: number, time `T_r` and patient count.
fn revision_json(s: &AppState) -> serde_json::Value {
    let data = s.current_data();
    json!({
        "revision": data.revision(),
        "time": data.revision_time().map(crate::data::clock::instant_string),
        "patients": data.patient_count(),
    })
}

async fn read_revision(State(s): State<Arc<AppState>>) -> Response {
    axum::Json(revision_json(&s)).into_response()
}

/// `POST /_admin/revision`: an empty body advances by one; `{"revision": n}`
/// moves to revision `n` (forward only).
async fn advance_revision(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    let target = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v.get("revision")?.as_u64()) {
            Some(n) => Some(n),
            None => {
                return (StatusCode::BAD_REQUEST, "expected an empty body or {\"revision\": <number>}").into_response();
            }
        }
    };
    let moved = match target {
        Some(n) => s.revisions.set(n),
        None => s.revisions.advance(),
    };
    match moved {
        Ok(_) => axum::Json(revision_json(&s)).into_response(),
        Err(message) => (StatusCode::CONFLICT, message).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AdminConfig, ServerConfig};

    fn state(admin: AdminConfig) -> Arc<AppState> {
        let config = ServerConfig { patients: 1, open: true, admin, ..ServerConfig::default() };
        AppState::new(config, "http://127.0.0.1:1").unwrap()
    }

    fn status(state: &AppState, peer: &str, auth: Option<&str>) -> Option<StatusCode> {
        let mut headers = HeaderMap::new();
        if let Some(a) = auth {
            headers.insert(header::AUTHORIZATION, a.parse().unwrap());
        }
        refused(state, peer.parse().unwrap(), &headers).map(|r| r.status())
    }

    #[test]
    fn only_loopback_callers_unless_any_host() {
        let s = state(AdminConfig { enabled: true, ..AdminConfig::default() });
        assert_eq!(status(&s, "127.0.0.1:5000", None), None);
        assert_eq!(status(&s, "[::1]:5000", None), None);
        assert_eq!(status(&s, "192.168.1.20:5000", None), Some(StatusCode::FORBIDDEN));
        assert_eq!(status(&s, "[2001:db8::1]:5000", None), Some(StatusCode::FORBIDDEN));
        let any = state(AdminConfig { enabled: true, any_host: true, token: None });
        assert_eq!(status(&any, "192.168.1.20:5000", None), None);
    }

    #[test]
    fn a_secret_is_required_from_every_host_when_set() {
        let s = state(AdminConfig { enabled: true, any_host: true, token: Some("s3cret".into()) });
        assert_eq!(status(&s, "127.0.0.1:5000", None), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(status(&s, "10.0.0.1:5000", Some("Bearer wrong")), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(status(&s, "10.0.0.1:5000", Some("s3cret")), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(status(&s, "10.0.0.1:5000", Some("Bearer s3cret")), None);
        let loopback = state(AdminConfig { enabled: true, any_host: false, token: Some("s3cret".into()) });
        assert_eq!(status(&loopback, "10.0.0.1:5000", Some("Bearer s3cret")), Some(StatusCode::FORBIDDEN));
    }
}
