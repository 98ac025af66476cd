//! Writers for FHIR datatypes shared by the generators.

use super::super::json::JsonWriter;
use super::T;

/// `"key":{"coding":[{system,code,display}],"text":display}`.
pub fn concept(w: &mut JsonWriter<'_>, key: &str, system: &str, code: &str, display: &str) {
    w.obj(key, |w| {
        w.arr("coding", |w| w.item_obj(|w| coding(w, system, code, display)));
        w.str("text", display);
    });
}

/// `"key":[<concept>]`: a list holding one CodeableConcept.
pub fn concepts(w: &mut JsonWriter<'_>, key: &str, system: &str, code: &str, display: &str) {
    w.arr(key, |w| {
        w.item_obj(|w| {
            w.arr("coding", |w| w.item_obj(|w| coding(w, system, code, display)));
            w.str("text", display);
        })
    });
}

/// A CodeableConcept with only a code from an HL7 terminology code system.
pub fn status_concept(w: &mut JsonWriter<'_>, key: &str, code_system: &str, code: &str) {
    w.obj(key, |w| {
        w.arr("coding", |w| {
            w.item_obj(|w| {
                w.str_parts("system", &[super::codes::THO, code_system]);
                w.str("code", code);
            })
        })
    });
}

/// The members of a Coding from an HL7 terminology code system (`THO` + name).
pub fn tho_coding(w: &mut JsonWriter<'_>, code_system: &str, code: &str, display: &str) {
    w.str_parts("system", &[super::codes::THO, code_system]);
    w.str("code", code);
    if !display.is_empty() {
        w.str("display", display);
    }
}

/// The members of a Coding.
pub fn coding(w: &mut JsonWriter<'_>, system: &str, code: &str, display: &str) {
    w.str("system", system);
    w.str("code", code);
    if !display.is_empty() {
        w.str("display", display);
    }
}

/// `"note":[{"text":<text>}]`: one Annotation (`text` is markdown).
pub fn note(w: &mut JsonWriter<'_>, text: &str) {
    w.arr("note", |w| w.item_obj(|w| w.str("text", text)));
}

/// `"key":{"reference":"Type/<prefix><n>"}`.
pub fn reference(w: &mut JsonWriter<'_>, key: &str, ty: T, n: u64) {
    w.obj(key, |w| reference_body(w, ty, n));
}

/// `"key":[{"reference":...}]`.
pub fn references(w: &mut JsonWriter<'_>, key: &str, ty: T, n: u64) {
    w.arr(key, |w| w.item_obj(|w| reference_body(w, ty, n)));
}

/// The `reference` member of a Reference.
pub fn reference_body(w: &mut JsonWriter<'_>, ty: T, n: u64) {
    w.reference(ty.name(), ty.prefix(), n);
}

/// `"key":{"value":<dollars.cents>,"currency":"USD"}`.
pub fn money(w: &mut JsonWriter<'_>, key: &str, cents: i64) {
    w.obj(key, |w| {
        w.hundredths("value", cents);
        w.str("currency", "USD");
    });
}
