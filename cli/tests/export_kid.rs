//! `bulkmock export --key private.pem` without `--kid` and without a JWKS
//! beside the key: the kid defaults to the key's RFC 7638 thumbprint (CLI-005).

use std::process::Command;

use bulkmock_server::MockServer;

#[test]
fn a_lone_pem_key_signs_with_its_thumbprint_as_kid() {
    let server = MockServer::builder().patients(3).job_duration(std::time::Duration::ZERO).try_start().unwrap();
    let dir = std::env::temp_dir().join(format!("bulkmock-export-kid-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Only the PEM: no jwks.json or private.jwk.json next to it.
    let pem = dir.join("private.pem");
    std::fs::write(&pem, &server.client_key().private_pem).unwrap();
    let export = |extra: &[&str], out: &str| {
        Command::new(env!("CARGO_BIN_EXE_bulkmock"))
            .args(["export", "--fhir-url", server.fhir_base(), "--client-id", server.client_id()])
            .args(["--key", pem.to_str().unwrap(), "--type", "Patient", "--out", dir.join(out).to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };

    let result = export(&[], "out");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    let kid = &server.client_key().kid;
    assert!(stderr.contains(&format!("kid {kid} (the RFC 7638 thumbprint")), "the kid is announced: {stderr}");
    assert_eq!(std::fs::read_to_string(dir.join("out/Patient.ndjson")).unwrap().lines().count(), 3);
    let assertion = server.transcript().into_iter().find_map(|e| e.assertion).expect("a token request");
    assert_eq!(assertion["header"]["kid"], kid.as_str());

    // --kid still overrides: a wrong one is refused by the token endpoint (exit 3).
    let wrong = export(&["--kid", "not-the-kid"], "wrong");
    assert_eq!(wrong.status.code(), Some(3), "{}", String::from_utf8_lossy(&wrong.stderr));
    assert!(!String::from_utf8_lossy(&wrong.stderr).contains("thumbprint"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `bulkmock run` exports every template variable to the clients it runs, the
/// empty ones too (`BULKMOCK_CA_CERT=` without TLS, `BULKMOCK_KID=`): an empty
/// `BULKMOCK_*` variable counts as unset, so `bulkmock export` works as such a client.
#[test]
fn empty_bulkmock_variables_count_as_unset() {
    let server = MockServer::builder().patients(2).job_duration(std::time::Duration::ZERO).try_start().unwrap();
    let dir = std::env::temp_dir().join(format!("bulkmock-export-empty-env-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pem = dir.join("private.pem");
    std::fs::write(&pem, &server.client_key().private_pem).unwrap();
    let result = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .args(["export", "--fhir-url", server.fhir_base(), "--client-id", server.client_id()])
        .args(["--key", pem.to_str().unwrap(), "--type", "Patient", "--out", dir.join("out").to_str().unwrap()])
        .env("BULKMOCK_CA_CERT", "")
        .env("BULKMOCK_KID", "")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(stderr.contains("the RFC 7638 thumbprint"), "an empty BULKMOCK_KID is no kid: {stderr}");
    assert_eq!(std::fs::read_to_string(dir.join("out/Patient.ndjson")).unwrap().lines().count(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
