//! Groups created with `POST /Group` (per client), and the view that adds
//! them to a data set for their owner only.
//!
//! A created Group's members are fixed when it is created (a `member` list,
//! or the patients of the revision current then that match its
//! characteristics). Only its owner sees it: in Group read and search, in
//! `Group/[id]/$export` and as a Group resource of its system exports.
//! Admin reset clears them.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::json::JsonWriter;
use super::{DataSource, GROUP_IDENTIFIER_SYSTEM, GroupDef, Header, TypeIdx, TypeInfo};

/// A Group a client created.
#[derive(Debug, Clone)]
pub struct CreatedGroup {
    /// Id, name, identifier and members.
    pub def: GroupDef,
    /// When it was created (server clock): its `meta.lastUpdated`.
    pub created: i64,
    /// The `characteristic` array it was created with, echoed when read.
    pub characteristic: Option<Value>,
}

/// The created Groups of one server, by owner (`None`: authorization off).
#[derive(Default)]
pub struct CreatedGroups {
    by_owner: Mutex<HashMap<Option<String>, Vec<Arc<CreatedGroup>>>>,
    next: std::sync::atomic::AtomicU64,
}

impl CreatedGroups {
    /// A fresh id: `created-1`, `created-2`, ... in creation order.
    pub fn next_id(&self) -> String {
        format!("created-{}", self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1)
    }

    /// Stores a group for `owner`.
    pub fn insert(&self, owner: Option<&str>, group: CreatedGroup) {
        self.by_owner.lock().expect("groups").entry(owner.map(str::to_string)).or_default().push(Arc::new(group));
    }

    /// Forgets every created Group (admin reset).
    pub fn clear(&self) {
        self.by_owner.lock().expect("groups").clear();
    }

    /// `base` as `owner` sees it: `base` itself when the owner created no Group.
    pub fn view(&self, base: Arc<dyn DataSource>, owner: Option<&str>) -> Arc<dyn DataSource> {
        let owned = self.by_owner.lock().expect("groups").get(&owner.map(str::to_string)).cloned().unwrap_or_default();
        if owned.is_empty() {
            return base;
        }
        let mut groups = base.groups().to_vec();
        groups.extend(owned.iter().map(|g| g.def.clone()));
        let group_type = base.type_index("Group");
        Arc::new(WithCreated { base, created: owned, groups, group_type })
    }
}

/// A data set plus one owner's created Groups (appended after the built-in ones).
struct WithCreated {
    base: Arc<dyn DataSource>,
    created: Vec<Arc<CreatedGroup>>,
    groups: Vec<GroupDef>,
    group_type: Option<TypeIdx>,
}

impl WithCreated {
    /// The created Group behind resource `idx` of type `ty`, if it is one.
    fn created(&self, ty: TypeIdx, idx: u64) -> Option<&CreatedGroup> {
        if Some(ty) != self.group_type {
            return None;
        }
        let first = self.base.standalone_count(ty);
        idx.checked_sub(first).and_then(|i| self.created.get(i as usize)).map(Arc::as_ref)
    }
}

/// Writes a created Group as a FHIR Group resource.
pub fn write_group(g: &CreatedGroup, patient_id: &dyn Fn(u64) -> String, out: &mut Vec<u8>) {
    let mut characteristic = Vec::new();
    if let Some(c) = &g.characteristic {
        serde_json::to_writer(&mut characteristic, c).expect("JSON value");
    }
    JsonWriter::object(out, |w| {
        w.str("resourceType", "Group");
        w.str("id", &g.def.id);
        w.obj("meta", |w| w.instant("lastUpdated", g.created));
        w.arr("identifier", |w| {
            w.item_obj(|w| {
                w.str("system", GROUP_IDENTIFIER_SYSTEM);
                w.str("value", &g.def.identifier);
            })
        });
        w.bool("active", true);
        w.str("type", "person");
        w.bool("actual", true);
        w.str("name", &g.def.name);
        w.uint("quantity", g.def.members.len());
        if !g.def.members.is_empty() {
            w.arr("member", |w| {
                for p in g.def.members.iter() {
                    w.item_obj(|w| w.obj("entity", |w| w.str("reference", &format!("Patient/{}", patient_id(p)))));
                }
            });
        }
    });
    if !characteristic.is_empty() {
        // Splice `"characteristic":[...]` before the closing brace.
        out.pop();
        out.extend_from_slice(b",\"characteristic\":");
        out.extend_from_slice(&characteristic);
        out.push(b'}');
    }
}

impl DataSource for WithCreated {
    fn types(&self) -> &[TypeInfo] {
        self.base.types()
    }
    fn patient_count(&self) -> u64 {
        self.base.patient_count()
    }
    fn patient_id(&self, p: u64) -> String {
        self.base.patient_id(p)
    }
    fn patient_index(&self, id: &str) -> Option<u64> {
        self.base.patient_index(id)
    }
    fn groups(&self) -> &[GroupDef] {
        &self.groups
    }
    fn patient_resources(&self, ty: TypeIdx, p: u64) -> Range<u64> {
        self.base.patient_resources(ty, p)
    }
    fn standalone_count(&self, ty: TypeIdx) -> u64 {
        let extra = if Some(ty) == self.group_type { self.created.len() as u64 } else { 0 };
        self.base.standalone_count(ty) + extra
    }
    fn header(&self, ty: TypeIdx, idx: u64) -> Header {
        match self.created(ty, idx) {
            Some(g) => Header { last_updated: g.created, deleted: false },
            None => self.base.header(ty, idx),
        }
    }
    fn resource_id(&self, ty: TypeIdx, idx: u64) -> String {
        match self.created(ty, idx) {
            Some(g) => g.def.id.clone(),
            None => self.base.resource_id(ty, idx),
        }
    }
    fn write_resource(&self, ty: TypeIdx, idx: u64, out: &mut Vec<u8>) -> std::io::Result<()> {
        match self.created(ty, idx) {
            Some(g) => {
                write_group(g, &|p| self.base.patient_id(p), out);
                Ok(())
            }
            None => self.base.write_resource(ty, idx, out),
        }
    }
    fn attachment(&self, id: &str) -> Option<(String, Vec<u8>)> {
        self.base.attachment(id)
    }
    fn revision(&self) -> u64 {
        self.base.revision()
    }
    fn revision_time(&self) -> Option<i64> {
        self.base.revision_time()
    }
}
