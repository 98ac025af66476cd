//! Token endpoint throughput (run: `cargo bench -p bulkmock --bench token`).
//!
//! Starts the release `bulkmock serve` with a demo client key of each
//! algorithm, pre-signs assertions (client-side work, not timed), then sends
//! them with 32 requests in flight and counts verified, answered token
//! requests per second. `BENCH_TOKENS` sets the number per algorithm.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use futures_util::StreamExt;

struct Server {
    child: Child,
    banner: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(alg: &str, state: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bulkmock"))
        .args(["serve", "--port", "0", "--patients", "10", "--client-alg", alg])
        .args(["--state-dir", state.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bulkmock");
    let mut banner = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.starts_with("Press Ctrl-C");
        banner.push(line);
        if done {
            break;
        }
    }
    Server { child, banner }
}

fn value<'a>(banner: &'a [String], label: &str) -> &'a str {
    banner.iter().find_map(|l| l.trim().strip_prefix(label)).unwrap().trim()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_TOKENS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    println!("| measurement | result |");
    println!("| --- | --- |");
    for (alg, algorithm) in [("RS384", jsonwebtoken::Algorithm::RS384), ("ES384", jsonwebtoken::Algorithm::ES384)] {
        let state = std::env::temp_dir().join(format!("bulkmock-token-bench-{alg}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        let server = start(alg, &state);
        let token_url = value(&server.banner, "token URL:").to_string();
        let key_line = value(&server.banner, "client key:");
        let pem = std::fs::read(key_line.split(' ').next().unwrap()).unwrap();
        let kid = key_line.split("kid ").nth(1).unwrap().trim_end_matches(')').to_string();
        let key = match algorithm {
            jsonwebtoken::Algorithm::RS384 => jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
            _ => jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
        };
        let mut header = jsonwebtoken::Header::new(algorithm);
        header.kid = Some(kid);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let signed_at = Instant::now();
        let bodies: Vec<String> = (0..n)
            .map(|i| {
                let claims = serde_json::json!({"iss": "bulkmock-demo", "sub": "bulkmock-demo", "aud": token_url,
                    "exp": now + 280, "jti": format!("bench-{i}")});
                let assertion = jsonwebtoken::encode(&header, &claims, &key).unwrap();
                form_body(&assertion)
            })
            .collect();
        let signing = signed_at.elapsed().as_secs_f64();

        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
        let started = Instant::now();
        let results: Vec<u16> = futures_util::stream::iter(bodies)
            .map(|body| {
                let (http, url) = (http.clone(), token_url.clone());
                async move {
                    http.post(url)
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .body(body)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let elapsed = started.elapsed().as_secs_f64();
        let ok = results.iter().filter(|&&s| s == 200).count();
        assert_eq!(ok, n, "every token request must succeed");
        println!(
            "| {alg} token requests verified and answered, {n} with 32 in flight | {:.0} per second |",
            n as f64 / elapsed
        );
        println!(
            "| ({alg} assertions signed by the bench beforehand, not timed above) | {:.0} per second |",
            n as f64 / signing
        );
        drop(server);
    }
}

fn form_body(assertion: &str) -> String {
    format!(
        "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&scope=system%2F*.rs&client_assertion={assertion}"
    )
}
