//! `[incremental]` cases: the client runs again on the same folder after each
//! advance of the data (CLI-054, CLI-087).

use std::sync::Arc;
use std::time::Duration;

use crate::adapter::{ClientAdapter, ClientRun};
use crate::checks::{RunFacts, RunJob};
use crate::scenario::Incremental;

use super::setup;

/// An `[incremental]` case: the full run, then `runs` times the data advances
/// by `revisions` and the client runs again on the same folder (`run` =
/// `incremental`, `since` = the previous run's transactionTime). The case's
/// deadline and request bound cover all runs; the first run that does not
/// succeed ends the case. Returns how the client ended (times and output of
/// all runs) and what each run did on the server.
pub(super) async fn run(
    adapter: &dyn ClientAdapter,
    world: &mut setup::World,
    inc: &Incremental,
    deadline: Duration,
    max_requests: u64,
) -> (ClientRun, Vec<RunFacts>) {
    let started = std::time::Instant::now();
    let state = Arc::clone(world.server.state());
    let client = world.ctx.client_id.clone();
    let jobs_of = |from: usize| -> Vec<Arc<bulkmock_server::export::job::Job>> {
        let history = state.jobs.history();
        history.into_iter().skip(from).filter(|j| client.is_empty() || j.owner.as_deref() == Some(&client)).collect()
    };
    let mut runs: Vec<RunFacts> = Vec::new();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut last = ClientRun::default();
    for n in 0..inc.total_runs() {
        if n > 0 {
            let since = runs.last().and_then(|r| r.jobs.last()).map(|j| j.transaction_time);
            let to = state.revisions.revision() + inc.revisions;
            if let Err(e) = state.revisions.set(to) {
                return (ClientRun { launch_error: Some(format!("cannot advance the data: {e}")), ..last }, runs);
            }
            let vars = &mut world.ctx.variables;
            vars.insert("run".into(), "incremental".into());
            vars.insert("since".into(), since.map(bulkmock_server::data::clock::instant_string).unwrap_or_default());
        }
        let first_seq = world.server.request_count();
        let jobs_before = state.jobs.history().len();
        let remaining = deadline.saturating_sub(started.elapsed());
        let count = || world.server.request_count();
        let mut run = super::run_bounded(adapter, &world.ctx, &count, remaining, max_requests).await;
        runs.push(RunFacts {
            run: world.ctx.variables.get("run").cloned().unwrap_or_default(),
            revision: state.revisions.revision(),
            first_seq,
            jobs: jobs_of(jobs_before)
                .iter()
                .map(|j| RunJob { since: j.plan.since, transaction_time: j.transaction_time })
                .collect(),
        });
        for (all, part) in [(&mut stdout, &run.stdout), (&mut stderr, &run.stderr)] {
            all.extend(part.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("[run {}] {l}", n + 1)));
        }
        run.seconds = started.elapsed().as_secs_f64();
        let ok = run.exit_code == Some(0) && !run.timed_out && !run.flooded && run.launch_error.is_none();
        last = run;
        if !ok {
            break;
        }
    }
    if last.timed_out {
        last.seconds = deadline.as_secs_f64();
    }
    (ClientRun { stdout: stdout.join("\n"), stderr: stderr.join("\n"), ..last }, runs)
}
