//! How many resources of each compartment type a patient has: the data
//! density setting.
//!
//! Resource `j` of patient `p` of a compartment type `t` has index
//! `p * stride(t) + j`, with `j < count(t, p)`: a patient's resources are one
//! range, the owner of an index is `idx / stride(t)`, and nothing is stored
//! per patient. [`Density::Light`] (the default) gives every patient the
//! fixed counts of the type table (`stride = count = k`), the layout and
//! bytes the population always had. [`Density::Realistic`] draws a
//! per-patient activity from a Pareto distribution and scales a per-type
//! base count by it, clamped to `[min, cap]`; the stride is the cap.
//!
//! Every count is a pure function of (seed, density, type, patient index),
//! computed with integer arithmetic and the IEEE-754 operations that are
//! exactly rounded on every platform (`+ - * /`, `sqrt`), so the same seed
//! gives the same population everywhere.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{T, mix};

/// How many resources each patient has (`serve --density`, `ServerConfig::density`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Density {
    /// A fixed, small number of each compartment type per patient (about 30
    /// resources, 25 KB of NDJSON): the default, with the ids and layout of
    /// the population before densities existed, at every revision.
    #[default]
    Light,
    /// Heavy-tailed counts per patient, close to a synthetic EHR population:
    /// most patients have tens to hundreds of Observations, a few thousands;
    /// about 1.3 MB of NDJSON per patient on average (README, "Data density").
    Realistic,
}

impl Density {
    /// Every density, in the order they are listed in messages.
    pub const ALL: [Density; 2] = [Density::Light, Density::Realistic];

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Density::Light => "light",
            Density::Realistic => "realistic",
        }
    }
}

impl fmt::Display for Density {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Density {
    type Err = String;

    /// `light` or `realistic`; anything else is an error listing the valid names.
    fn from_str(s: &str) -> Result<Self, String> {
        Density::ALL.into_iter().find(|d| d.name() == s.trim()).ok_or_else(|| {
            let names: Vec<&str> = Density::ALL.iter().map(|d| d.name()).collect();
            format!("unknown density {s:?}; valid densities: {}", names.join(", "))
        })
    }
}

/// The realistic count of one type: `base × activity × jitter`, clamped to
/// `[min, cap]` (`base` is the count at the least activity; the median
/// patient has about 1.7 times it). A `base` of 0 means exactly `min`
/// (= `cap`) per patient.
#[derive(Clone, Copy)]
struct Scale {
    base: u64,
    min: u64,
    cap: u64,
}

const fn scale(base: u64, min: u64, cap: u64) -> Scale {
    Scale { base, min, cap }
}

/// Per compartment type, in `T` order. Claim and ExplanationOfBenefit follow
/// the patient's encounters and medication requests (a claim per encounter
/// and per prescription, adjudicated by the EOB of the same index), so only
/// their row's cap (the stride) is used; Observation has at least two per encounter (the
/// DiagnosticReport of an encounter lists two). Patient and Coverage stay one
/// per patient (Claims and EOBs reference Coverage `p`'s only resource).
const REALISTIC: [Scale; 17] = [
    scale(0, 1, 1),        // Patient
    scale(35, 4, 3_000),   // Encounter
    scale(5, 1, 300),      // Condition
    scale(220, 8, 40_000), // Observation
    scale(15, 1, 3_000),   // Procedure
    scale(25, 1, 5_000),   // MedicationRequest
    scale(8, 1, 150),      // Immunization
    scale(1, 1, 30),       // AllergyIntolerance
    scale(20, 1, 3_000),   // DiagnosticReport
    scale(25, 1, 3_000),   // DocumentReference
    scale(2, 1, 60),       // CarePlan
    scale(2, 1, 60),       // CareTeam
    scale(0, 1, 1),        // Coverage
    scale(0, 5, 8_000),    // Claim: Encounter + MedicationRequest
    scale(0, 5, 8_000),    // ExplanationOfBenefit: as Claim
    scale(1, 1, 30),       // Device
    scale(2, 2, 200),      // Provenance
];

/// Index distance between two patients' resources of `t` (`k` in Light,
/// the cap in Realistic); 0 for types outside the Patient compartment.
pub(super) fn stride(density: Density, t: T) -> u64 {
    let k = t.per_patient();
    match density {
        Density::Light => k,
        Density::Realistic if k == 0 => 0,
        Density::Realistic => REALISTIC[t as usize].cap,
    }
}

/// How many resources of compartment type `t` patient `p` has.
pub(super) fn count(density: Density, seed: u64, t: T, p: u64) -> u64 {
    if density == Density::Light || t.per_patient() == 0 {
        return t.per_patient();
    }
    match t {
        T::Claim | T::ExplanationOfBenefit => {
            realistic(seed, T::Encounter, p) + realistic(seed, T::MedicationRequest, p)
        }
        T::Observation => realistic(seed, t, p).max(2 * realistic(seed, T::Encounter, p)),
        _ => realistic(seed, t, p),
    }
}

/// `base × activity(p) × jitter(t, p)`, clamped to the type's `[min, cap]`.
fn realistic(seed: u64, t: T, p: u64) -> u64 {
    let s = REALISTIC[t as usize];
    if s.base == 0 {
        return s.min;
    }
    // Jitter in [0.5, 1.5): types of one patient vary around its activity.
    let jitter = 0.5 + unit(mix(seed ^ 0x6a69_7474_6572 ^ mix(((t as u64 + 1) << 48) ^ p)));
    let n = s.base as f64 * activity(seed, p) * jitter;
    // `as` saturates; the clamp bounds the result either way.
    (n as u64).clamp(s.min, s.cap)
}

/// Patient `p`'s activity: Pareto with shape 4/3 and scale 1 by the inverse
/// CDF, `u^(-3/4) = 1 / (sqrt(u) × sqrt(sqrt(u)))` for `u` uniform in
/// (0, 1]. Median 2^(3/4) ≈ 1.68, mean 4 (before the caps); one patient in
/// ten is above 5.6, one in a hundred above 31.6.
pub(super) fn activity(seed: u64, p: u64) -> f64 {
    let u = 1.0 - unit(mix(seed ^ 0x6163_7469_7669_7479 ^ mix(p)));
    let root = u.sqrt();
    1.0 / (root * root.sqrt())
}

/// A hash as a uniform value in [0, 1) (53 bits, exact).
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_list_the_valid_ones() {
        for d in Density::ALL {
            assert_eq!(d.to_string().parse::<Density>(), Ok(d));
        }
        assert_eq!(Density::default(), Density::Light);
        let err = "dense".parse::<Density>().unwrap_err();
        assert!(err.contains("\"dense\"") && err.contains("light, realistic"), "{err}");
    }

    #[test]
    fn light_is_the_fixed_table() {
        let fixed = [1, 4, 2, 8, 1, 2, 2, 1, 1, 1, 1, 1, 1, 2, 2, 1, 2];
        for (i, k) in fixed.into_iter().enumerate() {
            let t = super::super::SPEC[i].0;
            assert_eq!(stride(Density::Light, t), k, "{t:?}");
            for p in [0, 1, 17, 1_000_000] {
                assert_eq!(count(Density::Light, 3, t, p), k, "{t:?} of {p}");
            }
        }
        for t in [T::Practitioner, T::Organization, T::Location, T::Group] {
            assert_eq!(stride(Density::Light, t), 0);
            assert_eq!(stride(Density::Realistic, t), 0);
        }
    }

    #[test]
    fn realistic_counts_stay_inside_their_stride_and_follow_the_rules() {
        for p in 0..2_000 {
            let enc = count(Density::Realistic, 5, T::Encounter, p);
            for (t, ..) in super::super::SPEC.iter().filter(|s| s.0.per_patient() > 0) {
                let n = count(Density::Realistic, 5, *t, p);
                assert!(n >= 1 && n <= stride(Density::Realistic, *t), "{t:?} of {p}: {n}");
            }
            let claims = enc + count(Density::Realistic, 5, T::MedicationRequest, p);
            assert_eq!(count(Density::Realistic, 5, T::Claim, p), claims);
            assert_eq!(count(Density::Realistic, 5, T::ExplanationOfBenefit, p), claims);
            assert!(count(Density::Realistic, 5, T::Observation, p) >= 2 * enc);
            assert_eq!(count(Density::Realistic, 5, T::Patient, p), 1);
            assert_eq!(count(Density::Realistic, 5, T::Coverage, p), 1);
        }
    }

    #[test]
    fn activity_is_pareto_shaped() {
        let n = 20_000u64;
        let mut a: Vec<f64> = (0..n).map(|p| activity(9, p)).collect();
        assert!(a.iter().all(|&x| x >= 1.0 && x.is_finite()));
        a.sort_by(f64::total_cmp);
        let (median, p90, p99) = (a[n as usize / 2], a[n as usize * 9 / 10], a[n as usize * 99 / 100]);
        // Exact quantiles: 1.68, 5.62, 31.6; the sample is within a few per cent.
        assert!((1.6..1.8).contains(&median), "{median}");
        assert!((5.0..6.3).contains(&p90), "{p90}");
        assert!((26.0..38.0).contains(&p99), "{p99}");
    }
}
