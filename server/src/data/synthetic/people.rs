//! Patient, Practitioner, Organization, Location and Group.

use super::super::json::{JsonWriter, padded_str, u64_str};
use super::super::{GROUP_IDENTIFIER_SYSTEM, GroupDef};
use super::codes::*;
use super::datatypes::{concept, concepts, reference, reference_body, status_concept};
use super::{Ctx, MRN_SYSTEM, Pick, Synthetic, T};

/// Largest Group whose members are listed in the Group resource itself.
pub const MAX_LISTED_MEMBERS: u64 = 1000;

/// A person's name parts; deterministic per patient.
pub struct Person {
    pub female: bool,
    pub given: &'static str,
    pub family: &'static str,
}

impl Synthetic {
    /// Name and sex of patient `p`; beyond ASCII for the non-ASCII share.
    pub(crate) fn person(&self, p: u64) -> Person {
        let non_ascii = self.non_ascii(T::Patient, p);
        let mut r = self.pick(T::Patient, p, 4);
        let female = r.below(2) == 0;
        let given = *r.choose(given_names(female, non_ascii));
        let family = *r.choose(family_names(non_ascii));
        Person { female, given, family }
    }

    /// Birth date of patient `p` (Unix seconds): ages 1 to 95 at the span start.
    pub(crate) fn birth(&self, p: u64) -> i64 {
        let mut r = self.pick(T::Patient, p, 5);
        super::SPAN_START - r.range(365, 95 * 365) * 86_400
    }
}

/// Given names: female or male, ASCII or beyond.
fn given_names(female: bool, non_ascii: bool) -> &'static [&'static str] {
    match (female, non_ascii) {
        (true, false) => GIVEN_FEMALE,
        (false, false) => GIVEN_MALE,
        (true, true) => GIVEN_FEMALE_INTL,
        (false, true) => GIVEN_MALE_INTL,
    }
}

/// Family names, ASCII or beyond.
fn family_names(non_ascii: bool) -> &'static [&'static str] {
    if non_ascii { FAMILY_INTL } else { FAMILY }
}

/// Street names, ASCII or beyond.
fn streets(non_ascii: bool) -> &'static [&'static str] {
    if non_ascii { STREETS_INTL } else { STREETS }
}

/// `"address":[{...}]` in a random city (Patient, Practitioner, Organization: Address 0..*).
fn address(w: &mut JsonWriter<'_>, r: &mut Pick, non_ascii: bool) {
    let city = r.choose(CITIES);
    w.arr("address", |w| w.item_obj(|w| address_fields(w, r, city, non_ascii)));
}

/// The members of an Address in `city` (name, state, ZIP prefix); the street
/// beyond ASCII for the non-ASCII share.
fn address_fields(w: &mut JsonWriter<'_>, r: &mut Pick, (city, state, zip): &(&str, &str, &str), non_ascii: bool) {
    let (number, street, zip_suffix) = (r.range(1, 999) as u64, *r.choose(streets(non_ascii)), r.below(100));
    let (mut nb, mut zb) = ([0; 20], [0; 20]);
    w.arr("line", |w| w.item_str_parts(&[u64_str(number, &mut nb), " ", street]));
    w.str("city", city);
    w.str("state", state);
    w.str_parts("postalCode", &[zip, padded_str(zip_suffix, 2, &mut zb)]);
    w.str("country", "US");
}

fn phone(w: &mut JsonWriter<'_>, r: &mut Pick, use_: &str) {
    let (exchange, line) = (r.below(1000), r.below(10_000));
    let (mut eb, mut lb) = ([0; 20], [0; 20]);
    w.arr("telecom", |w| {
        w.item_obj(|w| {
            w.str("system", "phone");
            w.str_parts("value", &["555-", padded_str(exchange, 3, &mut eb), "-", padded_str(line, 4, &mut lb)]);
            w.str("use", use_);
        })
    });
}

/// Patient.
pub fn patient(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let p = c.idx;
    let person = c.data.person(p);
    let (practitioner, provider, _) = c.data.care_links(p);
    let mut r = c.pick(T::Patient, 6);
    w.arr("identifier", |w| {
        w.item_obj(|w| {
            w.str("use", "usual");
            w.obj("type", |w| {
                w.arr("coding", |w| {
                    w.item_obj(|w| {
                        w.str_parts("system", &[THO, "v2-0203"]);
                        w.str("code", "MR");
                    })
                });
                w.str("text", "Medical record number");
            });
            w.str("system", MRN_SYSTEM);
            w.str_num("value", "MRN", 10_000_000 + p);
        })
    });
    w.bool("active", true);
    w.arr("name", |w| {
        w.item_obj(|w| {
            w.str("use", "official");
            w.str("family", person.family);
            w.arr("given", |w| w.item_str(person.given));
        })
    });
    phone(w, &mut r, "home");
    w.str("gender", if person.female { "female" } else { "male" });
    w.date("birthDate", c.data.birth(p));
    address(w, &mut r, c.non_ascii(T::Patient));
    let married = r.below(2) == 0;
    status_concept(w, "maritalStatus", "v3-MaritalStatus", if married { "M" } else { "S" });
    w.arr("communication", |w| {
        w.item_obj(|w| concept(w, "language", "urn:ietf:bcp:47", "en-US", "English (United States)"))
    });
    w.arr("generalPractitioner", |w| w.item_obj(|w| reference_body(w, T::Practitioner, practitioner)));
    reference(w, "managingOrganization", T::Organization, Synthetic::provider_org(provider));
}

/// Practitioner.
pub fn practitioner(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let non_ascii = c.non_ascii(T::Practitioner);
    let mut r = c.pick(T::Practitioner, 1);
    let female = r.below(2) == 0;
    let given = *r.choose(given_names(female, non_ascii));
    let family = *r.choose(family_names(non_ascii));
    w.arr("identifier", |w| {
        w.item_obj(|w| {
            w.str("system", NPI);
            w.str_num("value", "", 1_000_000_000 + c.idx * 7 % 999_999_999);
        })
    });
    w.bool("active", true);
    w.arr("name", |w| {
        w.item_obj(|w| {
            w.str("family", family);
            w.arr("given", |w| w.item_str(given));
            w.arr("prefix", |w| w.item_str("Dr."));
        })
    });
    phone(w, &mut r, "work");
    address(w, &mut r, non_ascii);
    w.str("gender", if female { "female" } else { "male" });
}

/// Organization: every third one is a payer, the others providers (named
/// after the city of their address).
pub fn organization(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let mut r = c.pick(T::Organization, 1);
    let payer = c.idx.is_multiple_of(3);
    let city = r.choose(CITIES);
    let name = if payer {
        let base = PAYER_NAMES[(c.idx / 3) as usize % PAYER_NAMES.len()];
        match c.idx / 3 / PAYER_NAMES.len() as u64 {
            0 => base.to_string(),
            n => format!("{base} {}", n + 1),
        }
    } else {
        format!("{} {}", city.0, r.choose(PROVIDER_NAMES))
    };
    w.arr("identifier", |w| {
        w.item_obj(|w| {
            w.str("system", NPI);
            w.str_num("value", "", 1_900_000_000 + c.idx);
        })
    });
    w.bool("active", true);
    let (code, display) = if payer { ("pay", "Payer") } else { ("prov", "Healthcare Provider") };
    concepts(w, "type", &format!("{THO}organization-type"), code, display);
    w.str("name", &name);
    phone(w, &mut r, "work");
    let non_ascii = c.non_ascii(T::Organization);
    w.arr("address", |w| w.item_obj(|w| address_fields(w, &mut r, city, non_ascii)));
}

/// Location: one per provider organisation. `address` is a single Address
/// (0..1 in R4), in the city the name mentions.
pub fn location(c: &Ctx<'_>, w: &mut JsonWriter<'_>) {
    let non_ascii = c.non_ascii(T::Location);
    let mut r = c.pick(T::Location, 1);
    let city = r.choose(CITIES);
    w.str("status", "active");
    w.str_parts("name", &[city.0, " ", *r.choose(streets(non_ascii)), " Clinic"]);
    w.str("mode", "instance");
    phone(w, &mut r, "work");
    w.obj("address", |w| address_fields(w, &mut r, city, non_ascii));
    reference(w, "managingOrganization", T::Organization, Synthetic::provider_org(c.idx));
}

/// Group: members are listed up to [`MAX_LISTED_MEMBERS`]; `quantity` is always exact.
pub fn group(g: &GroupDef, w: &mut JsonWriter<'_>) {
    w.arr("identifier", |w| {
        w.item_obj(|w| {
            w.str("system", GROUP_IDENTIFIER_SYSTEM);
            w.str("value", &g.identifier);
        })
    });
    w.bool("active", true);
    w.str("type", "person");
    w.bool("actual", true);
    w.str("name", &g.name);
    w.uint("quantity", g.members.len());
    if !g.members.is_empty() && g.members.len() <= MAX_LISTED_MEMBERS {
        w.arr("member", |w| {
            for p in g.members.iter() {
                w.item_obj(|w| reference(w, "entity", T::Patient, p));
            }
        });
    }
}
