//! SMART scopes: parsing v1 and v2 `system/` scopes, granting the valid
//! read-only subset, and answering "may this token read type T?" (AUTH-060..070, E-14, E-15).
//!
//! Parsing is exact and case-sensitive. A request may name types this server
//! lacks, contexts other than `system`, or write permissions: those scopes
//! are dropped (and said why), and the request fails with `invalid_scope`
//! only when nothing grantable remains.
//!
//! The `capitalised-scopes` quirk (`docs/quirks.md`) speaks the v1 dialect of
//! servers that write permissions with a capital (`system/Patient.Read`): such
//! scopes are accepted, and every granted v1 scope is echoed that way.

use crate::export::type_filter::TypeQuery;

/// The resource part of a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeResource {
    /// `*`: every type.
    All,
    /// One resource type.
    Type(String),
}

/// One granted scope.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeEntry {
    /// The type or `*`.
    pub resource: ScopeResource,
    /// Read permission (`r`, v1 `read` or `*`).
    pub read: bool,
    /// Search permission (`s`, v1 `read` or `*`).
    pub search: bool,
    /// A v2 search constraint (`?category=laboratory`).
    pub constraint: Option<TypeQuery>,
    /// The scope as granted, in the version it was asked in.
    pub text: String,
}

/// A set of granted scopes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Grant {
    /// The entries, in request order.
    pub entries: Vec<ScopeEntry>,
}

/// Why a requested scope was not granted.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    /// The scope as requested.
    pub scope: String,
    /// Why.
    pub reason: String,
}

const V2_LETTERS: &str = "cruds";

impl Grant {
    /// Parses a space-separated scope request into what can be granted.
    /// `known_type` says which resource types exist; `allowed` is the client's
    /// pre-authorised grant, if registration limited it (AUTH-041).
    pub fn from_request(
        requested: &str,
        known_type: &dyn Fn(&str) -> bool,
        allowed: Option<&Grant>,
    ) -> (Grant, Vec<Dropped>) {
        Grant::from_request_in(requested, known_type, allowed, false)
    }

    /// [`Grant::from_request`] in the capitalised v1 dialect when `capitalised`:
    /// `.Read` is accepted like `.read`, and v1 scopes are granted as `system/Type.Read`.
    pub fn from_request_in(
        requested: &str,
        known_type: &dyn Fn(&str) -> bool,
        allowed: Option<&Grant>,
        capitalised: bool,
    ) -> (Grant, Vec<Dropped>) {
        let mut grant = Grant::default();
        let mut dropped = Vec::new();
        for scope in requested.split_ascii_whitespace() {
            match parse_scope(scope, known_type, capitalised) {
                Err(reason) => dropped.push(Dropped { scope: scope.into(), reason }),
                Ok(entry) if allowed.is_some_and(|a| !a.permits(&entry)) => dropped
                    .push(Dropped { scope: scope.into(), reason: "this client is not pre-authorised for it".into() }),
                Ok(entry) => {
                    if !grant.entries.iter().any(|e| e.text == entry.text) {
                        grant.entries.push(entry);
                    }
                }
            }
        }
        (grant, dropped)
    }

    /// Keeps only the entries `limit` permits (the `narrow_scope` fault), each
    /// in the spelling it was asked in: scopes are compared parsed, so v1
    /// `system/Patient.read` is within v2 `system/Patient.rs` and the other way
    /// round (AUTH-062, AUTH-066). Returns the entries removed, with why.
    pub fn narrow_to(&mut self, limit: &Grant) -> Vec<Dropped> {
        let (kept, removed): (Vec<_>, Vec<_>) = self.entries.drain(..).partition(|e| limit.permits(e));
        self.entries = kept;
        let why = format!("this server grants at most {}", limit.to_scope_string());
        removed.into_iter().map(|e| Dropped { scope: e.text, reason: why.clone() }).collect()
    }

    /// Parses scopes strictly (registration's allowed scopes): any invalid scope is an error.
    pub fn parse_all(scopes: &str, known_type: &dyn Fn(&str) -> bool) -> Result<Grant, String> {
        let (grant, dropped) = Grant::from_request(scopes, known_type, None);
        match dropped.first() {
            Some(d) => Err(format!("scope {:?}: {}", d.scope, d.reason)),
            None if grant.entries.is_empty() => Err("no scopes given".into()),
            None => Ok(grant),
        }
    }

    /// The granted scope string.
    pub fn to_scope_string(&self) -> String {
        self.entries.iter().map(|e| e.text.as_str()).collect::<Vec<_>>().join(" ")
    }

    /// Whether the grant reads `ty` (E-14: a permission containing `r`, or v1 `read`/`*`).
    pub fn can_read(&self, ty: &str) -> bool {
        self.entries.iter().any(|e| e.read && e.covers(ty))
    }

    /// The search constraints on reading `ty`: `None` when some scope reads it
    /// unconstrained, else the constraints (any one must match).
    pub fn constraints(&self, ty: &str) -> Option<Vec<TypeQuery>> {
        let readers: Vec<&ScopeEntry> = self.entries.iter().filter(|e| e.read && e.covers(ty)).collect();
        if readers.iter().any(|e| e.constraint.is_none()) {
            return None;
        }
        Some(readers.into_iter().filter_map(|e| e.constraint.clone()).collect())
    }

    /// Whether this (pre-authorised) grant permits `entry`.
    fn permits(&self, entry: &ScopeEntry) -> bool {
        self.entries.iter().any(|a| {
            let resource_ok = match (&a.resource, &entry.resource) {
                (ScopeResource::All, _) => true,
                (ScopeResource::Type(x), ScopeResource::Type(y)) => x == y,
                (ScopeResource::Type(_), ScopeResource::All) => false,
            };
            let constraint_ok = a.constraint.is_none() || a.constraint == entry.constraint;
            resource_ok && (a.read || !entry.read) && (a.search || !entry.search) && constraint_ok
        })
    }
}

impl ScopeEntry {
    fn covers(&self, ty: &str) -> bool {
        match &self.resource {
            ScopeResource::All => true,
            ScopeResource::Type(t) => t == ty,
        }
    }
}

/// Parses one scope into a read-only grant entry, or says why it cannot be granted.
fn parse_scope(scope: &str, known_type: &dyn Fn(&str) -> bool, capitalised: bool) -> Result<ScopeEntry, String> {
    let (context, rest) = scope
        .split_once('/')
        .ok_or_else(|| "not a SMART resource scope (expected system/Type.permissions)".to_string())?;
    match context {
        "system" => {}
        "patient" | "user" => {
            return Err(format!(
                "{context}/ scopes need a user or launch context; backend services get system/ scopes only (AUTH-060)"
            ));
        }
        other => {
            return Err(format!(
                "unknown scope context {other:?}; contexts are lower-case system, user, patient (AUTH-070)"
            ));
        }
    }
    let (body, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (ty, permissions) = body
        .split_once('.')
        .ok_or_else(|| "missing permissions after the resource type (e.g. .rs or .read)".to_string())?;
    let resource = if ty == "*" {
        ScopeResource::All
    } else if known_type(ty) {
        ScopeResource::Type(ty.to_string())
    } else {
        return Err(format!("this server has no resource type {ty:?} (types are case-sensitive)"));
    };
    let (read, search, text) = match permissions {
        "read" | "*" if !capitalised => (true, true, format!("system/{ty}.read")),
        "read" | "Read" | "*" if capitalised => (true, true, format!("system/{ty}.Read")),
        "write" => return Err("write access is not granted: this server is read-only".into()),
        "Write" if capitalised => return Err("write access is not granted: this server is read-only".into()),
        letters => {
            let valid = !letters.is_empty()
                && letters.chars().all(|c| V2_LETTERS.contains(c))
                && letters.chars().map(|c| V2_LETTERS.find(c)).collect::<Vec<_>>().windows(2).all(|w| w[0] < w[1]);
            if !valid {
                return Err(format!(
                    "permissions {letters:?} are neither v1 (read, write, *) nor v2 (a subset of c r u d s in that order)"
                ));
            }
            let (read, search) = (letters.contains('r'), letters.contains('s'));
            if !read && !search {
                return Err("write access is not granted: this server is read-only".into());
            }
            let granted: String = [(read, 'r'), (search, 's')].iter().filter(|x| x.0).map(|x| x.1).collect();
            let mut text = format!("system/{ty}.{granted}");
            if let Some(q) = query {
                text = format!("{text}?{q}");
            }
            (read, search, text)
        }
    };
    let constraint = match query {
        None => None,
        Some(_) if !text.contains('?') => {
            return Err("search constraints need v2 permissions (e.g. .rs?category=...)".into());
        }
        Some(_) if ty == "*" => return Err("a search constraint needs a resource type, not *".into()),
        Some(q) => {
            Some(TypeQuery::parse(&format!("{ty}?{q}")).map_err(|e| e.replace("_typeFilter", "scope constraint"))?)
        }
    };
    Ok(ScopeEntry { resource, read, search, constraint, text })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(t: &str) -> bool {
        matches!(t, "Patient" | "Observation" | "Group")
    }

    fn grant(s: &str) -> (Grant, Vec<Dropped>) {
        Grant::from_request(s, &known, None)
    }

    #[test]
    fn v1_and_v2_scopes_grant_read_access() {
        let (g, d) = grant("system/Patient.read system/Observation.rs system/*.cruds");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(g.to_scope_string(), "system/Patient.read system/Observation.rs system/*.rs");
        assert!(g.can_read("Group"));
        let (g, _) = grant("system/*.read");
        assert!(g.can_read("Observation"));
    }

    #[test]
    fn unknown_write_and_non_system_scopes_are_dropped_with_reasons() {
        let (g, d) = grant(
            "system/Patient.rs system/Spaceship.read patient/Observation.rs system/Observation.cud launch openid system/Observation.sr system/observation.rs",
        );
        assert_eq!(g.to_scope_string(), "system/Patient.rs");
        let reasons: Vec<&str> = d.iter().map(|x| x.reason.as_str()).collect();
        assert_eq!(d.len(), 7, "{reasons:?}");
        assert!(reasons[0].contains("no resource type \"Spaceship\""));
        assert!(reasons[1].contains("system/ scopes only"));
        assert!(reasons[2].contains("read-only"));
        assert!(reasons[5].contains("in that order"));
    }

    #[test]
    fn capitalised_v1_scopes_are_accepted_and_echoed_only_in_that_dialect() {
        let (g, d) = grant("system/Patient.Read");
        assert!(g.entries.is_empty() && d[0].reason.contains("neither v1"), "{d:?}");
        let (g, d) =
            Grant::from_request_in("system/Patient.Read system/Observation.read system/Group.rs", &known, None, true);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(g.to_scope_string(), "system/Patient.Read system/Observation.Read system/Group.rs");
        assert!(g.can_read("Patient") && g.can_read("Observation"));
        let (_, d) = Grant::from_request_in("system/Patient.Write", &known, None, true);
        assert!(d[0].reason.contains("read-only"));
    }

    #[test]
    fn search_only_does_not_cover_export() {
        let (g, _) = grant("system/Observation.s");
        assert!(!g.can_read("Observation"));
    }

    #[test]
    fn constrained_scopes_carry_their_query() {
        let (g, d) = grant("system/Observation.rs?category=laboratory");
        assert!(d.is_empty());
        assert!(g.can_read("Observation"));
        let c = g.constraints("Observation").unwrap();
        assert_eq!(c.len(), 1);
        let (g, _) = grant("system/Observation.rs?category=laboratory system/Observation.r");
        assert!(g.constraints("Observation").is_none());
    }

    #[test]
    fn narrowing_compares_parsed_scopes_and_keeps_the_requested_spelling() {
        let narrow = |requested: &str, limit: &str| {
            let (mut g, _) = grant(requested);
            let dropped = g.narrow_to(&grant(limit).0);
            (g.to_scope_string(), dropped.iter().map(|d| d.scope.clone()).collect::<Vec<_>>())
        };
        let v1 = "system/Patient.read system/Observation.read system/Group.read";
        let v2 = "system/Patient.rs system/Observation.rs system/Group.rs";
        let both = |v: &str| {
            (v.split(' ').take(2).collect::<Vec<_>>().join(" "), vec![v.split(' ').nth(2).unwrap().to_string()])
        };
        for limit in ["system/Patient.rs system/Observation.rs", "system/Patient.read system/Observation.read"] {
            assert_eq!(narrow(v1, limit), both(v1), "v1 request, limit {limit}");
            assert_eq!(narrow(v2, limit), both(v2), "v2 request, limit {limit}");
        }
        assert_eq!(narrow("system/Patient.rs", "system/*.read").0, "system/Patient.rs", "a wildcard limit");
        assert_eq!(narrow("system/Patient.read", "system/Patient.r").0, "", "read alone does not cover read+search");
    }

    #[test]
    fn pre_authorised_scopes_limit_the_grant() {
        let allowed = Grant::parse_all("system/Patient.rs", &known).unwrap();
        let (g, d) = Grant::from_request("system/Patient.read system/Observation.read", &known, Some(&allowed));
        assert_eq!(g.to_scope_string(), "system/Patient.read");
        assert!(d[0].reason.contains("pre-authorised"));
        assert!(Grant::parse_all("system/Nope.rs", &known).is_err());
    }
}
