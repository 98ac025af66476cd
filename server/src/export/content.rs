//! What goes into each file: the resources a plan selects, one JSON line each.
//!
//! The same selection serves counting (for the manifest `count`) and writing
//! (for downloads), so the two can never disagree. Counting skips generation
//! whenever the cheap [`Header`](crate::data::Header) decides.

use std::collections::HashMap;
use std::io;
use std::ops::ControlFlow;

use serde_json::Value;

use super::plan::{ExportPlan, FileKind, FileSpec, ProvenanceRule};
use crate::data::json::JsonWriter;
use crate::data::{DataSource, Header, TypeIdx};

/// Inside one unit, the lines written so far are handed on once they pass
/// this many bytes, so a patient with thousands of resources (the realistic
/// density) never sits in memory whole. Above any unit of the light density,
/// whose files are cut into chunks exactly as before.
pub const FLUSH_AT: usize = 128 * 1024;

/// Takes the lines written so far (and clears the buffer), or stops the
/// writing with `Break` (the client went away).
pub type Flush<'f> = dyn FnMut(&mut Vec<u8>) -> ControlFlow<()> + 'f;

/// Hands `out` on when it has passed [`FLUSH_AT`].
fn after_line(out: &mut Vec<u8>, flush: &mut Flush<'_>) -> ControlFlow<()> {
    if out.len() >= FLUSH_AT { flush(out) } else { ControlFlow::Continue(()) }
}

/// Selects and writes the lines of a plan's files.
pub struct Selector<'a> {
    plan: &'a ExportPlan,
    source: &'a dyn DataSource,
    provenance: Option<TypeIdx>,
    exported_names: Vec<&'a str>,
    /// The Group type, when the job's Groups go by technical ids (quirk `technical-group-ids`).
    technical_groups: Option<TypeIdx>,
}

impl<'a> Selector<'a> {
    /// A selector for `plan` over `source`.
    pub fn new(plan: &'a ExportPlan, source: &'a dyn DataSource) -> Self {
        let exported_names = plan.types.iter().map(|&t| source.types()[t].name.as_str()).collect();
        let technical_groups =
            plan.quirks.has(crate::quirks::Quirk::TechnicalGroupIds).then(|| source.type_index("Group")).flatten();
        Selector { plan, source, provenance: source.type_index("Provenance"), exported_names, technical_groups }
    }

    fn in_window(&self, h: Header) -> bool {
        self.plan.since.is_none_or(|s| h.last_updated > s) && self.plan.until.is_none_or(|u| h.last_updated <= u)
    }

    fn resources(&self, ty: TypeIdx, unit: u64) -> std::ops::Range<u64> {
        if self.source.types()[ty].in_patient_compartment {
            self.source.patient_resources(ty, self.plan.patients.get(unit))
        } else {
            unit..unit + 1
        }
    }

    /// Whether deciding on a resource of `ty` needs its body (filters, Provenance rule).
    fn decides_on_body(&self, ty: TypeIdx) -> bool {
        self.plan.filters.contains_key(&ty)
            || self.plan.scope_filters.contains_key(&ty)
            || (Some(ty) == self.provenance && self.plan.provenance != ProvenanceRule::All)
    }

    /// Number of resources unit `unit` contributes to `file` (its manifest
    /// `count`, SRV-160): every line, except the `Parameters` header lines of
    /// `organizeOutputBy` blocks (SRV-096), which are not resources of the
    /// export; the SMART reference server counts them the same way.
    pub fn count_unit(&self, file: &FileSpec, unit: u64) -> io::Result<u64> {
        match file.kind {
            FileKind::Output(ty) if !self.decides_on_body(ty) => Ok(self
                .resources(ty, unit)
                .filter(|&i| {
                    let h = self.source.header(ty, i);
                    !h.deleted && self.in_window(h)
                })
                .count() as u64),
            FileKind::Deleted(ty) => {
                Ok(self.resources(ty, unit).filter(|&i| self.is_deleted_in_window(ty, i)).count() as u64)
            }
            _ => {
                let mut sink = Vec::new();
                self.write_unit_chunked(file, unit, &mut sink, &mut |b| {
                    b.clear();
                    ControlFlow::Continue(())
                })
            }
        }
    }

    fn is_deleted_in_window(&self, ty: TypeIdx, idx: u64) -> bool {
        let h = self.source.header(ty, idx);
        h.deleted && self.plan.since.is_some() && self.in_window(h)
    }

    /// Appends the lines of unit `unit` of `file` to `out`; returns how many resources.
    pub fn write_unit(&self, file: &FileSpec, unit: u64, out: &mut Vec<u8>) -> io::Result<u64> {
        self.write_unit_chunked(file, unit, out, &mut |_| ControlFlow::Continue(()))
    }

    /// [`Selector::write_unit`], handing the lines to `flush` whenever `out`
    /// passes [`FLUSH_AT`] within the unit (what is left stays in `out`).
    /// Returns how many resources were written (lines, without block headers),
    /// fewer when `flush` stopped it.
    pub fn write_unit_chunked(
        &self,
        file: &FileSpec,
        unit: u64,
        out: &mut Vec<u8>,
        flush: &mut Flush<'_>,
    ) -> io::Result<u64> {
        match file.kind {
            FileKind::Output(ty) => self.write_resources(ty, unit, out, flush, &mut None),
            FileKind::Deleted(ty) => {
                let mut n = 0;
                for idx in self.resources(ty, unit).filter(|&i| self.is_deleted_in_window(ty, i)) {
                    self.write_deletion(ty, idx, out);
                    n += 1;
                    if after_line(out, flush).is_break() {
                        break;
                    }
                }
                Ok(n)
            }
            FileKind::Organized => self.write_block(unit, out, flush),
        }
    }

    /// A transaction Bundle deleting one resource (SRV-173).
    fn write_deletion(&self, ty: TypeIdx, idx: u64, out: &mut Vec<u8>) {
        let reference = format!("{}/{}", self.source.types()[ty].name, self.source.resource_id(ty, idx));
        let deleted_at = self.source.header(ty, idx).last_updated;
        JsonWriter::object(out, |w| {
            w.str("resourceType", "Bundle");
            w.obj("meta", |w| w.instant("lastUpdated", deleted_at));
            w.str("type", "transaction");
            w.arr("entry", |w| {
                w.item_obj(|w| {
                    w.obj("request", |w| {
                        w.str("method", "DELETE");
                        w.str("url", &reference);
                    })
                })
            });
        });
        out.push(b'\n');
    }

    /// A resource block for one patient: header, Patient, compartment resources
    /// (SRV-096); nothing when the patient has no line. The header goes out
    /// just before the block's first line. Returns the resources written: the
    /// header is a line but not a resource, so it is not counted.
    fn write_block(&self, unit: u64, out: &mut Vec<u8>, flush: &mut Flush<'_>) -> io::Result<u64> {
        let patient = self.source.patient_id(self.plan.patients.get(unit));
        let mut header = Vec::new();
        JsonWriter::object(&mut header, |w| {
            w.str("resourceType", "Parameters");
            w.arr("parameter", |w| {
                w.item_obj(|w| {
                    w.str("name", "header");
                    w.obj("valueReference", |w| w.str("reference", &format!("Patient/{patient}")));
                })
            });
        });
        header.push(b'\n');
        let mut header = Some(header);
        let mut n = 0;
        for &ty in &self.plan.types {
            if self.source.types()[ty].in_patient_compartment {
                n += self.write_resources(ty, unit, out, flush, &mut header)?;
            }
        }
        Ok(n)
    }

    /// Writes the selected resources of `ty` in `unit`; `prefix`, when given,
    /// goes out (once) just before the first line.
    fn write_resources(
        &self,
        ty: TypeIdx,
        unit: u64,
        out: &mut Vec<u8>,
        flush: &mut Flush<'_>,
        prefix: &mut Option<Vec<u8>>,
    ) -> io::Result<u64> {
        let range = self.resources(ty, unit);
        let keep_latest = if Some(ty) == self.provenance && self.plan.provenance == ProvenanceRule::Latest {
            Some(self.latest_provenance(range.clone())?)
        } else {
            None
        };
        let technical = Some(ty) == self.technical_groups;
        let slow = self.decides_on_body(ty) || self.plan.elements.is_some() || technical;
        let mut n = 0;
        let mut scratch = Vec::new();
        for idx in range {
            let h = self.source.header(ty, idx);
            if h.deleted || !self.in_window(h) {
                continue;
            }
            if !slow {
                if let Some(p) = prefix.take() {
                    out.extend_from_slice(&p);
                }
                self.source.write_resource(ty, idx, out)?;
                out.push(b'\n');
                n += 1;
                if after_line(out, flush).is_break() {
                    break;
                }
                continue;
            }
            scratch.clear();
            self.source.write_resource(ty, idx, &mut scratch)?;
            let mut resource: Value = serde_json::from_slice(&scratch).map_err(io::Error::other)?;
            let excluded = |filters: &HashMap<TypeIdx, Vec<super::type_filter::TypeQuery>>| {
                filters.get(&ty).is_some_and(|queries| !queries.iter().any(|q| q.matches(&resource)))
            };
            if excluded(&self.plan.filters) || excluded(&self.plan.scope_filters) {
                continue;
            }
            if Some(ty) == self.provenance {
                let keep = match (&keep_latest, self.plan.provenance) {
                    (Some(latest), _) => latest.contains(&idx),
                    (None, ProvenanceRule::Relevant) => self.targets_exported(&resource),
                    _ => true,
                };
                if !keep {
                    continue;
                }
            }
            if let Some(elements) = &self.plan.elements {
                elements.apply(&mut resource);
            }
            if technical && let Some(id) = resource["id"].as_str() {
                // The id the Group answers to on this server (`GET Group/{id}`).
                resource["id"] = crate::quirks::technical_group_id(id).into();
            }
            if let Some(p) = prefix.take() {
                out.extend_from_slice(&p);
            }
            serde_json::to_writer(&mut *out, &resource).map_err(io::Error::other)?;
            out.push(b'\n');
            n += 1;
            if after_line(out, flush).is_break() {
                break;
            }
        }
        Ok(n)
    }

    /// Whether a Provenance targets a resource of an exported (non-Provenance) type.
    fn targets_exported(&self, provenance: &Value) -> bool {
        target_types(provenance).any(|t| t != "Provenance" && self.exported_names.contains(&t))
    }

    /// Indices among `range` that are the newest Provenance of some exported target.
    fn latest_provenance(&self, range: std::ops::Range<u64>) -> io::Result<Vec<u64>> {
        let Some(ty) = self.provenance else { return Ok(Vec::new()) };
        let mut newest: HashMap<String, (String, u64)> = HashMap::new();
        let mut scratch = Vec::new();
        for idx in range {
            if self.source.header(ty, idx).deleted {
                continue;
            }
            scratch.clear();
            self.source.write_resource(ty, idx, &mut scratch)?;
            let v: Value = serde_json::from_slice(&scratch).map_err(io::Error::other)?;
            let recorded = v.get("recorded").and_then(Value::as_str).unwrap_or_default().to_string();
            for target in v["target"].as_array().into_iter().flatten() {
                let Some(r) = target.get("reference").and_then(Value::as_str) else { continue };
                let ty_name = r.split('/').next().unwrap_or_default();
                if ty_name == "Provenance" || !self.exported_names.contains(&ty_name) {
                    continue;
                }
                let entry = newest.entry(r.to_string()).or_insert_with(|| (recorded.clone(), idx));
                if recorded > entry.0 {
                    *entry = (recorded.clone(), idx);
                }
            }
        }
        let mut keep: Vec<u64> = newest.into_values().map(|(_, i)| i).collect();
        keep.sort_unstable();
        keep.dedup();
        Ok(keep)
    }
}

fn target_types(provenance: &Value) -> impl Iterator<Item = &str> {
    provenance["target"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("reference").and_then(Value::as_str))
        .map(|r| r.split('/').next().unwrap_or_default())
}
