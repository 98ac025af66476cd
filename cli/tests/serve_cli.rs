//! `bulkmock serve` as a user runs it: flags, environment variables, errors.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running `bulkmock serve`; killed on drop.
struct Serve {
    child: Child,
    fhir_base: String,
    banner: Vec<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on a free port and reads the banner it prints once listening.
fn serve(args: &[&str], env: &[(&str, &str)]) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .arg("serve")
        .args(["--port", "0"])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut banner = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let fhir_base = loop {
        let line = lines.next().expect("the banner names the FHIR base").unwrap();
        banner.push(line.clone());
        if let Some(base) = line.trim().strip_prefix("FHIR base:") {
            break base.trim().to_string();
        }
    };
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.starts_with("Press Ctrl-C");
        banner.push(line);
        if done {
            break;
        }
    }
    Serve { child, fhir_base, banner }
}

#[tokio::test]
async fn serve_prints_its_base_and_runs_an_export() {
    let s = serve(&["--open", "--patients", "6", "--job-duration", "0s", "--seed", "7"], &[]);
    assert!(s.fhir_base.starts_with("http://127.0.0.1:") && s.fhir_base.ends_with("/fhir"));
    assert!(!s.fhir_base.contains(":0/"), "the chosen port is printed, not 0");
    assert!(s.banner.iter().any(|l| l.contains("6 patients, seed 7")), "{:?}", s.banner);
    let manifest = export_manifest(&s.fhir_base, "Patient").await;
    let url = manifest["output"][0]["url"].as_str().unwrap();
    let body = reqwest::Client::new().get(url).send().await.unwrap().text().await.unwrap();
    assert_eq!(body.lines().count(), 6);
}

/// The manifest of a whole-population export of `types` from the open server at `base`.
async fn export_manifest(base: &str, types: &str) -> serde_json::Value {
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{base}/$export?_type={types}"))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let status = r.headers()["content-location"].to_str().unwrap().to_string();
    loop {
        let r = client.get(&status).send().await.unwrap();
        if r.status() == 200 {
            break r.json().await.unwrap();
        }
        assert_eq!(r.status(), 202);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn flags_can_come_from_the_environment() {
    let s = serve(
        &[],
        &[("BULKMOCK_PATIENTS", "9"), ("BULKMOCK_BASE_URL", "https://mock.example.org"), ("BULKMOCK_OPEN", "true")],
    );
    assert_eq!(s.fhir_base, "https://mock.example.org/fhir", "--base-url sets the links");
    assert!(s.banner.iter().any(|l| l.contains("9 patients")), "{:?}", s.banner);
}

#[tokio::test]
async fn lenient_headers_accept_kickoffs_that_strict_serving_refuses() {
    let kickoff = |base: String| async move {
        reqwest::Client::new().get(format!("{base}/$export?_type=Patient")).send().await.unwrap().status()
    };
    let strict = serve(&["--open"], &[]);
    assert_eq!(kickoff(strict.fhir_base.clone()).await, 400, "no Accept, no Prefer (SRV-041, SRV-042)");
    let lenient = serve(&[], &[("BULKMOCK_LENIENT_HEADERS", "true"), ("BULKMOCK_OPEN", "true")]);
    assert!(lenient.banner.iter().any(|l| l.contains("lenient headers")), "{:?}", lenient.banner);
    assert_eq!(kickoff(lenient.fhir_base.clone()).await, 202);
}

#[tokio::test]
async fn quirks_flag_makes_serve_speak_the_dialect() {
    let s = serve(&["--open", "--quirks", "get-kickoff-only,technical-group-ids"], &[]);
    assert!(s.banner.iter().any(|l| l.contains("quirks:     technical-group-ids,get-kickoff-only")), "{:?}", s.banner);
    let technical = bulkmock_server::quirks::technical_group_id("all-patients");
    assert!(s.banner.iter().any(|l| l.contains("groups:") && l.contains(&technical)), "{:?}", s.banner);
    let r = reqwest::Client::new()
        .post(format!("{}/Patient/$export", s.fhir_base))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .header("Content-Type", "application/fhir+json")
        .body(r#"{"resourceType":"Parameters"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    let out = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .args(["serve", "--port", "0", "--quirks", "slow"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--quirks") && err.contains("\"slow\"") && err.contains("long-queue"), "{err}");
}

/// Observations in a whole-population export of `base` (the manifest's counts).
async fn observations(base: &str) -> u64 {
    let manifest = export_manifest(base, "Observation").await;
    manifest["output"].as_array().unwrap().iter().map(|f| f["count"].as_u64().unwrap()).sum()
}

#[tokio::test]
async fn density_flag_sets_resources_per_patient() {
    use bulkmock_server::data::DataSource;
    use bulkmock_server::data::synthetic::{Density, Synthetic};
    let args = ["--open", "--patients", "5", "--job-duration", "0s"];
    let light = serve(&args, &[]);
    assert!(light.banner.iter().any(|l| l.contains("5 patients, seed 42, light density")), "{:?}", light.banner);
    assert_eq!(observations(&light.fhir_base).await, 5 * 8, "light: eight Observations per patient");
    let realistic = serve(&args, &[("BULKMOCK_DENSITY", "realistic")]);
    assert!(realistic.banner.iter().any(|l| l.contains("realistic density")), "{:?}", realistic.banner);
    let data = Synthetic::new(42, 5, "http://h/fhir").with_density(Density::Realistic);
    let obs = data.type_index("Observation").unwrap();
    let want: u64 = (0..5).map(|p| data.patient_resources(obs, p).count() as u64).sum();
    assert!(want > 5 * 8, "{want}");
    assert_eq!(observations(&realistic.fhir_base).await, want, "realistic: the population's own counts");

    let out = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .args(["serve", "--port", "0", "--density", "dense"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--density") && err.contains("\"dense\"") && err.contains("light, realistic"), "{err}");
}

#[test]
fn bad_flags_fail_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .args(["serve", "--port", "0", "--job-duration", "2weeks"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--job-duration") && err.contains("unknown unit"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .args(["serve", "--port", "0", "--data", "/nonexistent/bulkmock-data"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read data folder /nonexistent/bulkmock-data"), "{err}");
}

fn banner_value<'a>(banner: &'a [String], label: &str) -> &'a str {
    banner
        .iter()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label} in {banner:?}"))
}

#[tokio::test]
async fn serve_with_authorization_prints_a_demo_client_whose_key_works() {
    let state = std::env::temp_dir().join(format!("bulkmock-cli-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let state_arg = state.to_str().unwrap();
    let s = serve(&["--state-dir", state_arg, "--client-alg", "ES384"], &[]);
    let token_url = banner_value(&s.banner, "token URL:").to_string();
    assert_eq!(banner_value(&s.banner, "client id:"), "bulkmock-demo");
    let key_line = banner_value(&s.banner, "client key:").to_string();
    let key_path = key_line.split(' ').next().unwrap().to_string();
    let pem = std::fs::read(&key_path).unwrap();
    let kid = key_line.split("kid ").nth(1).unwrap().trim_end_matches(')').to_string();

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some(kid.clone());
    let claims = serde_json::json!({"iss": "bulkmock-demo", "sub": "bulkmock-demo", "aud": token_url, "exp": now + 60, "jti": "cli-1"});
    let assertion =
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap()).unwrap();
    let r = reqwest::Client::new()
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", &assertion),
            ("scope", "system/*.rs"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let r = reqwest::Client::new()
        .get(format!("{}/$export", s.fhir_base))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    drop(s);

    // The key is kept in the state folder: a second start reuses it.
    let again = serve(&["--state-dir", state_arg], &[]);
    assert!(banner_value(&again.banner, "client key:").contains(&kid), "{:?}", again.banner);
}

#[test]
fn keys_writes_a_key_pair() {
    let out = std::env::temp_dir().join(format!("bulkmock-cli-keys-{}", std::process::id()));
    let result = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .args(["keys", "--alg", "RS384", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(result.status.success());
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(stdout.starts_with("RS384 key, kid "), "{stdout}");
    let jwks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("jwks.json")).unwrap()).unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    assert!(jwks["keys"][0].get("d").is_none(), "the JWKS is public");
    let private: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("private.jwk.json")).unwrap()).unwrap();
    assert!(private["d"].is_string() && private["p"].is_string());
    assert!(std::fs::read_to_string(out.join("private.pem")).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn a_clients_file_registers_clients_and_bad_files_say_why() {
    let dir = std::env::temp_dir().join(format!("bulkmock-cli-clients-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("clients.json");
    std::fs::write(
        &file,
        r#"[{"client_id": "vendor", "jwks_url": "https://vendor.example/jwks.json"}, {"client_id": "x"}]"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .args(["serve", "--port", "0", "--state-dir", dir.to_str().unwrap(), "--clients", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("client 1") && err.contains("jwks"), "{err}");
}

#[tokio::test]
async fn a_fault_plan_file_and_a_live_transcript() {
    let dir = std::env::temp_dir().join(format!("bulkmock-cli-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plan = dir.join("plan.toml");
    std::fs::write(&plan, "[[fault]]\non = \"metadata\"\ntimes = 1\nfault = { kind = \"respond\", status = 503 }\n")
        .unwrap();
    let transcript = dir.join("transcript.ndjson");
    let s = serve(
        &["--open", "--admin", "--faults", plan.to_str().unwrap(), "--transcript", transcript.to_str().unwrap()],
        &[],
    );
    assert!(s.banner.iter().any(|l| l.contains("1 rule(s)")), "{:?}", s.banner);
    let client = reqwest::Client::new();
    let metadata = format!("{}/metadata", s.fhir_base);
    assert_eq!(client.get(&metadata).send().await.unwrap().status(), 503);
    assert_eq!(client.get(&metadata).send().await.unwrap().status(), 200);
    let origin = s.fhir_base.trim_end_matches("/fhir");
    let rules: serde_json::Value =
        client.get(format!("{origin}/_admin/faults")).send().await.unwrap().json().await.unwrap();
    assert_eq!(rules[0]["fired"], 1);
    let lines = std::fs::read_to_string(&transcript).unwrap();
    let statuses: Vec<u64> = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![503, 200]);

    std::fs::write(&plan, "[[fault]]\non = \"file\"\nfault = { kind = \"drip\", bytes_per_s = 0 }\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .args(["serve", "--open", "--port", "0", "--faults", plan.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plan.toml:1: bytes_per_s must be positive"), "{err}");
}

#[test]
fn export_runs_the_reference_client_against_serve() {
    let state = std::env::temp_dir().join(format!("bulkmock-cli-export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let s = serve(&["--state-dir", state.to_str().unwrap(), "--patients", "4", "--job-duration", "0s"], &[]);
    let key = banner_value(&s.banner, "client key:").split(' ').next().unwrap().to_string();
    let out = state.join("out");
    let export = |extra: &[&str], out: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_bulkmock"))
            .args(["export", "--fhir-url", &s.fhir_base, "--client-id", "bulkmock-demo", "--key", &key])
            .args(["--out", out.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let result = export(&["--type", "Patient", "--type", "Observation", "--json", "--no-delete"], &out);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let events: Vec<serde_json::Value> =
        String::from_utf8_lossy(&result.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events[0]["event"], "token");
    assert!(events.iter().any(|e| e["event"] == "kicked_off"));
    assert!(events.iter().any(|e| e["event"] == "file_done"));
    assert!(!events.iter().any(|e| e["event"] == "file_bytes"), "byte counts stay out of the log");
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["resources"]["Patient"], 4);
    assert_eq!(summary["resources"]["Observation"], 32);
    assert_eq!(std::fs::read_to_string(out.join("Patient.ndjson")).unwrap().lines().count(), 4);

    // The same job again by its status URL, plain lines on stderr (not a terminal).
    let status_url = summary["status_url"].as_str().unwrap();
    let again = state.join("again");
    let resumed = export(&["--status-url", status_url], &again);
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let log = String::from_utf8_lossy(&resumed.stderr);
    assert!(log.contains("files") && log.contains("job deleted on the server"), "{log}");
    assert!(!log.contains("export accepted"), "no new kick-off");
    assert_eq!(
        std::fs::read(again.join("Patient.ndjson")).unwrap(),
        std::fs::read(out.join("Patient.ndjson")).unwrap()
    );

    let occupied = export(&["--type", "Patient"], &out);
    assert_eq!(occupied.status.code(), Some(8), "an output folder holding an export is refused");
    assert!(String::from_utf8_lossy(&occupied.stderr).contains("already holds an export"));

    let refused = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .args(["export", "--fhir-url", &s.fhir_base, "--out", state.join("refused").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(3), "without credentials the server says 401: an authorization failure");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
}

#[test]
fn export_exit_codes_and_json_errors_name_the_failure() {
    let state = std::env::temp_dir().join(format!("bulkmock-cli-exit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).unwrap();
    let plan = state.join("plan.toml");
    std::fs::write(
        &plan,
        "[[fault]]\non = \"file\"\nresource_type = \"Patient\"\nfault = { kind = \"content\", mutation = \"malformed_line\", line = 2 }\n",
    )
    .unwrap();
    let s = serve(&["--open", "--patients", "4", "--job-duration", "0s", "--faults", plan.to_str().unwrap()], &[]);
    let result = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .args(["export", "--fhir-url", &s.fhir_base, "--type", "Patient", "--json"])
        .args(["--out", state.join("out").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(6), "damaged data");
    let last: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&result.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "error");
    assert_eq!(last["kind"], "integrity");
    assert_eq!(last["exit_code"], 6);
    assert!(last["message"].as_str().unwrap().contains("line 2 is not valid JSON"), "{last}");

    let unreachable = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .args(["export", "--fhir-url", "http://127.0.0.1:9/fhir", "--out", state.join("none").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(5), "{}", String::from_utf8_lossy(&unreachable.stderr));
}

/// A client that trusts the CA in `ca` (PEM file).
fn trusting(ca: &std::path::Path) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder().tls_certs_merge([cert]).build().unwrap()
}

#[tokio::test]
async fn serve_tls_creates_a_local_ca_serves_https_and_reuses_the_ca() {
    let state = std::env::temp_dir().join(format!("bulkmock-cli-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let state_arg = state.to_str().unwrap();
    let args = ["--tls", "--state-dir", state_arg, "--patients", "3", "--job-duration", "0s"];
    let s = serve(&args, &[]);
    assert!(s.fhir_base.starts_with("https://127.0.0.1:"), "{}", s.fhir_base);
    let ca = state.join("tls").join("ca.pem");
    for file in ["ca.pem", "ca-key.pem", "server.pem", "server-key.pem", "server.json"] {
        assert!(state.join("tls").join(file).is_file(), "{file} written");
    }
    let tls_line = banner_value(&s.banner, "TLS:");
    assert!(tls_line.contains(ca.to_str().unwrap()) && tls_line.contains("(created)"), "{tls_line}");
    assert!(banner_value(&s.banner, "trust:").contains(&format!("curl --cacert {}", ca.display())));
    assert!(banner_value(&s.banner, "token URL:").starts_with("https://"));

    let r = trusting(&ca).get(format!("{}/metadata", s.fhir_base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let untrusting = reqwest::Client::new().get(format!("{}/metadata", s.fhir_base)).send().await;
    assert!(untrusting.is_err(), "the local CA is not trusted by default");

    // The reference client: refused without --ca-cert (a TLS error, exit 5), an export with it.
    let key = banner_value(&s.banner, "client key:").split(' ').next().unwrap().to_string();
    let export = |extra: &[&str], out: &str| {
        Command::new(env!("CARGO_BIN_EXE_bulkmock"))
            .args(["export", "--fhir-url", &s.fhir_base, "--client-id", "bulkmock-demo", "--key", &key])
            .args(["--type", "Patient", "--out", state.join(out).to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = export(&[], "refused");
    assert_eq!(refused.status.code(), Some(5), "{}", String::from_utf8_lossy(&refused.stderr));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("TLS to https://") && err.contains("certificate") && err.contains("--ca-cert"), "{err}");
    let done = export(&["--ca-cert", ca.to_str().unwrap()], "out");
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert_eq!(std::fs::read_to_string(state.join("out").join("Patient.ndjson")).unwrap().lines().count(), 3);
    drop(s);

    // The second start reuses the CA and the server certificate.
    let ca_before = std::fs::read(&ca).unwrap();
    let server_before = std::fs::read(state.join("tls").join("server.pem")).unwrap();
    let again = serve(&args, &[]);
    assert!(banner_value(&again.banner, "TLS:").contains("(reused)"), "{:?}", again.banner);
    assert_eq!(std::fs::read(&ca).unwrap(), ca_before, "the same CA");
    assert_eq!(std::fs::read(state.join("tls").join("server.pem")).unwrap(), server_before, "the same certificate");
    let r = trusting(&ca).get(format!("{}/metadata", again.fhir_base)).send().await.unwrap();
    assert_eq!(r.status(), 200, "clients keep trusting the first CA");
    drop(again);

    // Another --host: a new server certificate from the same CA.
    let mut with_host = args.to_vec();
    with_host.extend(["--host", "127.0.0.2"]);
    let third = serve(&with_host, &[]);
    assert_eq!(std::fs::read(&ca).unwrap(), ca_before, "the same CA");
    assert!(third.banner.iter().any(|l| l.contains("127.0.0.2") && l.contains("(issued)")), "{:?}", third.banner);
    let r = trusting(&ca).get(format!("{}/metadata", third.fhir_base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    drop(third);
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn bad_tls_files_are_named_in_the_error() {
    let dir = std::env::temp_dir().join(format!("bulkmock-cli-tls-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cert = dir.join("cert.pem");
    std::fs::write(&cert, "not a certificate\n").unwrap();
    let key = dir.join("key.pem");
    let run = |args: &[&str]| {
        let out =
            Command::new(env!("CARGO_BIN_EXE_bulkmock")).args(["serve", "--port", "0"]).args(args).output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    assert!(err.contains(key.to_str().unwrap()) || err.contains(cert.to_str().unwrap()), "{err}");
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    let err = run(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    assert!(err.contains(cert.to_str().unwrap()) && err.contains("no certificate"), "{err}");
    let err = run(&["--tls-cert", cert.to_str().unwrap()]);
    assert!(err.contains("--tls-key"), "both files are needed: {err}");

    // A damaged CA in the state folder is named, not silently replaced.
    let state = dir.join("state");
    std::fs::create_dir_all(state.join("tls")).unwrap();
    std::fs::write(state.join("tls").join("ca.pem"), "garbage").unwrap();
    std::fs::write(state.join("tls").join("ca-key.pem"), "garbage").unwrap();
    let err = run(&["--tls", "--state-dir", state.to_str().unwrap()]);
    assert!(err.contains(&state.join("tls").join("ca.pem").display().to_string()), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
