//! The deterministic synthetic population.
//!
//! Every resource is a pure function of (seed, population size, density,
//! type, index): nothing is stored, so any file of any export can be
//! produced on demand, in parallel, with flat memory at any size. Patient `p` owns a number of
//! resources of each compartment type set by the [`Density`]: a fixed number
//! ([`Kind::PerPatient`]) in [`Density::Light`], a heavy-tailed one in
//! [`Density::Realistic`]; resource `j` of patient `p` has index
//! `p * stride + j` (see `density.rs`). The remaining types
//! ([`Kind::Standalone`]) scale with the population.
//!
//! References resolve inside a system-level export: clinical resources point
//! at their patient, at one of the patient's encounters, at practitioners,
//! organisations and locations that exist. Resources that could be referenced
//! are never deleted; only leaf types have a deleted share.
//!
//! Revisions ([`super::revision`]): at revision `r > 0` a resource's history
//! is a short sequence of events at revisions `created + g_1`, `+ g_2`, ...
//! (gaps drawn from a hash of (seed, type, index, event number), 1 to
//! [`MAX_GAP`]): each an update (new `meta.versionId` and `lastUpdated`) or,
//! for leaf types, a deletion. Finding the state at `r` walks only the events
//! up to `r` (about `r / 20` of them), and revision 0 walks none. New
//! patients are appended ([`added_per_revision`] per revision), so existing
//! index ranges never move.
//!
//! Text beyond ASCII: a share of resources ([`NON_ASCII_PER_MILLE`], drawn
//! per (seed, type, index) by [`Synthetic::non_ascii`]) carry names,
//! addresses, narratives and notes with 2-, 3- and 4-byte UTF-8 characters
//! (accents, CJK, Hangul, emoji), so that files hold characters a download's
//! chunks can split (SRV-194: NDJSON is UTF-8). The draw has its own stream:
//! the other choices of a resource are the same whichever text it gets.

mod clinical;
mod codes;
mod datatypes;
mod density;
mod financial;
mod people;

use std::ops::Range;
use std::sync::Arc;

use super::json::JsonWriter;
use super::revision::Timeline;
use super::{DataSource, GroupDef, Header, PatientSet, TypeIdx, TypeInfo};

pub use density::Density;

/// Default population size.
pub const DEFAULT_PATIENTS: u64 = 100;
/// Default seed.
pub const DEFAULT_SEED: u64 = 42;

/// 2019-01-01T00:00:00Z: the start of the data's time span.
const SPAN_START: i64 = 1_546_300_800;
/// Seven years: clinical events fall in [SPAN_START, SPAN_START + SPAN).
const SPAN: u64 = 7 * 365 * 86_400;
/// Per mille of deletable resources that are deleted.
const DELETED_PER_MILLE: u64 = 25;
/// Largest gap, in revisions, between two changes of one resource (a mean of
/// about one change per 20 revisions).
pub const MAX_GAP: u64 = 40;
/// One change in this many deletes (leaf types only); the rest are updates.
const DELETE_ONE_IN: u64 = 4;
/// Per mille of the resources of types with text that get text beyond ASCII.
pub const NON_ASCII_PER_MILLE: u64 = 150;
/// The [`Pick`] stream of the non-ASCII draw ("utf8"), apart from every other choice.
const NON_ASCII_STREAM: u64 = 0x7574_6638;

/// Patients added by each revision: 8, or 1% of the population when larger
/// (at least 8, so every built-in cohort gains a member each revision).
pub fn added_per_revision(base_patients: u64) -> u64 {
    (base_patients / 100).max(8)
}

/// The synthetic resource types, in output order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum T {
    Patient,
    Encounter,
    Condition,
    Observation,
    Procedure,
    MedicationRequest,
    Immunization,
    AllergyIntolerance,
    DiagnosticReport,
    DocumentReference,
    CarePlan,
    CareTeam,
    Coverage,
    Claim,
    ExplanationOfBenefit,
    Device,
    Provenance,
    Practitioner,
    Organization,
    Location,
    Group,
}

/// How many resources of a type exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// This many per patient in [`Density::Light`].
    PerPatient(u64),
    /// A count that depends on the population size only.
    Standalone,
}

/// Name, kind, id prefix, whether part of it is deleted.
const SPEC: [(T, &str, Kind, &str, bool); 21] = [
    (T::Patient, "Patient", Kind::PerPatient(1), "pat-", false),
    (T::Encounter, "Encounter", Kind::PerPatient(4), "enc-", false),
    (T::Condition, "Condition", Kind::PerPatient(2), "cond-", false),
    (T::Observation, "Observation", Kind::PerPatient(8), "obs-", false),
    (T::Procedure, "Procedure", Kind::PerPatient(1), "proc-", true),
    (T::MedicationRequest, "MedicationRequest", Kind::PerPatient(2), "medrx-", true),
    (T::Immunization, "Immunization", Kind::PerPatient(2), "imm-", true),
    (T::AllergyIntolerance, "AllergyIntolerance", Kind::PerPatient(1), "alg-", true),
    (T::DiagnosticReport, "DiagnosticReport", Kind::PerPatient(1), "dxr-", false),
    (T::DocumentReference, "DocumentReference", Kind::PerPatient(1), "doc-", false),
    (T::CarePlan, "CarePlan", Kind::PerPatient(1), "cp-", false),
    (T::CareTeam, "CareTeam", Kind::PerPatient(1), "ct-", false),
    (T::Coverage, "Coverage", Kind::PerPatient(1), "cov-", false),
    (T::Claim, "Claim", Kind::PerPatient(2), "clm-", false),
    (T::ExplanationOfBenefit, "ExplanationOfBenefit", Kind::PerPatient(2), "eob-", false),
    (T::Device, "Device", Kind::PerPatient(1), "dev-", false),
    (T::Provenance, "Provenance", Kind::PerPatient(2), "prov-", false),
    (T::Practitioner, "Practitioner", Kind::Standalone, "prac-", false),
    (T::Organization, "Organization", Kind::Standalone, "org-", false),
    (T::Location, "Location", Kind::Standalone, "loc-", false),
    (T::Group, "Group", Kind::Standalone, "", false),
];

impl T {
    fn from_idx(ty: TypeIdx) -> T {
        SPEC[ty].0
    }
    /// Resources per patient in [`Density::Light`] (0: not in the compartment).
    pub(crate) fn per_patient(self) -> u64 {
        match SPEC[self as usize].2 {
            Kind::PerPatient(k) => k,
            Kind::Standalone => 0,
        }
    }
    pub(crate) fn prefix(self) -> &'static str {
        SPEC[self as usize].3
    }
    pub(crate) fn name(self) -> &'static str {
        SPEC[self as usize].1
    }
}

/// The splitmix64 finaliser: a bijection on u64 with good avalanche.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A tiny deterministic generator for the choices inside one resource.
pub(crate) struct Pick(u64);

impl Pick {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub(crate) fn choose<'a, X>(&mut self, items: &'a [X]) -> &'a X {
        &items[self.below(items.len() as u64) as usize]
    }
    /// A value in `[min, max]`.
    pub(crate) fn range(&mut self, min: i64, max: i64) -> i64 {
        min + self.below((max - min + 1) as u64) as i64
    }
}

/// The synthetic population; see the module docs.
pub struct Synthetic {
    seed: u64,
    /// Patients at revision 0: the population size (counts of standalone types follow it).
    base_patients: u64,
    /// Patients at this revision.
    patients: u64,
    revision: u64,
    timeline: Timeline,
    density: Density,
    fhir_base: String,
    types: Vec<TypeInfo>,
    groups: Vec<GroupDef>,
}

impl Synthetic {
    /// A population of `patients` patients from `seed`; attachment URLs are
    /// absolute under `fhir_base`.
    pub fn new(seed: u64, patients: u64, fhir_base: &str) -> Self {
        Self::at(seed, patients, fhir_base, Timeline::default(), 0)
    }

    /// The population of `new` as of `revision` on `timeline`.
    pub fn at(seed: u64, patients: u64, fhir_base: &str, timeline: Timeline, revision: u64) -> Self {
        let current = patients + revision * added_per_revision(patients);
        let types = SPEC
            .iter()
            .map(|(_, name, kind, _, _)| TypeInfo {
                name: (*name).to_string(),
                in_patient_compartment: matches!(kind, Kind::PerPatient(_)),
            })
            .collect();
        Synthetic {
            seed,
            base_patients: patients,
            patients: current,
            revision,
            timeline,
            density: Density::Light,
            fhir_base: fhir_base.trim_end_matches('/').to_string(),
            types,
            groups: builtin_groups(seed, patients, current, revision),
        }
    }

    /// The same population with `density` resources per patient (the
    /// constructors give [`Density::Light`]). Patients appended by revisions
    /// get their counts from the same function.
    pub fn with_density(mut self, density: Density) -> Self {
        self.density = density;
        self
    }

    /// How many resources each patient has.
    pub fn density(&self) -> Density {
        self.density
    }

    /// Index distance between two patients' resources of `t` (0 outside the compartment).
    pub(crate) fn stride(&self, t: T) -> u64 {
        density::stride(self.density, t)
    }

    /// How many resources of compartment type `t` patient `p` has.
    pub(crate) fn count(&self, t: T, p: u64) -> u64 {
        density::count(self.density, self.seed, t, p)
    }

    /// Index of resource `j` of patient `p` of compartment type `t`.
    pub(crate) fn index(&self, t: T, p: u64, j: u64) -> u64 {
        p * self.stride(t) + j
    }

    /// Owning patient and position of resource `idx` of compartment type `t`.
    pub(crate) fn owner(&self, t: T, idx: u64) -> (u64, u64) {
        let s = self.stride(t);
        (idx / s, idx % s)
    }

    /// Index of patient `p`'s encounter number `n`, counted modulo their encounters.
    pub(crate) fn encounter(&self, p: u64, n: u64) -> u64 {
        self.index(T::Encounter, p, n % self.count(T::Encounter, p))
    }

    /// Whether resource `idx` of compartment type `t` exists at this revision.
    fn exists(&self, t: T, idx: u64) -> bool {
        let (p, j) = self.owner(t, idx);
        p < self.patients && j < self.count(t, p)
    }

    /// The revision in which patient `p` was added (0: part of the population).
    fn created(&self, p: u64) -> u64 {
        if p < self.base_patients { 0 } else { 1 + (p - self.base_patients) / added_per_revision(self.base_patients) }
    }

    /// Revision 0's header: a pure function of (seed, type, index).
    fn base_header(&self, t: T, idx: u64) -> Header {
        let h = self.pick(t, idx, 0).next();
        // Records are updated up to two weeks after the event.
        let last_updated = self.event_time(t, idx) + (h % (14 * 86_400)) as i64;
        Header { last_updated, deleted: SPEC[t as usize].4 && (h >> 32) % 1000 < DELETED_PER_MILLE }
    }

    /// The header at this revision and how many updates the resource had
    /// (its `meta.versionId` is that plus one; 0 writes no versionId).
    fn history(&self, t: T, idx: u64) -> (Header, u64) {
        if self.revision == 0 {
            return (self.base_header(t, idx), 0);
        }
        if t == T::Group {
            // Membership of every built-in group but `empty` changes in every revision.
            let base = self.base_header(t, idx);
            let changes = self.groups.get(idx as usize).is_some_and(|g| g.id != "empty");
            return if changes {
                (Header { last_updated: self.timeline.time(self.revision), deleted: false }, self.revision)
            } else {
                (base, 0)
            };
        }
        let created = if self.stride(t) == 0 { 0 } else { self.created(self.owner(t, idx).0) };
        let mut header = if created == 0 {
            self.base_header(t, idx)
        } else {
            Header { last_updated: self.timeline.time(created), deleted: false }
        };
        if header.deleted {
            return (header, 0);
        }
        let deletable = SPEC[t as usize].4;
        let stream = mix(self.seed ^ 0x7265_7669_7369_6f6e ^ mix(((t as u64 + 1) << 48) ^ idx));
        let (mut at, mut updates) = (created, 0);
        for event in 0.. {
            let e = mix(stream ^ mix(event + 1));
            at += 1 + e % MAX_GAP;
            if at > self.revision {
                break;
            }
            header.last_updated = self.timeline.time(at);
            if deletable && (e >> 32).is_multiple_of(DELETE_ONE_IN) {
                header.deleted = true;
                break;
            }
            updates += 1;
        }
        (header, updates)
    }

    /// A generator for the choices of resource `idx` of type `ty`, in stream `stream`.
    pub(crate) fn pick(&self, ty: T, idx: u64, stream: u64) -> Pick {
        Pick(mix(self.seed ^ mix((ty as u64 + 1) << 48 ^ stream)) ^ mix(idx))
    }

    /// Whether resource `idx` of `ty` is in the share whose text goes beyond
    /// ASCII ([`NON_ASCII_PER_MILLE`]): a pure function of (seed, type, index).
    pub(crate) fn non_ascii(&self, ty: T, idx: u64) -> bool {
        self.pick(ty, idx, NON_ASCII_STREAM).below(1000) < NON_ASCII_PER_MILLE
    }

    pub(crate) fn practitioners(&self) -> u64 {
        10 + self.base_patients / 50
    }
    pub(crate) fn organizations(&self) -> u64 {
        3 + self.base_patients / 500
    }
    /// Organisations with index divisible by 3 are payers, the rest providers.
    pub(crate) fn payers(&self) -> u64 {
        self.organizations().div_ceil(3)
    }
    pub(crate) fn providers(&self) -> u64 {
        self.organizations() - self.payers()
    }
    /// Organisation index of provider number `k`.
    pub(crate) fn provider_org(k: u64) -> u64 {
        k + k / 2 + 1
    }
    pub(crate) fn fhir_base(&self) -> &str {
        &self.fhir_base
    }

    /// The patient's assigned practitioner, provider and payer.
    pub(crate) fn care_links(&self, p: u64) -> (u64, u64, u64) {
        let mut r = self.pick(T::Patient, p, 1);
        (r.below(self.practitioners()), r.below(self.providers()), r.below(self.payers()) * 3)
    }

    /// Start of encounter `enc` (Unix seconds).
    pub(crate) fn encounter_start(&self, enc: u64) -> i64 {
        let mut r = self.pick(T::Encounter, enc, 2);
        // Leave room after the span for follow-ups and updates.
        SPAN_START + r.below(SPAN - 90 * 86_400) as i64
    }

    /// The clinical time of a resource, before `meta.lastUpdated`.
    ///
    /// Resource `j` of a patient follows their encounter `j + c` (modulo the
    /// patient's encounters) for a per-type `c`: in [`Density::Light`] the
    /// same fixed encounters as always.
    fn event_time(&self, ty: T, idx: u64) -> i64 {
        let (p, j) = if self.stride(ty) == 0 { (0, idx) } else { self.owner(ty, idx) };
        let enc = |n: u64| self.encounter_start(self.encounter(p, n));
        match ty {
            T::Encounter => self.encounter_start(idx),
            T::Observation => {
                // Round `j / encounters` of a visit's observations, 10 minutes apart (at most a week).
                let round = (j / self.count(T::Encounter, p) + 1).min(1000);
                enc(j) + 600 * round as i64
            }
            T::Condition | T::Claim | T::MedicationRequest => enc(j),
            T::ExplanationOfBenefit => enc(j) + 14 * 86_400,
            T::Procedure => enc(2 + j) + 1200,
            T::Immunization => enc(j * 3) + 900,
            T::AllergyIntolerance | T::Device => enc(1 + j),
            T::DiagnosticReport | T::CarePlan | T::CareTeam => enc(j) + 3600,
            T::DocumentReference => enc(3 + j) + 3600,
            T::Provenance if !clinical::provenance_of_patient(self, p, j) => enc(j) + 7200,
            // The patient's last Provenance is always the newest: a day after the last encounter.
            T::Provenance => (0..self.count(T::Encounter, p)).map(enc).max().unwrap_or(0) + 86_400,
            T::Patient | T::Coverage => enc(0) - 30 * 86_400,
            T::Practitioner | T::Organization | T::Location | T::Group => {
                SPAN_START + self.pick(ty, idx, 3).below(SPAN / 7) as i64
            }
        }
    }

    /// Builds the JSON of a resource (no deletion check).
    fn generate(&self, ty: T, idx: u64, out: &mut Vec<u8>) {
        let (header, updates) = self.history(ty, idx);
        let last_updated = header.last_updated;
        let event = self.event_time(ty, idx);
        JsonWriter::object(out, |w| {
            w.str("resourceType", ty.name());
            if ty == T::Group {
                w.str("id", &self.groups[idx as usize].id);
            } else {
                w.str_num("id", ty.prefix(), idx);
            }
            w.obj("meta", |w| {
                if updates > 0 {
                    w.str_num("versionId", "", updates + 1);
                }
                w.instant("lastUpdated", last_updated)
            });
            let ctx = Ctx { data: self, idx, event };
            match ty {
                T::Patient => people::patient(&ctx, w),
                T::Practitioner => people::practitioner(&ctx, w),
                T::Organization => people::organization(&ctx, w),
                T::Location => people::location(&ctx, w),
                T::Group => people::group(&self.groups[idx as usize], w),
                T::Encounter => clinical::encounter(&ctx, w),
                T::Condition => clinical::condition(&ctx, w),
                T::Observation => clinical::observation(&ctx, w),
                T::Procedure => clinical::procedure(&ctx, w),
                T::MedicationRequest => clinical::medication_request(&ctx, w),
                T::Immunization => clinical::immunization(&ctx, w),
                T::AllergyIntolerance => clinical::allergy(&ctx, w),
                T::DiagnosticReport => clinical::diagnostic_report(&ctx, w),
                T::DocumentReference => clinical::document_reference(&ctx, w),
                T::CarePlan => clinical::care_plan(&ctx, w),
                T::CareTeam => clinical::care_team(&ctx, w),
                T::Device => clinical::device(&ctx, w),
                T::Provenance => clinical::provenance(&ctx, w),
                T::Coverage => financial::coverage(&ctx, w),
                T::Claim => financial::claim(&ctx, w),
                T::ExplanationOfBenefit => financial::explanation_of_benefit(&ctx, w),
            }
        });
    }
}

/// What a resource generator needs: the population, the index and event time.
pub(crate) struct Ctx<'a> {
    pub data: &'a Synthetic,
    pub idx: u64,
    pub event: i64,
}

impl Ctx<'_> {
    /// Owning patient and position among the patient's resources of `ty`.
    pub(crate) fn owner(&self, ty: T) -> (u64, u64) {
        self.data.owner(ty, self.idx)
    }
    pub(crate) fn pick(&self, ty: T, stream: u64) -> Pick {
        self.data.pick(ty, self.idx, stream)
    }
    /// Whether this resource (of `ty`) is in the non-ASCII share ([`Synthetic::non_ascii`]).
    pub(crate) fn non_ascii(&self, ty: T) -> bool {
        self.data.non_ascii(ty, self.idx)
    }
}

/// The built-in Groups: all patients, a diabetes cohort, a sample of ten, a
/// quarter of the population, and an empty group. At revision `r > 0`
/// (`n` patients at revision 0, `now` at `r`): `all-patients` and `quarter`
/// take in the new patients, `diabetes-cohort` takes in new patients of its
/// progression, loses a fifth of its members and gains a tenth of the other
/// existing patients (each leaving or joining at a revision 1..=8 drawn from
/// a hash), `sample-10` slides one patient forward per revision.
fn builtin_groups(seed: u64, n: u64, now: u64, r: u64) -> Vec<GroupDef> {
    if r > 0 {
        let member = |p: u64| {
            let h = mix(seed ^ 0x636f_686f_7274 ^ mix(p));
            let at = 1 + (h >> 8) % 8;
            if p % 7 == 3 {
                !h.is_multiple_of(5) || at > r // one member in five leaves
            } else {
                p < n && h.is_multiple_of(10) && at <= r // one existing patient in ten joins
            }
        };
        let diabetes: Vec<u64> = (0..now).filter(|&p| member(p)).collect();
        return vec![
            group_def("all-patients", "All patients", PatientSet::all(now)),
            group_def("diabetes-cohort", "Type 2 diabetes cohort", PatientSet::List(diabetes)),
            group_def(
                "sample-10",
                "Ten-patient sample",
                PatientSet::Progression { start: r, stride: 1, len: now.saturating_sub(r).min(10) },
            ),
            group_def(
                "quarter",
                "Every fourth patient",
                PatientSet::Progression { start: 0, stride: 4, len: now.div_ceil(4) },
            ),
            group_def("empty", "Empty group", PatientSet::all(0)),
        ];
    }
    let def = group_def;
    vec![
        def("all-patients", "All patients", PatientSet::all(n)),
        def(
            "diabetes-cohort",
            "Type 2 diabetes cohort",
            PatientSet::Progression { start: 3, stride: 7, len: n.saturating_sub(3).div_ceil(7) },
        ),
        def("sample-10", "Ten-patient sample", PatientSet::all(n.min(10))),
        def("quarter", "Every fourth patient", PatientSet::Progression { start: 0, stride: 4, len: n.div_ceil(4) }),
        def("empty", "Empty group", PatientSet::all(0)),
    ]
}

fn group_def(id: &str, name: &str, members: PatientSet) -> GroupDef {
    GroupDef { id: id.to_string(), name: name.to_string(), identifier: id.to_uppercase(), members }
}

impl DataSource for Synthetic {
    fn types(&self) -> &[TypeInfo] {
        &self.types
    }

    fn patient_count(&self) -> u64 {
        self.patients
    }

    fn patient_id(&self, p: u64) -> String {
        format!("{}{p}", T::Patient.prefix())
    }

    fn patient_index(&self, id: &str) -> Option<u64> {
        let n: u64 = id.strip_prefix(T::Patient.prefix())?.parse().ok()?;
        (n < self.patients && id == self.patient_id(n)).then_some(n)
    }

    fn groups(&self) -> &[GroupDef] {
        &self.groups
    }

    fn patient_resources(&self, ty: TypeIdx, p: u64) -> Range<u64> {
        let t = T::from_idx(ty);
        let start = self.index(t, p, 0);
        start..start + self.count(t, p)
    }

    fn standalone_count(&self, ty: TypeIdx) -> u64 {
        match T::from_idx(ty) {
            T::Practitioner => self.practitioners(),
            T::Organization => self.organizations(),
            T::Location => self.providers(),
            T::Group => self.groups.len() as u64,
            _ => 0,
        }
    }

    fn header(&self, ty: TypeIdx, idx: u64) -> Header {
        self.history(T::from_idx(ty), idx).0
    }

    fn revision(&self) -> u64 {
        self.revision
    }

    fn revision_time(&self) -> Option<i64> {
        Some(self.timeline.time(self.revision))
    }

    fn at_revision(&self, revision: u64) -> Option<Arc<dyn DataSource>> {
        let at = Synthetic::at(self.seed, self.base_patients, &self.fhir_base, self.timeline, revision);
        Some(Arc::new(at.with_density(self.density)))
    }

    fn resource_id(&self, ty: TypeIdx, idx: u64) -> String {
        match T::from_idx(ty) {
            T::Group => self.groups[idx as usize].id.clone(),
            t => format!("{}{idx}", t.prefix()),
        }
    }

    fn write_resource(&self, ty: TypeIdx, idx: u64, out: &mut Vec<u8>) -> std::io::Result<()> {
        self.generate(T::from_idx(ty), idx, out);
        Ok(())
    }

    fn attachment(&self, id: &str) -> Option<(String, Vec<u8>)> {
        let idx: u64 = id.strip_prefix(T::DocumentReference.prefix())?.parse().ok()?;
        if !self.exists(T::DocumentReference, idx) || id != format!("{}{idx}", T::DocumentReference.prefix()) {
            return None;
        }
        Some(("text/plain; charset=utf-8".into(), clinical::note_text(self, idx).into_bytes()))
    }
}

/// Identifier system of patient MRNs.
pub const MRN_SYSTEM: &str = "https://bulkmock.dev/fhir/mrn";

#[cfg(test)]
mod tests;
