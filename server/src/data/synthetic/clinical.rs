//! Encounters and the clinical resources hanging off them.
//!
//! Each clinical resource references its patient and one of the patient's
//! encounters ([`Synthetic::encounter`]: in `Density::Light` patient `p` has
//! four, `enc-(4p)..enc-(4p+3)`), and its dates follow the encounter's.
//! The non-ASCII share ([`Synthetic::non_ascii`]) of Conditions and
//! MedicationRequests carries a `note`, of CarePlans a narrative in another
//! language, of DocumentReferences a comment in the attachment.

use super::super::json::{JsonWriter, padded_str, u64_str};
use super::codes::*;
use super::datatypes::{
    coding, concept, concepts, note, reference, reference_body, references, status_concept, tho_coding,
};
use super::{Ctx, Synthetic, T};

/// The opening tag of a narrative's `div`.
const XHTML_DIV: &str = "<div xmlns=\"http://www.w3.org/1999/xhtml\">";

fn subject_and_encounter(c: &Ctx<'_>, w: &mut JsonWriter<'_>, p: u64, n: u64) {
    reference(w, "subject", T::Patient, p);
    reference(w, "encounter", T::Encounter, c.data.encounter(p, n));
}

/// Whether Provenance `j` of patient `p` is the patient-level one (the
/// last, when there are two or more); the others cover encounter `j`.
pub fn provenance_of_patient(data: &Synthetic, p: u64, j: u64) -> bool {
    j > 0 && j + 1 == data.count(T::Provenance, p)
}

/// Encounter.
pub fn encounter(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let (p, _) = c.owner(T::Encounter);
    let (practitioner, provider, _) = c.data.care_links(p);
    let mut r = c.pick(T::Encounter, 1);
    let (code, display, class, class_display) = *r.choose(ENCOUNTER_TYPES);
    let minutes = r.range(15, 120);
    w.str("status", "finished");
    w.obj("class", |w| tho_coding(w, "v3-ActCode", class, class_display));
    concepts(w, "type", SNOMED, code, display);
    reference(w, "subject", T::Patient, p);
    w.arr("participant", |w| {
        w.item_obj(|w| {
            w.arr("type", |w| {
                w.item_obj(|w| {
                    w.arr("coding", |w| {
                        w.item_obj(|w| tho_coding(w, "v3-ParticipationType", "PPRF", "primary performer"))
                    })
                })
            });
            reference(w, "individual", T::Practitioner, practitioner);
        })
    });
    w.obj("period", |w| {
        w.instant("start", c.event);
        w.instant("end", c.event + minutes * 60);
    });
    w.arr("location", |w| w.item_obj(|w| reference(w, "location", T::Location, provider)));
    reference(w, "serviceProvider", T::Organization, Synthetic::provider_org(provider));
}

/// Which condition patient `p` has in slot `j`; the diabetes cohort's first is diabetes.
pub fn condition_index(data: &Synthetic, p: u64, j: u64) -> usize {
    if j == 0 && p % 7 == 3 {
        return DIABETES;
    }
    let mut r = data.pick(T::Condition, data.index(T::Condition, p, j), 1);
    1 + r.below(CONDITIONS.len() as u64 - 1) as usize
}

/// Condition.
pub fn condition(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let (p, j) = c.owner(T::Condition);
    let (snomed, display, icd) = CONDITIONS[condition_index(c.data, p, j)];
    let resolved = c.pick(T::Condition, 2).below(3) == 0 && j >= 1;
    status_concept(w, "clinicalStatus", "condition-clinical", if resolved { "resolved" } else { "active" });
    status_concept(w, "verificationStatus", "condition-ver-status", "confirmed");
    w.arr("category", |w| {
        w.item_obj(|w| {
            w.arr("coding", |w| {
                w.item_obj(|w| tho_coding(w, "condition-category", "encounter-diagnosis", "Encounter Diagnosis"))
            })
        })
    });
    w.obj("code", |w| {
        w.arr("coding", |w| {
            w.item_obj(|w| coding(w, SNOMED, snomed, display));
            w.item_obj(|w| coding(w, ICD10, icd, ""));
        });
        w.str("text", display);
    });
    subject_and_encounter(c, w, p, j);
    w.instant("onsetDateTime", c.event);
    if resolved {
        w.instant("abatementDateTime", c.event + 21 * 86_400);
    }
    w.instant("recordedDate", c.event);
    if c.non_ascii(T::Condition) {
        let text = *c.pick(T::Condition, 3).choose(CLINICAL_NOTES_INTL);
        note(w, text);
    }
}

/// Observation: vital signs and laboratory results with UCUM quantities.
pub fn observation(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let (p, j) = c.owner(T::Observation);
    let mut r = c.pick(T::Observation, 1);
    let m = &MEASURES[((j + p) % MEASURES.len() as u64) as usize];
    let value = r.range(m.min_tenths, m.max_tenths);
    w.str("status", "final");
    w.arr("category", |w| {
        w.item_obj(|w| {
            w.arr("coding", |w| {
                w.item_obj(|w| {
                    let display = if m.category == "laboratory" { "Laboratory" } else { "Vital Signs" };
                    tho_coding(w, "observation-category", m.category, display)
                })
            })
        })
    });
    concept(w, "code", LOINC, m.code, m.display);
    subject_and_encounter(c, w, p, j);
    w.instant("effectiveDateTime", c.event);
    w.instant("issued", c.event + 1800);
    w.obj("valueQuantity", |w| {
        w.tenths("value", value);
        w.str("unit", m.unit);
        w.str("system", UCUM);
        w.str("code", m.unit);
    });
}

/// Procedure.
pub fn procedure(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let (p, j) = c.owner(T::Procedure);
    let (code, display) = *c.pick(T::Procedure, 1).choose(PROCEDURES);
    w.str("status", "completed");
    concept(w, "code", SNOMED, code, display);
    subject_and_encounter(c, w, p, 2 + j);
    w.obj("performedPeriod", |w| {
        w.instant("start", c.event);
        w.instant("end", c.event + 1800);
    });
}

/// MedicationRequest.
pub fn medication_request(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let (p, j) = c.owner(T::MedicationRequest);
    let (practitioner, _, _) = c.data.care_links(p);
    let mut r = c.pick(T::MedicationRequest, 1);
    let (code, display) = *r.choose(MEDICATIONS);
    let daily = r.range(1, 3);
    w.str("status", if j == 0 { "active" } else { "completed" });
    w.str("intent", "order");
    concept(w, "medicationCodeableConcept", RXNORM, code, display);
    subject_and_encounter(c, w, p, j);
    w.instant("authoredOn", c.event);
    reference(w, "requester", T::Practitioner, practitioner);
    if c.non_ascii(T::MedicationRequest) {
        let text = *c.pick(T::MedicationRequest, 3).choose(MEDICATION_NOTES_INTL);
        note(w, text);
    }
    w.arr("dosageInstruction", |w| {
        w.item_obj(|w| {
            w.uint("sequence", 1);
            let mut nb = [0; 20];
            w.str_parts("text", &["Take 1 tablet by mouth ", u64_str(daily as u64, &mut nb), " times a day"]);
            w.obj("timing", |w| {
                w.obj("repeat", |w| {
                    w.uint("frequency", daily as u64);
                    w.uint("period", 1);
                    w.str("periodUnit", "d");
                })
            });
        })
    });
}

/// Immunization.
pub fn immunization(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let (p, j) = c.owner(T::Immunization);
    let mut r = c.pick(T::Immunization, 1);
    let (code, display) = *r.choose(VACCINES);
    w.str("status", "completed");
    concept(w, "vaccineCode", CVX, code, display);
    reference(w, "patient", T::Patient, p);
    reference(w, "encounter", T::Encounter, c.data.encounter(p, j * 3));
    w.instant("occurrenceDateTime", c.event);
    w.bool("primarySource", true);
    let mut nb = [0; 20];
    w.str_parts("lotNumber", &["LOT", padded_str(r.below(1_000_000), 6, &mut nb)]);
}

/// AllergyIntolerance.
pub fn allergy(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let (p, j) = c.owner(T::AllergyIntolerance);
    let (code, display, category) = *c.pick(T::AllergyIntolerance, 1).choose(ALLERGIES);
    status_concept(w, "clinicalStatus", "allergyintolerance-clinical", "active");
    status_concept(w, "verificationStatus", "allergyintolerance-verification", "confirmed");
    w.str("type", "allergy");
    w.arr("category", |w| w.item_str(category));
    w.str("criticality", "low");
    concept(w, "code", SNOMED, code, display);
    reference(w, "patient", T::Patient, p);
    reference(w, "encounter", T::Encounter, c.data.encounter(p, 1 + j));
    w.instant("recordedDate", c.event);
}

/// DiagnosticReport `j`: for encounter `j` (modulo the patient's encounters);
/// results are the first two observations of that encounter.
pub fn diagnostic_report(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let (p, j) = c.owner(T::DiagnosticReport);
    let (_, provider, _) = c.data.care_links(p);
    let (code, display) = *c.pick(T::DiagnosticReport, 1).choose(PANELS);
    w.str("status", "final");
    w.arr("category", |w| {
        w.item_obj(|w| w.arr("coding", |w| w.item_obj(|w| tho_coding(w, "v2-0074", "LAB", "Laboratory"))))
    });
    concept(w, "code", LOINC, code, display);
    subject_and_encounter(c, w, p, j);
    w.instant("effectiveDateTime", c.event);
    w.instant("issued", c.event + 3600);
    references(w, "performer", T::Organization, Synthetic::provider_org(provider));
    // Observation `i` is in encounter `i % encounters`, and every patient has
    // at least two per encounter.
    let encounters = c.data.count(T::Encounter, p);
    let first = j % encounters;
    w.arr("result", |w| {
        w.item_obj(|w| reference_body(w, T::Observation, c.data.index(T::Observation, p, first)));
        w.item_obj(|w| reference_body(w, T::Observation, c.data.index(T::Observation, p, first + encounters)));
    });
}

/// The text of DocumentReference `idx`'s attachment: the patient's name, and
/// for the non-ASCII share a patient comment beyond ASCII.
pub fn note_text(data: &Synthetic, idx: u64) -> String {
    let (p, _) = data.owner(T::DocumentReference, idx);
    let person = data.person(p);
    let (_, display) = *data.pick(T::DocumentReference, idx, 1).choose(NOTE_TYPES);
    let (condition, _, _) = CONDITIONS[condition_index(data, p, 0)];
    let condition_name = CONDITIONS[condition_index(data, p, 0)].1;
    let (comment_label, comment) = if data.non_ascii(T::DocumentReference, idx) {
        ("Patient comment: ", *data.pick(T::DocumentReference, idx, 2).choose(CLINICAL_NOTES_INTL))
    } else {
        ("", "")
    };
    let comment_end = if comment.is_empty() { "" } else { "\n\n" };
    format!(
        "{display}\n\nPatient: {} {} (pat-{p})\n\nAssessment: follow-up of {condition_name} \
         (SNOMED CT {condition}). Vital signs reviewed and stable. Medications reconciled.\n\n\
         {comment_label}{comment}{comment_end}\
         Plan: continue current treatment; return in three months or sooner if symptoms change.\n",
        person.given, person.family
    )
}

/// DocumentReference with an attachment served by the mock (SRV-029, SRV-196..199).
pub fn document_reference(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let (p, j) = c.owner(T::DocumentReference);
    let (practitioner, _, _) = c.data.care_links(p);
    let (code, display) = *c.pick(T::DocumentReference, 1).choose(NOTE_TYPES);
    let size = note_text(c.data, c.idx).len() as u64;
    w.str("status", "current");
    concept(w, "type", LOINC, code, display);
    w.arr("category", |w| {
        w.item_obj(|w| {
            w.arr("coding", |w| {
                w.item_obj(|w| {
                    coding(
                        w,
                        "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                        "clinical-note",
                        "Clinical Note",
                    )
                })
            })
        })
    });
    reference(w, "subject", T::Patient, p);
    w.instant("date", c.event);
    references(w, "author", T::Practitioner, practitioner);
    w.arr("content", |w| {
        w.item_obj(|w| {
            w.obj("attachment", |w| {
                w.str("contentType", "text/plain; charset=utf-8");
                let mut nb = [0; 20];
                w.str_parts(
                    "url",
                    &[c.data.fhir_base(), "/attachments/", T::DocumentReference.prefix(), u64_str(c.idx, &mut nb)],
                );
                w.uint("size", size);
                w.str("title", display);
                w.instant("creation", c.event);
            })
        })
    });
    w.obj("context", |w| {
        references(w, "encounter", T::Encounter, c.data.encounter(p, 3 + j));
        w.obj("period", |w| w.instant("start", c.event - 3600));
    });
}

/// CarePlan `j` addressing the patient's condition `j` (modulo their conditions).
pub fn care_plan(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let (p, j) = c.owner(T::CarePlan);
    // US Core CarePlan: a narrative and the `assess-plan` category are required.
    w.obj("text", |w| {
        w.str("status", "generated");
        if c.non_ascii(T::CarePlan) {
            let title = *c.pick(T::CarePlan, 1).choose(CARE_PLAN_TITLES_INTL);
            w.str_parts("div", &[XHTML_DIV, "Chronic disease management plan (", title, ")</div>"]);
        } else {
            w.str_parts("div", &[XHTML_DIV, "Chronic disease management plan</div>"]);
        }
    });
    w.str("status", "active");
    w.str("intent", "plan");
    w.arr("category", |w| {
        w.item_obj(|w| {
            w.arr("coding", |w| {
                w.item_obj(|w| coding(w, US_CORE_CAREPLAN_CATEGORY, "assess-plan", "Assessment and Plan of Treatment"))
            });
        });
        w.item_obj(|w| {
            w.arr("coding", |w| w.item_obj(|w| coding(w, SNOMED, "734163000", "Care plan (record artifact)")));
            w.str("text", "Care plan (record artifact)");
        });
    });
    w.str("title", "Chronic disease management plan");
    subject_and_encounter(c, w, p, j);
    w.obj("period", |w| w.instant("start", c.event));
    let condition = c.data.index(T::Condition, p, j % c.data.count(T::Condition, p));
    references(w, "addresses", T::Condition, condition);
}

/// CareTeam: the patient and their practitioner.
pub fn care_team(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let (p, j) = c.owner(T::CareTeam);
    let (practitioner, provider, _) = c.data.care_links(p);
    w.str("status", "active");
    w.str("name", "Primary care team");
    subject_and_encounter(c, w, p, j);
    w.obj("period", |w| w.instant("start", c.event));
    w.arr("participant", |w| {
        w.item_obj(|w| {
            concepts(w, "role", SNOMED, "223366009", "Healthcare professional (occupation)");
            reference(w, "member", T::Practitioner, practitioner);
        });
        w.item_obj(|w| {
            concepts(w, "role", SNOMED, "116154003", "Patient (person)");
            reference(w, "member", T::Patient, p);
        });
    });
    references(w, "managingOrganization", T::Organization, Synthetic::provider_org(provider));
}

/// Device used by the patient.
pub fn device(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let (p, _) = c.owner(T::Device);
    let mut r = c.pick(T::Device, 1);
    let (code, display) = *r.choose(DEVICES);
    w.str("status", "active");
    w.str("manufacturer", "Acme Medical Devices");
    let mut nb = [0; 20];
    w.str_parts("serialNumber", &["SN", padded_str(r.below(10_000_000_000), 10, &mut nb)]);
    w.arr("deviceName", |w| {
        w.item_obj(|w| {
            w.str("name", display);
            w.str("type", "user-friendly-name");
        })
    });
    concept(w, "type", SNOMED, code, display);
    reference(w, "patient", T::Patient, p);
}

/// Provenance: the patient's last, always the newest, covers the patient;
/// each other one (`j`) covers the patient and encounter `j`.
pub fn provenance(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let (p, j) = c.owner(T::Provenance);
    let (_, provider, _) = c.data.care_links(p);
    w.arr("target", |w| {
        w.item_obj(|w| reference_body(w, T::Patient, p));
        if !provenance_of_patient(c.data, p, j) {
            w.item_obj(|w| reference_body(w, T::Encounter, c.data.encounter(p, j)));
        }
    });
    w.instant("recorded", c.event);
    w.arr("agent", |w| {
        w.item_obj(|w| {
            w.obj("type", |w| {
                w.arr("coding", |w| w.item_obj(|w| tho_coding(w, "provenance-participant-type", "author", "Author")));
                w.str("text", "Author");
            });
            reference(w, "who", T::Organization, Synthetic::provider_org(provider));
        })
    });
}
