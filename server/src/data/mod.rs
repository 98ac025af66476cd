//! Where exported resources come from.
//!
//! A [`DataSource`] answers every question an export needs without holding the
//! export in memory: which types exist, which resources belong to which patient,
//! each resource's `meta.lastUpdated` and deletion state (cheap), and the JSON of
//! any single resource on demand. Two sources exist: the deterministic
//! [`synthetic::Synthetic`] population (the default) and [`folder::Folder`], a
//! user's own NDJSON files.

pub mod clock;
pub mod created;
pub mod folder;
pub mod json;
mod patient_set;
pub mod revision;
pub mod synthetic;

use std::ops::Range;
use std::sync::Arc;

pub use patient_set::PatientSet;

/// Index of a resource type within [`DataSource::types`].
pub type TypeIdx = usize;

/// What a source knows about one of its resource types.
#[derive(Debug, Clone)]
pub struct TypeInfo {
    /// The FHIR resource type name, e.g. `Observation`.
    pub name: String,
    /// Whether resources of this type belong to a patient (Patient compartment).
    pub in_patient_compartment: bool,
}

/// The cheap facts about one resource: enough to apply `_since`, `_until`
/// and deletion without generating the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `meta.lastUpdated` (for a deleted resource: when it was deleted), Unix seconds.
    pub last_updated: i64,
    /// Whether the resource has been deleted (it then appears only in `deleted` files).
    pub deleted: bool,
}

/// A Group that can be exported with `Group/[id]/$export`.
#[derive(Debug, Clone)]
pub struct GroupDef {
    /// Logical id.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Business identifier value (system [`GROUP_IDENTIFIER_SYSTEM`]).
    pub identifier: String,
    /// Member patients.
    pub members: PatientSet,
}

/// The identifier system of built-in Groups.
pub const GROUP_IDENTIFIER_SYSTEM: &str = "https://bulkmock.dev/fhir/group-id";

/// A source of exportable FHIR resources. Implementations must be pure:
/// the same arguments always give the same answer.
pub trait DataSource: Send + Sync + 'static {
    /// Every resource type this source can export, in output order.
    fn types(&self) -> &[TypeInfo];
    /// Number of patients.
    fn patient_count(&self) -> u64;
    /// Logical id of patient number `p`.
    fn patient_id(&self, p: u64) -> String;
    /// Patient number of a logical id.
    fn patient_index(&self, id: &str) -> Option<u64>;
    /// The Groups that can be exported.
    fn groups(&self) -> &[GroupDef];
    /// For a compartment type: the indices of patient `p`'s resources of that type.
    fn patient_resources(&self, ty: TypeIdx, p: u64) -> Range<u64>;
    /// For a type outside the Patient compartment: how many resources it has.
    fn standalone_count(&self, ty: TypeIdx) -> u64;
    /// Cheap facts about resource `idx` of type `ty`.
    fn header(&self, ty: TypeIdx, idx: u64) -> Header;
    /// Logical id of resource `idx` of type `ty`.
    fn resource_id(&self, ty: TypeIdx, idx: u64) -> String;
    /// Appends the resource's JSON (one line, no newline) to `out`.
    fn write_resource(&self, ty: TypeIdx, idx: u64, out: &mut Vec<u8>) -> std::io::Result<()>;
    /// The content of an attachment URL (`attachments/{id}`): media type and bytes.
    fn attachment(&self, id: &str) -> Option<(String, Vec<u8>)>;

    /// Index of a type by name.
    fn type_index(&self, name: &str) -> Option<TypeIdx> {
        self.types().iter().position(|t| t.name == name)
    }
    /// A Group by id.
    fn group(&self, id: &str) -> Option<&GroupDef> {
        self.groups().iter().find(|g| g.id == id)
    }
    /// This view's revision (see [`revision`]); 0 for sources that never change.
    fn revision(&self) -> u64 {
        0
    }
    /// `T_r`, the time of this view's revision: no resource changed after it.
    /// `None` for sources without a timeline (a job then takes the server clock).
    fn revision_time(&self) -> Option<i64> {
        None
    }
    /// The same data set at revision `revision`; `None` when the source does
    /// not change over time (`--data`).
    fn at_revision(&self, revision: u64) -> Option<Arc<dyn DataSource>> {
        let _ = revision;
        None
    }
}
