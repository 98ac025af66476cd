//! Isolation (issue 12, item 3): clients cannot see each other's jobs or files;
//! guessed ids and path tricks get 404; `--data` never serves a file from
//! outside its folder, symlinks included.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulkmock_server::{ClientKey, KeyAlg, MockServer, Registration};
use common::http;
use serde_json::{Value, json};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// Registers a fresh client with its own key and gets a token for it through
/// the token endpoint; returns `Bearer <token>`.
async fn new_client(server: &MockServer, name: &str) -> String {
    let key = ClientKey::generate(KeyAlg::Es384).unwrap();
    let id = server
        .register_client(Registration {
            client_id: Some(name.into()),
            jwks: Some(serde_json::to_value(key.jwks()).unwrap()),
            ..Registration::default()
        })
        .unwrap();
    let header = json!({"alg": key.alg.name(), "typ": "JWT", "kid": key.kid});
    let claims =
        json!({"iss": id, "sub": id, "aud": server.token_url(), "exp": now() + 120, "jti": format!("jti-{name}")});
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key.encoding_key(), key.alg.algorithm()).unwrap();
    let form = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &format!("{input}.{signature}")),
            ("scope", "system/*.rs"),
        ])
        .finish();
    let r = http()
        .post(server.token_url())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    format!("Bearer {}", body["access_token"].as_str().unwrap())
}

async fn get(url: &str, auth: &str) -> (u16, String) {
    let r = http().get(url).header("Authorization", auth).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Starts a `_type`-less system export for `auth` and waits for its manifest;
/// returns the status URL and the manifest.
async fn export(server: &MockServer, auth: &str) -> (String, Value) {
    let r = http()
        .get(format!("{}/$export?allowPartialManifests=true", server.fhir_base()))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .header("Authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let status = r.headers()["content-location"].to_str().unwrap().to_string();
    for _ in 0..4000 {
        let (code, body) = get(&status, auth).await;
        if code == 200 {
            return (status, serde_json::from_str(&body).unwrap());
        }
        assert_eq!(code, 202, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("job {status} never completed");
}

#[tokio::test]
async fn a_client_cannot_poll_page_cancel_or_download_another_clients_job() {
    let server = MockServer::builder().patients(4).manifest_page_size(2).start().await;
    let alice = new_client(&server, "alice").await;
    let bob = new_client(&server, "bob").await;
    let (status, manifest) = export(&server, &alice).await;
    let page_2 = format!("{status}/page/2");
    let (code, second) = get(&page_2, &alice).await;
    assert_eq!(code, 200, "the owner reads page 2: {second}");
    let second: Value = serde_json::from_str(&second).unwrap();
    let files: Vec<String> = [&manifest, &second]
        .iter()
        .flat_map(|m| m["output"].as_array().unwrap().iter().map(|f| f["url"].as_str().unwrap().to_string()))
        .collect();
    assert!(files.len() > 2, "several files on two pages");

    // Bob gets the same 404 an unknown job gets: nothing tells him the job exists.
    for url in [&status, &page_2].into_iter().chain(&files) {
        let (code, body) = get(url, &bob).await;
        assert_eq!(code, 404, "{url}: {body}");
        assert!(body.contains("OperationOutcome"), "{body}");
        assert!(!body.contains("\"resourceType\":\"Patient\""), "no data leaks in the error: {body}");
    }
    let r = http().delete(&status).header("Authorization", &bob).send().await.unwrap();
    assert_eq!(r.status(), 404, "bob cannot cancel alice's job");

    // Bob's own job lives next to alice's; neither sees the other's.
    let (bob_status, bob_manifest) = export(&server, &bob).await;
    assert_ne!(bob_status, status);
    let bob_file = bob_manifest["output"][0]["url"].as_str().unwrap();
    assert_eq!(get(bob_file, &alice).await.0, 404);
    assert_eq!(get(&bob_status, &alice).await.0, 404);
    assert_eq!(http().delete(&bob_status).header("Authorization", &alice).send().await.unwrap().status(), 404);

    // Alice's job survived bob's attempts, and her files are still hers.
    assert_eq!(get(&files[0], &alice).await.0, 200);
    assert_eq!(http().delete(&status).header("Authorization", &alice).send().await.unwrap().status(), 202);
    assert_eq!(get(&bob_status, &bob).await.0, 200, "deleting alice's job leaves bob's alone");
}

#[tokio::test]
async fn guessed_job_ids_and_file_names_get_404() {
    let server = MockServer::builder().patients(2).start().await;
    let alice = new_client(&server, "alice").await;
    let (status, manifest) = export(&server, &alice).await;
    let file = manifest["output"][0]["url"].as_str().unwrap().to_string();
    let (job_base, name) = file.rsplit_once('/').unwrap();
    let job = status.rsplit('/').next().unwrap();
    let base = server.fhir_base();
    let guesses = [
        format!("{base}/bulkstatus/0"),
        format!("{base}/bulkstatus/{job}0"),
        format!("{base}/bulkstatus/{}", &job[..job.len() - 1]),
        format!("{base}/bulkstatus/{job}/page/0"),
        format!("{base}/bulkstatus/{job}/page/99"),
        format!("{base}/bulkfiles/0/{name}"),
        format!("{job_base}/999.Patient.ndjson"),
        format!("{job_base}/0.ndjson"),
        format!("{job_base}/{name}x"),
        format!("{job_base}/-1.Patient.ndjson"),
        format!("{job_base}/18446744073709551616.Patient.ndjson"),
        format!("{base}/attachments/doc-999999"),
        format!("{base}/attachments/pat-0"),
    ];
    for url in &guesses {
        let (code, body) = get(url, &alice).await;
        assert_eq!(code, 404, "{url}: {body}");
        assert!(body.contains("OperationOutcome"), "{url}: {body}");
    }
}

/// Sends `GET {path}` byte for byte on a fresh connection (reqwest would
/// normalise `..`, `%2e` and backslashes away); returns the status and body.
fn raw_get(origin: &str, path: &str, auth: &str) -> (u16, String) {
    let addr = origin.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

/// A data folder with one patient, and a "secret" NDJSON file outside it that
/// the folder reaches through a symlink (and a directory symlink).
fn data_with_outside_link(tag: &str) -> (PathBuf, PathBuf) {
    let root = std::env::temp_dir().join(format!("bulkmock-isolation-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (data, outside) = (root.join("data"), root.join("outside"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(data.join("Patient.ndjson"), "{\"resourceType\":\"Patient\",\"id\":\"inside\"}\n").unwrap();
    let secret = outside.join("secret.ndjson");
    std::fs::write(&secret, "{\"resourceType\":\"Patient\",\"id\":\"outside-secret\"}\n").unwrap();
    std::os::unix::fs::symlink(&secret, data.join("Leak.ndjson")).unwrap();
    std::os::unix::fs::symlink("../outside/secret.ndjson", data.join("Relative.ndjson")).unwrap();
    std::os::unix::fs::symlink(&outside, data.join("dir.ndjson")).unwrap();
    // A link that stays inside the folder is fine.
    std::fs::write(
        data.join("Observation.real"),
        "{\"resourceType\":\"Observation\",\"id\":\"obs-in\",\"subject\":{\"reference\":\"Patient/inside\"}}\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(data.join("Observation.real"), data.join("Observation.ndjson")).unwrap();
    (root, data)
}

#[tokio::test]
async fn data_folders_never_serve_files_outside_the_folder_even_through_symlinks() {
    let (root, data) = data_with_outside_link("symlink");
    let server = MockServer::builder().data_dir(&data).start().await;
    let auth = format!("Bearer {}", server.issue_token("system/*.rs"));
    let (_, manifest) = export(&server, &auth).await;
    let mut seen = String::new();
    for file in manifest["output"].as_array().unwrap() {
        let (code, body) = get(file["url"].as_str().unwrap(), &auth).await;
        assert_eq!(code, 200);
        seen.push_str(&body);
    }
    assert!(seen.contains("\"inside\""), "the folder's own data is served: {seen}");
    assert!(seen.contains("\"obs-in\""), "a symlink inside the folder is followed: {seen}");
    assert!(!seen.contains("outside-secret"), "a symlink out of the folder is not followed: {seen}");
    let _ = std::fs::remove_dir_all(&root);
    assert_no_traversal(&server, &auth, &data);
}

/// Path traversal and percent-encoding tricks on file and attachment routes:
/// every one a 404 that serves nothing from the disk.
fn assert_no_traversal(server: &MockServer, auth: &str, data: &Path) {
    let origin = server.fhir_base().trim_end_matches("/fhir").to_string();
    let job = server.jobs()[0].id.clone();
    let data = data.display().to_string();
    let tricks = [
        format!("/fhir/bulkfiles/{job}/../../../../etc/passwd"),
        format!("/fhir/bulkfiles/{job}/..%2f..%2f..%2fetc%2fpasswd"),
        format!("/fhir/bulkfiles/{job}/%2e%2e/%2e%2e/etc/passwd"),
        format!("/fhir/bulkfiles/{job}/%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
        format!("/fhir/bulkfiles/{job}/%252e%252e%252fetc%252fpasswd"),
        format!("/fhir/bulkfiles/{job}/..\\..\\etc\\passwd"),
        format!("/fhir/bulkfiles/{job}/..%5c..%5cetc%5cpasswd"),
        format!("/fhir/bulkfiles/{job}/%2fetc%2fpasswd"),
        format!("/fhir/bulkfiles/{job}//etc/passwd"),
        format!("/fhir/bulkfiles/{job}/{data}/Patient.ndjson"),
        format!("/fhir/bulkfiles/{job}/..%2fLeak.ndjson"),
        format!("/fhir/bulkfiles/{job}/Leak.ndjson"),
        format!("/fhir/bulkfiles/{job}/Patient.ndjson"),
        "/fhir/bulkfiles/..%2f..%2fetc/passwd".to_string(),
        "/fhir/bulkfiles/%2e%2e/Patient.ndjson".to_string(),
        "/fhir/attachments/..%2f..%2f..%2fetc%2fpasswd".to_string(),
        "/fhir/attachments/%2e%2e%2fLeak.ndjson".to_string(),
        "/fhir/attachments/%252e%252e%252fetc%252fpasswd".to_string(),
        "/fhir/attachments/..\\..\\etc\\passwd".to_string(),
        "/fhir/../../etc/passwd".to_string(),
        "/fhir/%2e%2e/%2e%2e/etc/passwd".to_string(),
        "/etc/passwd".to_string(),
        format!("{data}/Patient.ndjson"),
        "/p/x/fhir/bulkfiles/..%2f..%2fetc%2fpasswd/0.Patient.ndjson".to_string(),
    ];
    for path in &tricks {
        let (code, text) = raw_get(&origin, path, auth);
        // A profile segment that is not base64url is a 400 before any routing.
        let expected = if path.starts_with("/p/") { 400 } else { 404 };
        assert_eq!(code, expected, "{path}: {text}");
        assert!(!text.contains("root:"), "{path}: {text}");
        assert!(!text.contains("outside-secret") && !text.contains("\"inside\""), "{path}: {text}");
    }
}

#[tokio::test]
async fn the_admin_api_is_off_by_default() {
    let server = MockServer::start().await;
    let origin = server.fhir_base().trim_end_matches("/fhir").to_string();
    assert!(!server.config().admin.enabled && !server.config().admin.any_host && server.config().admin.token.is_none());
    for path in ["/_admin/faults", "/_admin/transcript", "/_admin/reset"] {
        let (code, text) = raw_get(&origin, path, "Bearer x");
        assert_eq!(code, 404, "{path}: {text}");
    }
}
