//! Coverage, Claim and ExplanationOfBenefit.

use super::super::json::JsonWriter;
use super::codes::*;
use super::datatypes::{concept, money, reference, status_concept, tho_coding};
use super::{Ctx, Synthetic, T};

fn claim_type(w: &mut JsonWriter<'_>) {
    w.obj("type", |w| w.arr("coding", |w| w.item_obj(|w| tho_coding(w, "claim-type", "professional", "Professional"))));
}

fn insurance(c: &Ctx<'_>, w: &mut JsonWriter<'_>, p: u64, with_sequence: bool) {
    w.arr("insurance", |w| {
        w.item_obj(|w| {
            if with_sequence {
                w.uint("sequence", 1);
            }
            w.bool("focal", true);
            reference(w, "coverage", T::Coverage, c.data.index(T::Coverage, p, 0));
        })
    });
}

/// Amount charged for claim `idx`, in cents.
fn charge(data: &Synthetic, claim_idx: u64) -> i64 {
    data.pick(T::Claim, claim_idx, 1).range(8_000, 150_000)
}

/// Coverage of the patient by their payer.
pub fn coverage(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let (p, _) = c.owner(T::Coverage);
    let (_, _, payer) = c.data.care_links(p);
    w.str("status", "active");
    concept(w, "type", "http://terminology.hl7.org/CodeSystem/v3-ActCode", "HIP", "health insurance plan policy");
    w.str_num("subscriberId", "SUB", 500_000_000 + p);
    reference(w, "beneficiary", T::Patient, p);
    status_concept(w, "relationship", "subscriber-relationship", "self");
    w.obj("period", |w| w.date("start", c.event));
    w.arr("payor", |w| w.item_obj(|w| super::datatypes::reference_body(w, T::Organization, payer)));
}

/// Claim for encounter `j` of the patient (modulo their encounters).
pub fn claim(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let (p, j) = c.owner(T::Claim);
    let (_, provider, _) = c.data.care_links(p);
    let cents = charge(c.data, c.idx);
    w.str("status", "active");
    claim_type(w);
    w.str("use", "claim");
    reference(w, "patient", T::Patient, p);
    w.obj("billablePeriod", |w| {
        w.instant("start", c.event);
        w.instant("end", c.event + 3600);
    });
    w.instant("created", c.event + 3600);
    reference(w, "provider", T::Organization, Synthetic::provider_org(provider));
    status_concept(w, "priority", "processpriority", "normal");
    insurance(c, w, p, true);
    w.arr("item", |w| {
        w.item_obj(|w| {
            w.uint("sequence", 1);
            concept(w, "productOrService", SNOMED, "185349003", "Encounter for check up (procedure)");
            w.arr("encounter", |w| {
                w.item_obj(|w| super::datatypes::reference_body(w, T::Encounter, c.data.encounter(p, j)))
            });
            money(w, "net", cents);
        })
    });
    money(w, "total", cents);
}

/// ExplanationOfBenefit adjudicating the claim with the same index.
pub fn explanation_of_benefit(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let (p, _) = c.owner(T::ExplanationOfBenefit);
    let (_, provider, payer) = c.data.care_links(p);
    let cents = charge(c.data, c.idx);
    let paid = cents * 8 / 10;
    w.str("status", "active");
    claim_type(w);
    w.str("use", "claim");
    reference(w, "patient", T::Patient, p);
    w.instant("created", c.event);
    reference(w, "insurer", T::Organization, payer);
    reference(w, "provider", T::Organization, Synthetic::provider_org(provider));
    reference(w, "claim", T::Claim, c.idx);
    w.str("outcome", "complete");
    insurance(c, w, p, false);
    let adjudication = |w: &mut JsonWriter<'_>, code: &str, display: &str, amount: i64| {
        w.item_obj(|w| {
            w.obj("category", |w| w.arr("coding", |w| w.item_obj(|w| tho_coding(w, "adjudication", code, display))));
            money(w, "amount", amount);
        })
    };
    w.arr("item", |w| {
        w.item_obj(|w| {
            w.uint("sequence", 1);
            concept(w, "productOrService", SNOMED, "185349003", "Encounter for check up (procedure)");
            w.arr("adjudication", |w| {
                adjudication(w, "submitted", "Submitted Amount", cents);
                adjudication(w, "benefit", "Benefit Amount", paid);
            });
        })
    });
    w.arr("total", |w| {
        adjudication(w, "submitted", "Submitted Amount", cents);
        adjudication(w, "benefit", "Benefit Amount", paid);
    });
    w.obj("payment", |w| money(w, "amount", paid));
}
