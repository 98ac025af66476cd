//! Applying a fault plan: ordered rules, first firing rule wins, `times`
//! retires a rule, probabilities come from one seeded generator.

use std::sync::Mutex;
use std::time::Instant;

use rand::{RngExt, SeedableRng};
use serde::Serialize;

use super::model::{Fault, FaultPlan, FaultRule, Target, Trigger};

/// What a request is, for matching rules.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    /// The target, when the request is one faults can apply to.
    pub target: Option<Target>,
    /// The resource type of a file.
    pub resource_type: Option<String>,
    /// The index of a file in its export.
    pub file_index: Option<usize>,
    /// The calling client.
    pub client_id: Option<String>,
    /// The export level of a kick-off or of the request's job.
    pub level: Option<String>,
    /// Seconds since the request's job started.
    pub job_age_s: Option<f64>,
    /// The request followed a `redirect` fault's capability URL: redirect rules
    /// skip it, so a redirect always ends at its target.
    pub redirected: bool,
}

/// A fault that fired for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    /// The rule's id.
    pub rule_id: u64,
    /// Its name, or `<target>#<id>`.
    pub label: String,
    /// The fault.
    pub fault: Fault,
    /// How many times this rule has fired, this time included.
    pub count: u64,
}

/// A rule with its counters, as listed by the engine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleStatus {
    /// Stable id (for deletion).
    pub id: u64,
    /// The rule.
    pub rule: FaultRule,
    /// Matching requests seen.
    pub matched: u64,
    /// Times it fired.
    pub fired: u64,
    /// Whether `times` has retired it.
    pub retired: bool,
    /// Switched off (the dashboard's toggle): kept with its counters, never matched.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

struct Inner {
    rules: Vec<RuleStatus>,
    next_id: u64,
    rng: rand::rngs::ChaCha8Rng,
}

/// The fault engine of one server.
pub struct FaultEngine {
    inner: Mutex<Inner>,
    seed: u64,
    started: Instant,
}

impl std::fmt::Debug for FaultEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultEngine").field("rules", &self.list().len()).finish()
    }
}

impl FaultEngine {
    /// An engine with `plan`'s rules; probabilities draw from `seed`.
    pub fn new(plan: FaultPlan, seed: u64) -> Self {
        let engine = FaultEngine {
            inner: Mutex::new(Inner { rules: Vec::new(), next_id: 1, rng: Self::rng(seed) }),
            seed,
            started: Instant::now(),
        };
        for rule in plan.rules {
            engine.add(rule);
        }
        engine
    }

    fn rng(seed: u64) -> rand::rngs::ChaCha8Rng {
        rand::rngs::ChaCha8Rng::seed_from_u64(seed ^ 0x6661_756c_7473)
    }

    /// Appends a rule; returns its id.
    pub fn add(&self, rule: FaultRule) -> u64 {
        let mut inner = self.inner.lock().expect("faults");
        let id = inner.next_id;
        inner.next_id += 1;
        inner.rules.push(RuleStatus { id, rule, matched: 0, fired: 0, retired: false, disabled: false });
        id
    }

    /// Removes a rule; false when there is none with that id.
    pub fn remove(&self, id: u64) -> bool {
        let mut inner = self.inner.lock().expect("faults");
        let before = inner.rules.len();
        inner.rules.retain(|r| r.id != id);
        inner.rules.len() != before
    }

    /// Switches a rule on or off; false when there is none with that id.
    pub fn set_enabled(&self, id: u64, enabled: bool) -> bool {
        let mut inner = self.inner.lock().expect("faults");
        match inner.rules.iter_mut().find(|r| r.id == id) {
            Some(rule) => {
                rule.disabled = !enabled;
                true
            }
            None => false,
        }
    }

    /// Removes every rule and restarts the generator from the seed.
    pub fn clear(&self) {
        let mut inner = self.inner.lock().expect("faults");
        inner.rules.clear();
        inner.rng = Self::rng(self.seed);
    }

    /// The rules with their counters.
    pub fn list(&self) -> Vec<RuleStatus> {
        self.inner.lock().expect("faults").rules.clone()
    }

    /// The fault for this request, if a rule fires.
    pub fn check(&self, facts: &RequestFacts) -> Option<Fired> {
        let target = facts.target?;
        let elapsed = self.started.elapsed().as_secs_f64();
        let mut inner = self.inner.lock().expect("faults");
        let Inner { rules, rng, .. } = &mut *inner;
        for status in rules.iter_mut() {
            let rule = &status.rule;
            if status.retired || status.disabled || rule.on != target || !matches(rule, facts) {
                continue;
            }
            status.matched += 1;
            let fires = match rule.when {
                Trigger::Every => true,
                Trigger::Nth(n) => status.matched == n,
                Trigger::First(n) => status.matched <= n,
                Trigger::From(n) => status.matched >= n,
                Trigger::Probability(p) => rng.random::<f64>() < p,
                Trigger::AfterS(t) => facts.job_age_s.unwrap_or(elapsed) >= t,
            };
            if !fires {
                continue;
            }
            status.fired += 1;
            if rule.times.is_some_and(|t| status.fired >= t) {
                status.retired = true;
            }
            let label = rule.name.clone().unwrap_or_else(|| format!("{target:?}#{}", status.id).to_lowercase());
            return Some(Fired { rule_id: status.id, label, fault: rule.fault.clone(), count: status.fired });
        }
        None
    }
}

fn matches(rule: &FaultRule, facts: &RequestFacts) -> bool {
    let same = |want: &Option<String>, got: &Option<String>| want.as_ref().is_none_or(|w| got.as_ref() == Some(w));
    same(&rule.resource_type, &facts.resource_type)
        && same(&rule.client_id, &facts.client_id)
        && rule.file_index.is_none_or(|i| facts.file_index == Some(i))
        && same(&rule.level, &facts.level)
        && !(facts.redirected && matches!(rule.fault, Fault::Redirect { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_fault() -> Fault {
        Fault::Respond {
            status: 503,
            body: Default::default(),
            code: None,
            message: None,
            retry_after_s: None,
            retry_after_date_s: None,
        }
    }

    fn facts(target: Target) -> RequestFacts {
        RequestFacts { target: Some(target), ..RequestFacts::default() }
    }

    #[test]
    fn times_retires_a_rule() {
        let engine = FaultEngine::new(FaultPlan::default(), 1);
        engine.add(FaultRule::new(Target::Status, status_fault()).times(2));
        let fired: Vec<bool> = (0..4).map(|_| engine.check(&facts(Target::Status)).is_some()).collect();
        assert_eq!(fired, vec![true, true, false, false]);
        assert!(engine.check(&facts(Target::File)).is_none());
        assert!(engine.list()[0].retired);
    }

    #[test]
    fn a_disabled_rule_is_skipped_until_enabled_again() {
        let engine = FaultEngine::new(FaultPlan::default(), 1);
        let id = engine.add(FaultRule::new(Target::Status, status_fault()));
        assert!(engine.set_enabled(id, false));
        assert!(engine.check(&facts(Target::Status)).is_none());
        assert_eq!(engine.list()[0].matched, 0, "a disabled rule does not count");
        assert!(engine.set_enabled(id, true));
        assert!(engine.check(&facts(Target::Status)).is_some());
        assert!(!engine.set_enabled(id + 1, false));
    }

    #[test]
    fn nth_and_first_count_matching_requests() {
        let engine = FaultEngine::new(FaultPlan::default(), 1);
        engine.add(FaultRule::new(Target::File, status_fault()).when(Trigger::Nth(3)));
        let fired: Vec<bool> = (0..5).map(|_| engine.check(&facts(Target::File)).is_some()).collect();
        assert_eq!(fired, vec![false, false, true, false, false]);
        let engine = FaultEngine::new(FaultPlan::default(), 1);
        engine.add(FaultRule::new(Target::File, status_fault()).when(Trigger::First(2)));
        let fired: Vec<bool> = (0..4).map(|_| engine.check(&facts(Target::File)).is_some()).collect();
        assert_eq!(fired, vec![true, true, false, false]);
    }

    #[test]
    fn first_firing_rule_wins_and_matchers_filter() {
        let engine = FaultEngine::new(FaultPlan::default(), 1);
        let a = engine.add(FaultRule::new(Target::File, status_fault()).resource_type("Observation"));
        let b = engine.add(FaultRule::new(Target::File, Fault::Delay { delay_ms: 1 }));
        let mut f = facts(Target::File);
        assert_eq!(engine.check(&f).unwrap().rule_id, b);
        f.resource_type = Some("Observation".into());
        assert_eq!(engine.check(&f).unwrap().rule_id, a);
        assert!(engine.remove(a));
        assert_eq!(engine.check(&f).unwrap().rule_id, b);
    }

    #[test]
    fn probabilities_repeat_with_the_seed() {
        let draw = |seed| {
            let engine = FaultEngine::new(FaultPlan::default(), seed);
            engine.add(FaultRule::new(Target::File, status_fault()).when(Trigger::Probability(0.3)));
            (0..200).map(|_| engine.check(&facts(Target::File)).is_some()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let hits = draw(7).iter().filter(|x| **x).count();
        assert!((30..90).contains(&hits), "about 30% of 200: {hits}");
    }

    #[test]
    fn validation_catches_out_of_range_values() {
        let bad = FaultRule::new(Target::File, status_fault()).when(Trigger::Probability(1.5));
        assert!(bad.validate().unwrap_err().contains("probability"));
        let bad =
            FaultRule::new(Target::File, Fault::Truncate { after_bytes: None, fraction: None, at_line_end: false });
        assert!(bad.validate().is_err());
    }
}
