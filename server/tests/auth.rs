//! SMART Backend Services: discovery, registration, the token endpoint
//! (positive paths and a corpus of hostile requests), and enforcement on FHIR routes.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulkmock_server::{ClientKey, KeyAlg, MockServer, Registration};
use common::http;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// A compact JWS of any header and claims, signed with `key` as `alg`.
fn jws(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
    format!("{input}.{signature}")
}

fn header(key: &ClientKey) -> Value {
    json!({"alg": key.alg.name(), "typ": "JWT", "kid": key.kid})
}

static JTI: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn claims(server: &MockServer, client_id: &str) -> Value {
    let n = JTI.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    json!({"iss": client_id, "sub": client_id, "aud": server.token_url(), "exp": now() + 120, "iat": now(), "jti": format!("jti-{n}-{}", now())})
}

fn sign(key: &ClientKey, header: &Value, claims: &Value) -> String {
    jws(header, claims, &key.encoding_key(), key.alg.algorithm())
}

async fn token_form(server: &MockServer, form: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Value) {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let r = http()
        .post(server.token_url())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.headers().clone(), r.json().await.unwrap())
}

async fn exchange(server: &MockServer, assertion: &str, scope: &str) -> (u16, Value) {
    let (status, _, body) = token_form(
        server,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
            ("scope", scope),
        ],
    )
    .await;
    (status, body)
}

/// A token for the demo client through the real assertion exchange.
async fn token(server: &MockServer, scope: &str) -> String {
    let key = server.client_key();
    let (status, body) = exchange(server, &sign(key, &header(key), &claims(server, server.client_id())), scope).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn discovery_announces_the_token_endpoint_and_capabilities() {
    let server = MockServer::builder().patients(3).start().await;
    let r = http().get(format!("{}/.well-known/smart-configuration", server.fhir_base())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["token_endpoint"], server.token_url().as_str());
    assert!(d["token_endpoint"].as_str().unwrap().starts_with("http://"), "AUTH-003: absolute");
    assert_eq!(d["grant_types_supported"], json!(["client_credentials"]));
    assert_eq!(d["token_endpoint_auth_methods_supported"], json!(["private_key_jwt"]));
    assert_eq!(d["token_endpoint_auth_signing_alg_values_supported"], json!(["RS384", "ES384"]));
    for cap in ["client-confidential-asymmetric", "permission-v1", "permission-v2"] {
        assert!(d["capabilities"].as_array().unwrap().iter().any(|c| c == cap), "{cap}");
    }
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    assert!(d["scopes_supported"].as_array().unwrap().len() > 1);
    assert!(d["registration_endpoint"].as_str().unwrap().ends_with("/auth/register"));
    let cs: Value = http().get(format!("{}/metadata", server.fhir_base())).send().await.unwrap().json().await.unwrap();
    let uris = &cs["rest"][0]["security"]["extension"][0];
    assert_eq!(uris["url"], "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris");
    assert_eq!(uris["extension"][0]["valueUri"], server.token_url().as_str());
}

#[tokio::test]
async fn rs384_and_es384_clients_get_tokens_that_export() {
    for alg in [KeyAlg::Rs384, KeyAlg::Es384] {
        let server = MockServer::builder().patients(4).client_alg(alg).start().await;
        let key = server.client_key();
        let (status, body) =
            exchange(&server, &sign(key, &header(key), &claims(&server, server.client_id())), "system/*.rs").await;
        assert_eq!(status, 200, "{alg:?}: {body}");
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["expires_in"], 300);
        assert_eq!(body["scope"], "system/*.rs");
        let bearer = format!("Bearer {}", body["access_token"].as_str().unwrap());
        let r = http()
            .get(format!("{}/Patient/$export?_type=Patient", server.fhir_base()))
            .header("Accept", "application/fhir+json")
            .header("Authorization", &bearer)
            .header("Prefer", "respond-async")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let status_url = r.headers()["content-location"].to_str().unwrap().to_string();
        let m = poll(&status_url, &bearer).await;
        assert_eq!(m["requiresAccessToken"], true);
        let file = m["output"][0]["url"].as_str().unwrap();
        let unauthenticated = http().get(file).send().await.unwrap();
        assert_eq!(unauthenticated.status(), 401, "SRV-182: files need the token");
        let lines = http().get(file).header("Authorization", &bearer).send().await.unwrap().text().await.unwrap();
        assert_eq!(lines.lines().count(), 4);
    }
}

async fn poll(url: &str, bearer: &str) -> Value {
    for _ in 0..4000 {
        let r = http().get(url).header("Authorization", bearer).send().await.unwrap();
        if r.status() == 200 {
            return r.json().await.unwrap();
        }
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("job did not complete");
}

#[tokio::test]
async fn token_responses_are_not_cached() {
    let server = MockServer::builder().patients(1).start().await;
    let key = server.client_key();
    let assertion = sign(key, &header(key), &claims(&server, server.client_id()));
    let (status, headers, _) = token_form(
        &server,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &assertion),
            ("scope", "system/*.rs"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["pragma"], "no-cache");
}

/// A JWKS URL served on loopback whose keys the test can change.
async fn jwks_server(jwks: Arc<Mutex<Value>>) -> String {
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks.lock().unwrap().clone()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_url_clients_authenticate_and_rotate_keys() {
    let server = MockServer::builder().patients(1).start().await;
    let first = ClientKey::generate(KeyAlg::Rs384).unwrap();
    let jwks = Arc::new(Mutex::new(serde_json::to_value(first.jwks()).unwrap()));
    let url = jwks_server(jwks.clone()).await;
    let id = server.register_client(Registration { jwks_url: Some(url.clone()), ..Registration::default() }).unwrap();
    let (status, body) =
        exchange(&server, &sign(&first, &header(&first), &claims(&server, &id)), "system/Patient.rs").await;
    assert_eq!(status, 200, "{body}");

    // Rotation: the client publishes a new key; the cached JWKS lacks its kid, so the server re-fetches once.
    let second = ClientKey::generate(KeyAlg::Es384).unwrap();
    *jwks.lock().unwrap() = serde_json::to_value(second.jwks()).unwrap();
    let (status, body) =
        exchange(&server, &sign(&second, &header(&second), &claims(&server, &id)), "system/Patient.rs").await;
    assert_eq!(status, 200, "{body}");

    // jku must equal the registered URL.
    let mut h = header(&second);
    h["jku"] = json!(url);
    let (status, body) = exchange(&server, &sign(&second, &h, &claims(&server, &id)), "system/Patient.rs").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn registration_over_http_returns_a_client_id_and_rejects_bad_bodies() {
    let server = MockServer::builder().patients(1).start().await;
    let origin = server.fhir_base().trim_end_matches("/fhir").to_string();
    let key = ClientKey::generate(KeyAlg::Es384).unwrap();
    let r = http()
        .post(format!("{origin}/auth/register"))
        .json(&json!({"name": "vendor app", "jwks": key.jwks(), "scope": "system/Patient.rs system/Observation.rs"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_string();
    let (status, body) =
        exchange(&server, &sign(&key, &header(&key), &claims(&server, &id)), "system/Patient.read system/Group.read")
            .await;
    assert_eq!(
        (status, body["scope"].as_str().unwrap()),
        (200, "system/Patient.read"),
        "AUTH-041: pre-authorised scopes only"
    );

    for (body, needle) in [
        (json!({"name": "x"}), "jwks (inline) or jwks_url"),
        (json!({"jwks": {"keys": []}}), "no keys"),
        (json!({"jwks": {"keys": [{"kty": "EC"}]}}), "kid"),
        (json!({"jwks": key.private_jwk.clone()}), "\"keys\" array"),
        (json!({"jwks": {"keys": [key.private_jwk.clone()]}}), "private key"),
        (json!({"jwks_url": "ftp://x"}), "http(s)"),
        (json!({"jwks": key.jwks(), "scope": "system/Nope.rs"}), "Nope"),
        (json!({"jwks": key.jwks(), "colour": "red"}), "unknown field"),
    ] {
        let r = http().post(format!("{origin}/auth/register")).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], "invalid_request");
        assert!(e["error_description"].as_str().unwrap().contains(needle), "{body}: {e}");
    }
}

#[tokio::test]
async fn scopes_v1_v2_and_mixed_are_granted_as_asked_minus_what_cannot_be() {
    let server = MockServer::builder().patients(1).start().await;
    for (asked, granted) in [
        ("system/Patient.read system/Observation.read", "system/Patient.read system/Observation.read"),
        ("system/*.rs", "system/*.rs"),
        ("system/*.read", "system/*.read"),
        ("system/Patient.rs system/Observation.read", "system/Patient.rs system/Observation.read"),
        ("system/Observation.cruds", "system/Observation.rs"),
        ("system/Observation.rs?category=laboratory", "system/Observation.rs?category=laboratory"),
        (
            "system/Patient.rs system/ImagingStudy.rs patient/Observation.rs system/Encounter.cud launch",
            "system/Patient.rs",
        ),
    ] {
        let key = server.client_key();
        let (status, body) =
            exchange(&server, &sign(key, &header(key), &claims(&server, server.client_id())), asked).await;
        assert_eq!(status, 200, "{asked}: {body}");
        assert_eq!(body["scope"], granted, "{asked}");
    }
}

/// One hostile or malformed token request and what it must get.
struct Case {
    name: &'static str,
    status: u16,
    error: &'static str,
    needle: &'static str,
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_and_malformed_token_requests_are_rejected_precisely() {
    let server = MockServer::builder().patients(1).client_alg(KeyAlg::Rs384).start().await;
    let key = server.client_key().clone();
    let id = server.client_id().to_string();
    let other = ClientKey::generate(KeyAlg::Rs384).unwrap();
    let ec = ClientKey::generate(KeyAlg::Es384).unwrap();
    // A client whose JWKS has two keys with the same kid (E-11).
    let twin = ClientKey::generate(KeyAlg::Rs384).unwrap();
    let mut twin_jwks = serde_json::to_value(twin.jwks()).unwrap();
    let mut clone = serde_json::to_value(&other.public_jwk).unwrap();
    clone["kid"] = json!(twin.kid);
    twin_jwks["keys"].as_array_mut().unwrap().push(clone);
    let twin_id = server.register_client(Registration { jwks: Some(twin_jwks), ..Registration::default() }).unwrap();
    // A client registered with a JWKS URL, for the jku mismatch.
    let url_id = server
        .register_client(Registration {
            jwks_url: Some("http://127.0.0.1:9/jwks.json".into()),
            ..Registration::default()
        })
        .unwrap();

    let with = |f: &dyn Fn(&mut Value, &mut Value)| {
        let (mut h, mut c) = (header(&key), claims(&server, &id));
        f(&mut h, &mut c);
        sign(&key, &h, &c)
    };
    let public_pem_secret = EncodingKey::from_secret(serde_json::to_string(&key.public_jwk).unwrap().as_bytes());
    let replayed = with(&|_, _| {});
    let mut cases: Vec<(Case, Vec<(String, String)>)> = Vec::new();
    let form = |assertion: String, scope: &str| {
        vec![
            ("grant_type".to_string(), "client_credentials".to_string()),
            ("client_assertion_type".into(), JWT_BEARER.into()),
            ("client_assertion".into(), assertion),
            ("scope".into(), scope.to_string()),
        ]
    };
    let case = |name, status, error, needle| Case { name, status, error, needle };
    let none =
        format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT", "kid": key.kid})), b64(&claims(&server, &id)));
    cases.push((case("alg none", 401, "invalid_client", "\"none\""), form(none, "system/*.rs")));
    let hs = jws(
        &json!({"alg": "HS256", "typ": "JWT", "kid": key.kid}),
        &claims(&server, &id),
        &public_pem_secret,
        Algorithm::HS256,
    );
    cases.push((case("HS256 with the public key as secret", 401, "invalid_client", "HMAC"), form(hs, "system/*.rs")));
    let rs256 = jws(
        &json!({"alg": "RS256", "typ": "JWT", "kid": key.kid}),
        &claims(&server, &id),
        &key.encoding_key(),
        Algorithm::RS256,
    );
    cases.push((case("RS256 not allowed", 401, "invalid_client", "RS256 is not accepted"), form(rs256, "system/*.rs")));
    let es_header_rsa_kid = jws(
        &json!({"alg": "ES384", "typ": "JWT", "kid": key.kid}),
        &claims(&server, &id),
        &ec.encoding_key(),
        Algorithm::ES384,
    );
    cases.push((
        case("header alg does not fit the key", 401, "invalid_client", "kty EC"),
        form(es_header_rsa_kid, "system/*.rs"),
    ));
    cases.push((
        case("expired exp", 401, "invalid_client", "expired"),
        form(with(&|_, c| c["exp"] = json!(now() - 60)), "system/*.rs"),
    ));
    cases.push((
        case("exp 10 minutes ahead", 401, "invalid_client", "at most 300 s"),
        form(with(&|_, c| c["exp"] = json!(now() + 600)), "system/*.rs"),
    ));
    cases.push((
        case("future nbf", 401, "invalid_client", "nbf is"),
        form(with(&|_, c| c["nbf"] = json!(now() + 120)), "system/*.rs"),
    ));
    cases.push((
        case("future iat", 401, "invalid_client", "iat is"),
        form(with(&|_, c| c["iat"] = json!(now() + 120)), "system/*.rs"),
    ));
    let slash = format!("{}/", server.token_url());
    cases.push((
        case("aud with a trailing slash", 401, "invalid_client", "trailing slash"),
        form(with(&|_, c| c["aud"] = json!(slash)), "system/*.rs"),
    ));
    cases.push((
        case("aud of another server", 401, "invalid_client", "aud must be exactly"),
        form(with(&|_, c| c["aud"] = json!("https://ehr.example.org/token")), "system/*.rs"),
    ));
    cases.push((
        case("aud missing", 401, "invalid_client", "aud must be exactly"),
        form(
            with(&|_, c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            "system/*.rs",
        ),
    ));
    cases.push((
        case("iss differs from sub", 401, "invalid_client", "sub must equal iss"),
        form(with(&|_, c| c["sub"] = json!("someone-else")), "system/*.rs"),
    ));
    cases.push((
        case("unknown client", 401, "invalid_client", "unknown client"),
        form(
            with(&|_, c| {
                c["iss"] = json!("ghost");
                c["sub"] = json!("ghost");
            }),
            "system/*.rs",
        ),
    ));
    cases.push((
        case("unknown kid", 401, "invalid_client", "no key with kid"),
        form(with(&|h, _| h["kid"] = json!("not-a-kid")), "system/*.rs"),
    ));
    let twin_assertion = sign(&twin, &header(&twin), &claims(&server, &twin_id));
    cases.push((
        case("two keys with the same kid", 401, "invalid_client", "exactly one"),
        form(twin_assertion, "system/*.rs"),
    ));
    let forged = sign(&other, &header(&key), &claims(&server, &id));
    cases.push((
        case("valid signature by another key", 401, "invalid_client", "does not verify"),
        form(forged, "system/*.rs"),
    ));
    cases.push((case("replayed jti (first use)", 200, "", ""), form(replayed.clone(), "system/*.rs")));
    cases.push((case("replayed jti", 401, "invalid_client", "already used"), form(replayed, "system/*.rs")));
    let jku = with(&|h, _| h["jku"] = json!("https://attacker.example/jwks.json"));
    cases.push((case("jku on an inline-JWKS client", 401, "invalid_client", "jku"), form(jku, "system/*.rs")));
    let url_client = {
        let (mut h, c) = (header(&key), claims(&server, &url_id));
        h["jku"] = json!("https://attacker.example/jwks.json");
        sign(&key, &h, &c)
    };
    cases.push((
        case("jku mismatch", 401, "invalid_client", "does not match the JWKS URL"),
        form(url_client, "system/*.rs"),
    ));
    cases.push((
        case("missing typ", 401, "invalid_client", "typ"),
        form(
            with(&|h, _| {
                h.as_object_mut().unwrap().remove("typ");
            }),
            "system/*.rs",
        ),
    ));
    cases.push((
        case("wrong typ", 401, "invalid_client", "typ must be"),
        form(with(&|h, _| h["typ"] = json!("JWS")), "system/*.rs"),
    ));
    cases.push((
        case("missing kid", 401, "invalid_client", "kid"),
        form(
            with(&|h, _| {
                h.as_object_mut().unwrap().remove("kid");
            }),
            "system/*.rs",
        ),
    ));
    cases.push((
        case("missing jti", 401, "invalid_client", "jti"),
        form(
            with(&|_, c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
            "system/*.rs",
        ),
    ));
    cases.push((
        case("missing exp", 401, "invalid_client", "exp"),
        form(
            with(&|_, c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            "system/*.rs",
        ),
    ));
    cases.push((
        case("exp as a string", 401, "invalid_client", "exp"),
        form(with(&|_, c| c["exp"] = json!("soon")), "system/*.rs"),
    ));
    cases.push((case("not a JWS", 401, "invalid_client", "compact JWS"), form("abc.def".into(), "system/*.rs")));
    cases.push((
        case("payload not JSON", 401, "invalid_client", "payload is not JSON"),
        form(format!("{}.{}.x", b64(&header(&key)), URL_SAFE_NO_PAD.encode("nope")), "system/*.rs"),
    ));
    let mut wrong_type = form(with(&|_, _| {}), "system/*.rs");
    wrong_type[1].1 = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer".into();
    cases.push((
        case("wrong client_assertion_type", 400, "invalid_request", "client_assertion_type must be"),
        wrong_type,
    ));
    let mut wrong_grant = form(with(&|_, _| {}), "system/*.rs");
    wrong_grant[0].1 = "password".into();
    cases.push((case("wrong grant_type", 400, "unsupported_grant_type", "client_credentials"), wrong_grant));
    let mut no_grant = form(with(&|_, _| {}), "system/*.rs");
    no_grant.remove(0);
    cases.push((case("missing grant_type", 400, "invalid_request", "grant_type is required"), no_grant));
    let mut no_assertion = form(with(&|_, _| {}), "system/*.rs");
    no_assertion.remove(2);
    cases.push((case("missing client_assertion", 400, "invalid_request", "client_assertion"), no_assertion));
    let mut twice = form(with(&|_, _| {}), "system/*.rs");
    twice.push(("scope".into(), "system/Patient.rs".into()));
    cases.push((case("repeated parameter", 400, "invalid_request", "more than once"), twice));
    let mut mismatched_id = form(with(&|_, _| {}), "system/*.rs");
    mismatched_id.push(("client_id".into(), "someone-else".into()));
    cases.push((case("client_id differs from iss", 401, "invalid_client", "does not match"), mismatched_id));
    cases.push((case("empty scope", 400, "invalid_scope", "scope is required"), form(with(&|_, _| {}), "")));
    cases.push((
        case("only unknown types", 400, "invalid_scope", "no resource type \"Spaceship\""),
        form(with(&|_, _| {}), "system/Spaceship.rs"),
    ));
    cases.push((
        case("only writes", 400, "invalid_scope", "read-only"),
        form(with(&|_, _| {}), "system/Patient.cud system/*.write"),
    ));
    cases.push((
        case("only non-system scopes", 400, "invalid_scope", "system/ scopes only"),
        form(with(&|_, _| {}), "patient/*.rs user/Patient.read"),
    ));
    cases.push((
        case("bad permission letters", 400, "invalid_scope", "in that order"),
        form(with(&|_, _| {}), "system/Patient.sr"),
    ));

    let mut failures = Vec::new();
    let total = cases.len();
    for (c, fields) in cases {
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (status, headers, body) = token_form(&server, &pairs).await;
        let description = body["error_description"].as_str().unwrap_or_default();
        let ok = status == c.status
            && (c.status == 200 || (body["error"] == c.error && description.contains(c.needle)))
            && headers["cache-control"] == "no-store";
        if !ok {
            failures.push(format!("{}: got {status} {body}", c.name));
        }
    }
    assert!(total >= 38, "the corpus has {total} cases");
    assert!(failures.is_empty(), "{} of {total} cases failed:\n{}", failures.len(), failures.join("\n"));

    // A JSON body instead of a form.
    let r = http().post(server.token_url()).json(&json!({"grant_type": "client_credentials"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "invalid_request");
    assert!(e["error_description"].as_str().unwrap().contains("must be a form"));
}

#[tokio::test]
async fn fhir_routes_need_a_valid_token() {
    let server = MockServer::builder().patients(2).token_lifetime(Duration::ZERO).start().await;
    let kickoff = format!("{}/$export", server.fhir_base());
    let r = http().get(&kickoff).header("Prefer", "respond-async").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"bulkmock\"");
    let o: Value = r.json().await.unwrap();
    assert_eq!(o["resourceType"], "OperationOutcome");
    assert_eq!(o["issue"][0]["code"], "login");

    for (bearer, needle) in
        [("Bearer nonsense", "not one this server issued"), ("Basic dXNlcjpwdw==", "must be \"Bearer <token>\"")]
    {
        let r = http().get(&kickoff).header("Authorization", bearer).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let outcome: Value = r.json().await.unwrap();
        let text = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(text.contains(needle), "{text}");
    }
    // Tokens really expire: this server issues tokens that live zero seconds.
    let expired = token(&server, "system/*.rs").await;
    let r = http().get(&kickoff).header("Authorization", format!("Bearer {expired}")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.contains("error=\"invalid_token\"") && challenge.contains("expired"), "{challenge}");
}

#[tokio::test]
async fn scopes_decide_what_an_export_holds_and_who_sees_it() {
    let server = MockServer::builder().patients(3).start().await;
    let bearer = |t: String| format!("Bearer {t}");
    let narrow = bearer(token(&server, "system/Patient.rs system/Observation.read").await);
    let kick = |q: &str, auth: &str| {
        http()
            .get(format!("{}/Patient/$export{q}", server.fhir_base()))
            .header("Accept", "application/fhir+json")
            .header("Prefer", "respond-async")
            .header("Authorization", auth.to_string())
            .send()
    };
    // SRV-014: asking for a type outside the scopes is refused up front.
    let r = kick("?_type=Patient,Condition", &narrow).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));
    assert!(r.text().await.unwrap().contains("Condition"));
    // SRV-066: without _type, the export holds exactly what the scopes cover.
    let r = kick("", &narrow).await.unwrap();
    assert_eq!(r.status(), 202);
    let status = r.headers()["content-location"].to_str().unwrap().to_string();
    let m = poll(&status, &narrow).await;
    let types: Vec<&str> = m["output"].as_array().unwrap().iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["Patient", "Observation"]);
    // AUTH-069: a Group export needs Group read.
    let r = http()
        .get(format!("{}/Group/all-patients/$export", server.fhir_base()))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .header("Authorization", &narrow)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A file needs a token that covers its type, from the same client.
    let patient_only = bearer(server.issue_token("system/Patient.rs"));
    let obs_file = m["output"][1]["url"].as_str().unwrap();
    assert_eq!(http().get(obs_file).header("Authorization", &patient_only).send().await.unwrap().status(), 403);
    assert_eq!(http().get(obs_file).header("Authorization", &narrow).send().await.unwrap().status(), 200);

    // Another client sees neither the job nor its files.
    let key = ClientKey::generate(KeyAlg::Es384).unwrap();
    let other_id = server
        .register_client(Registration {
            jwks: Some(serde_json::to_value(key.jwks()).unwrap()),
            ..Registration::default()
        })
        .unwrap();
    let (_, body) = exchange(&server, &sign(&key, &header(&key), &claims(&server, &other_id)), "system/*.rs").await;
    let stranger = bearer(body["access_token"].as_str().unwrap().to_string());
    assert_eq!(http().get(&status).header("Authorization", &stranger).send().await.unwrap().status(), 404);
    assert_eq!(http().get(obs_file).header("Authorization", &stranger).send().await.unwrap().status(), 404);
    assert_eq!(http().delete(&status).header("Authorization", &stranger).send().await.unwrap().status(), 404);
    assert_eq!(http().delete(&status).header("Authorization", &narrow).send().await.unwrap().status(), 202);
}

#[tokio::test]
async fn search_constrained_scopes_filter_the_export() {
    let server = MockServer::builder().patients(20).start().await;
    let auth = format!("Bearer {}", server.issue_token("system/Observation.rs?category=laboratory"));
    let r = http()
        .get(format!("{}/$export?_type=Observation", server.fhir_base()))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let m = poll(r.headers()["content-location"].to_str().unwrap(), &auth).await;
    let body = http()
        .get(m["output"][0]["url"].as_str().unwrap())
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|o| o["category"][0]["coding"][0]["code"] == "laboratory"));
    assert_eq!(Some(lines.len() as u64), m["output"][0]["count"].as_u64());
}

#[tokio::test]
async fn attachments_and_groups_are_guarded_too() {
    let server = MockServer::builder().patients(2).start().await;
    let base = server.fhir_base();
    assert_eq!(http().get(format!("{base}/attachments/doc-0")).send().await.unwrap().status(), 401);
    let docs = format!("Bearer {}", server.issue_token("system/DocumentReference.rs"));
    assert_eq!(
        http().get(format!("{base}/attachments/doc-0")).header("Authorization", &docs).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        http().get(format!("{base}/Group/empty")).header("Authorization", &docs).send().await.unwrap().status(),
        403
    );
    let groups = format!("Bearer {}", server.issue_token("system/Group.rs"));
    assert_eq!(
        http().get(format!("{base}/Group/empty")).header("Authorization", &groups).send().await.unwrap().status(),
        200
    );
    assert_eq!(http().get(format!("{base}/metadata")).send().await.unwrap().status(), 200, "metadata stays public");
}

/// Posts an assertion for `aud` to `url` (the token endpoint a discovery document named).
async fn exchange_at(server: &MockServer, url: &str, aud: &str) -> (u16, Value) {
    let key = server.client_key();
    let mut claims = claims(server, server.client_id());
    claims["aud"] = json!(aud);
    let assertion = sign(key, &header(key), &claims);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion.as_str()),
        ("scope", "system/*.rs"),
    ];
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let r =
        http().post(url).header("Content-Type", "application/x-www-form-urlencoded").body(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn profile_bases_advertise_a_token_endpoint_that_accepts_its_own_url() {
    use bulkmock_server::faults::FaultPlan;
    use bulkmock_server::faults::profile::encode;
    let server = MockServer::builder().patients(2).start().await;
    let origin = server.fhir_base().trim_end_matches("/fhir").to_string();
    let plan = encode(&FaultPlan { rules: vec![] });
    let settings = URL_SAFE_NO_PAD.encode(json!({"page": 50}).to_string());
    for prefix in [format!("p/{plan}"), settings] {
        let base = format!("{origin}/{prefix}/fhir");
        // AUTH-001, AUTH-004: whatever the profile's discovery names must work.
        let doc: Value =
            http().get(format!("{base}/.well-known/smart-configuration")).send().await.unwrap().json().await.unwrap();
        let token_url = doc["token_endpoint"].as_str().unwrap().to_string();
        assert_eq!(token_url, format!("{origin}/{prefix}/auth/token"));
        let (status, body) = exchange_at(&server, &token_url, &token_url).await;
        assert_eq!(status, 200, "{prefix}: {body}");
        let token = body["access_token"].as_str().unwrap();
        // The token works on that profile's FHIR routes.
        let r = http()
            .get(format!("{base}/Patient/$export?_type=Patient"))
            .header("Accept", "application/fhir+json")
            .header("Prefer", "respond-async")
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{prefix}");
        // `aud` is still exact: the plain token URL is not this endpoint's URL, and
        // the error quotes what the client sent, unchanged.
        let (status, body) = exchange_at(&server, &token_url, &server.token_url()).await;
        assert_eq!(status, 401, "{prefix}");
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.contains(&format!("token URL {token_url}, found [\"{}\"]", server.token_url())),
            "{description}"
        );
    }
}
