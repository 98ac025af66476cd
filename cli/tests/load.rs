//! The mock under load, at small scale (issue 12, item 4): 20 reference
//! clients at once against one `MockServer`, each with its own registration,
//! token, kick-off, polling and downloads, with probabilistic 503s, resets and
//! truncations. Every client recovers, every resource of every file matches the
//! expected export, and once all jobs end no connection, connection task or job
//! is left. The 200-client run is `cargo bench -p bulkmock --bench load`.

#[path = "../benches/common/load.rs"]
mod load;

use std::time::Duration;

use bulkmock_server::MockServer;
use bulkmock_server::limits::Limits;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_recover_from_faults_with_exact_output_and_nothing_leaks() {
    let plan = bulkmock_server::faults::file::parse(load::FAULTS, "load.toml", false).unwrap();
    // Idle connections are not closed by the server: only the clients' closing can bring the count to 0.
    let limits = Limits { header_read_timeout: Duration::from_secs(3600), ..Limits::default() };
    let mut builder = MockServer::builder().patients(8).resources_per_file(40).seed(7).limits(limits);
    for rule in plan.rules {
        builder = builder.fault(rule);
    }
    let server = builder.start().await;
    let origin = server.fhir_base().trim_end_matches("/fhir").to_string();
    let credentials = load::register(&origin, 20).await;
    let scratch = std::env::temp_dir().join(format!("bulkmock-load-{}", std::process::id()));

    let runs = load::run_clients(server.fhir_base(), credentials, &scratch, 2).await;

    let jobs = server.jobs();
    let mut verified = 0;
    for run in &runs {
        let summary = run.result.as_ref().unwrap_or_else(|e| panic!("{}: {e}", run.out.display()));
        let job = jobs.iter().find(|j| summary.status_url.ends_with(&format!("/{}", j.id))).expect("the client's job");
        let files = server.job_contents(job).unwrap();
        assert!(files.len() > 8, "several files per job: {}", files.len());
        let expected: Vec<Vec<u8>> = files.into_iter().flat_map(|f| f.lines).collect();
        verified += load::check(run, &expected).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(jobs.len(), 20, "one job per client");
    assert!(verified > 20 * 250, "{verified} resources verified");
    // Every kind of fault happened, and the clients recovered from each.
    let transcript = server.transcript();
    for name in load::FAULT_NAMES {
        let fired = transcript.iter().filter(|e| e.fault.as_deref() == Some(name)).count();
        assert!(fired > 0, "no {name} fault fired");
    }
    // Nothing left behind: the clients deleted their jobs and closed their connections.
    let connections = &server.state().connections;
    assert!(
        load::eventually(3000, || connections.open_connections() == 0 && connections.connection_tasks() == 0).await,
        "{} connections and {} connection tasks still open",
        connections.open_connections(),
        connections.connection_tasks()
    );
    assert_eq!(server.live_jobs(), 0, "jobs left");
    let _ = std::fs::remove_dir_all(&scratch);
}
