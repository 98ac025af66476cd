//! Quirk profiles: named, composable presets that make the server speak a
//! production dialect. Each quirk is a behaviour on the wire, named by what it
//! does (never by a vendor); `docs/quirks.md` describes each one, the
//! requirement IDs it touches and how the reference client copes.
//!
//! Quirks come from four places and add up: the server (`serve --quirks`,
//! [`crate::ServerConfig::quirks`]), a scenario's `[server] quirks`, a
//! registered client (`"quirks": [...]`) and a profile URL
//! (`/p/quirks:a,b/fhir`, or `"quirks"` in a profile plan).

mod groups;
mod queue;

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use groups::{logical_group_id, technical_group_id};
pub use queue::{LONG_QUEUE_DURATION, LONG_QUEUE_RETRY_AFTER};

/// One production behaviour the server can take on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Quirk {
    /// v1 scopes with capitalised permission letters (`system/Patient.Read`)
    /// are accepted and echoed as asked in the token response.
    CapitalisedScopes,
    /// Jobs stay in progress for an hour (times the time factor) and ask for
    /// long waits in `Retry-After`.
    LongQueue,
    /// Groups answer only to a technical id; the logical id answers 404. A
    /// Group search (by `identifier` or `name`) finds the technical id.
    TechnicalGroupIds,
    /// JWKS URLs must be https: a client registered with an http JWKS URL
    /// gets `invalid_client` at the token endpoint.
    HttpsJwksOnly,
    /// `_typeFilter` is accepted and ignored: the export holds more than asked (CLI-048, SRV-093).
    IgnoresTypeFilter,
    /// `_type` values the token does not cover are dropped silently instead of a 403.
    OmitsUnauthorisedTypes,
    /// `_until` is not supported: 400 naming it, or ignored under `handling=lenient` (SRV-064).
    NoUntil,
    /// Only GET kick-offs: a POST kick-off answers 405 with `Allow: GET`.
    GetKickoffOnly,
    /// `_outputFormat` is required: a kick-off without it answers 400 naming it.
    OutputFormatRequired,
    /// Manifests in the v4-ballot shape (`outcome` instead of `error`, no `request`, `manifestType`).
    V4BallotManifest,
}

impl Quirk {
    /// Every quirk, in documentation order.
    pub const ALL: &'static [Quirk] = &[
        Quirk::CapitalisedScopes,
        Quirk::LongQueue,
        Quirk::TechnicalGroupIds,
        Quirk::HttpsJwksOnly,
        Quirk::IgnoresTypeFilter,
        Quirk::OmitsUnauthorisedTypes,
        Quirk::NoUntil,
        Quirk::GetKickoffOnly,
        Quirk::OutputFormatRequired,
        Quirk::V4BallotManifest,
    ];

    /// The kebab-case name used in flags, scenario files, registrations and URLs.
    pub fn name(self) -> &'static str {
        match self {
            Quirk::CapitalisedScopes => "capitalised-scopes",
            Quirk::LongQueue => "long-queue",
            Quirk::TechnicalGroupIds => "technical-group-ids",
            Quirk::HttpsJwksOnly => "https-jwks-only",
            Quirk::IgnoresTypeFilter => "ignores-type-filter",
            Quirk::OmitsUnauthorisedTypes => "omits-unauthorised-types",
            Quirk::NoUntil => "no-until",
            Quirk::GetKickoffOnly => "get-kickoff-only",
            Quirk::OutputFormatRequired => "output-format-required",
            Quirk::V4BallotManifest => "v4-ballot-manifest",
        }
    }

    /// Every name, comma-separated (for error messages).
    pub fn names() -> String {
        Quirk::ALL.iter().map(|q| q.name()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Quirk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Quirk {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quirk::ALL
            .iter()
            .copied()
            .find(|q| q.name() == s)
            .ok_or_else(|| format!("unknown quirk {s:?}; valid quirks: {}", Quirk::names()))
    }
}

/// A set of quirks, with the time factor of `long-queue` (`long-queue=0.001`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quirks {
    set: BTreeSet<Quirk>,
    /// Scales the long queue's duration and `Retry-After` (`long-queue=F`); `None` is 1.
    time_factor: Option<f64>,
}

impl Quirks {
    /// No quirk: the strict server.
    pub fn none() -> Quirks {
        Quirks::default()
    }

    /// Whether `quirk` is on.
    pub fn has(&self, quirk: Quirk) -> bool {
        self.set.contains(&quirk)
    }

    /// Whether no quirk is on.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// The quirks, in documentation order.
    pub fn iter(&self) -> impl Iterator<Item = Quirk> + '_ {
        self.set.iter().copied()
    }

    /// Turns `quirk` on.
    pub fn with(mut self, quirk: Quirk) -> Quirks {
        self.set.insert(quirk);
        self
    }

    /// The time factor of `long-queue` (1 unless given).
    pub fn time_factor(&self) -> f64 {
        self.time_factor.unwrap_or(1.0)
    }

    /// Sets the time factor of `long-queue` (and turns it on).
    pub fn with_time_factor(mut self, factor: f64) -> Quirks {
        self.set.insert(Quirk::LongQueue);
        self.time_factor = Some(factor);
        self
    }

    /// Both sets together; `other`'s time factor wins when it gives one
    /// (the more specific source: profile over client over server).
    pub fn union(&self, other: &Quirks) -> Quirks {
        Quirks {
            set: self.set.union(&other.set).copied().collect(),
            time_factor: other.time_factor.or(self.time_factor),
        }
    }

    /// Parses a comma list (`long-queue=0.01,no-until`); the error names the
    /// bad item and lists the valid names.
    pub fn parse(list: &str) -> Result<Quirks, String> {
        Quirks::from_items(list.split(',').map(str::trim).filter(|s| !s.is_empty()))
    }

    /// Parses items such as `no-until` or `long-queue=0.01`.
    pub fn from_items<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Quirks, String> {
        let mut quirks = Quirks::default();
        for item in items {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (item.trim(), None),
            };
            let quirk: Quirk = name.parse()?;
            match (quirk, value) {
                (_, None) => quirks.set.insert(quirk),
                (Quirk::LongQueue, Some(v)) => {
                    let factor: f64 = v.parse().ok().filter(|f: &f64| f.is_finite() && *f > 0.0).ok_or_else(|| {
                        format!("long-queue={v}: the time factor must be a positive number (e.g. long-queue=0.001)")
                    })?;
                    quirks.time_factor = Some(factor);
                    quirks.set.insert(quirk)
                }
                (_, Some(_)) => return Err(format!("quirk {name} takes no value (only long-queue=F does)")),
            };
        }
        Ok(quirks)
    }

    /// The items as written (`long-queue=0.01` when a factor was given).
    pub fn items(&self) -> Vec<String> {
        self.iter()
            .map(|q| match (q, self.time_factor) {
                (Quirk::LongQueue, Some(f)) => format!("long-queue={f}"),
                _ => q.name().to_string(),
            })
            .collect()
    }
}

impl fmt::Display for Quirks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.items().join(","))
    }
}

impl FromStr for Quirks {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quirks::parse(s)
    }
}

/// Quirks serialise as a list of items (`["no-until", "long-queue=0.01"]`).
impl Serialize for Quirks {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.items().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Quirks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<String>::deserialize(d)?;
        Quirks::from_items(items.iter().map(String::as_str)).map_err(serde::de::Error::custom)
    }
}

/// The quirks of the profile URL a request came through (set by `faults::profile::layer`).
#[derive(Debug, Clone, Default)]
pub struct ProfileQuirks(pub Quirks);

/// The quirks in force for one request: the server's, the client's (by id)
/// and the profile's, together.
pub fn effective(state: &crate::app::AppState, client_id: Option<&str>, profile: Option<&ProfileQuirks>) -> Quirks {
    let mut quirks = state.config.quirks.clone();
    if let (Some(auth), Some(id)) = (&state.auth, client_id)
        && let Some(client) = auth.registry.get(id)
    {
        quirks = quirks.union(&client.quirks);
    }
    if let Some(p) = profile {
        quirks = quirks.union(&p.0);
    }
    quirks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_valid_ones() {
        for q in Quirk::ALL {
            assert_eq!(q.name().parse::<Quirk>().unwrap(), *q);
        }
        let err = Quirks::parse("no-until,vendor-x").unwrap_err();
        assert!(err.contains("\"vendor-x\""), "{err}");
        assert!(err.contains("capitalised-scopes") && err.contains("v4-ballot-manifest"), "{err}");
        assert!(Quirks::parse("no-until=3").unwrap_err().contains("takes no value"));
        assert!(Quirks::parse("long-queue=-1").unwrap_err().contains("positive"));
    }

    #[test]
    fn lists_compose_and_keep_the_time_factor() {
        let q = Quirks::parse(" no-until , long-queue=0.01,no-until").unwrap();
        assert!(q.has(Quirk::NoUntil) && q.has(Quirk::LongQueue) && !q.has(Quirk::GetKickoffOnly));
        assert_eq!(q.time_factor(), 0.01);
        assert_eq!(q.to_string(), "long-queue=0.01,no-until");
        let more = Quirks::parse("get-kickoff-only").unwrap();
        let both = q.union(&more);
        assert_eq!(both.to_string(), "long-queue=0.01,no-until,get-kickoff-only");
        assert_eq!(Quirks::parse("").unwrap(), Quirks::none());
        let json: Quirks = serde_json::from_str(r#"["long-queue=0.5","no-until"]"#).unwrap();
        assert_eq!(serde_json::to_string(&json).unwrap(), r#"["long-queue=0.5","no-until"]"#);
    }
}
