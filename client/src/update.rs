//! Keeping a state folder up to date with incremental pulls (CLI-054, CLI-087):
//! [`Client::update`] is the whole pattern of [`crate::incremental`] in one call.

use std::collections::BTreeSet;
use std::path::Path;

use reqwest::Method;

use crate::incremental::{self, Applied};
use crate::{Client, ClientError, ExportRequest, Level, Summary};

/// The kept manifest of a state folder: its `transactionTime` is the next `_since`.
pub const KEPT_MANIFEST: &str = "manifest.json";
/// The members a Group state was last brought up to date with.
pub const KEPT_MEMBERS: &str = "members.json";
/// Where an update's exports go before they are applied (removed afterwards).
const DELTA: &str = ".incremental";
const JOINED: &str = ".incremental-joined";

/// What [`Client::update`] did.
#[derive(Debug, Clone)]
pub struct Updated {
    /// `None` for the first run (a full export); else the `_since` sent.
    pub since: Option<String>,
    /// The summary of the (full or `_since`) export.
    pub summary: Summary,
    /// What applying the changes did (zero for a full export).
    pub applied: Applied,
    /// Group members that joined and were exported with `patient`.
    pub joined: Vec<String>,
    /// Group members that left and whose resources were removed.
    pub left: Vec<String>,
}

impl Client {
    /// Brings the state folder `dir` up to date for `request`:
    ///
    /// - without `dir/manifest.json`, a full export into `dir` (which must hold no export);
    /// - else an export with `_since` = that manifest's `transactionTime` (CLI-054,
    ///   never the client's clock) into `dir/.incremental`, applied to `dir`:
    ///   resources upserted by id, `deleted` entries removed (CLI-087); the new
    ///   manifest becomes the kept one.
    ///
    /// For a Group, membership changes too: the Group's members are read before
    /// each export and kept in `dir/members.json`; members that joined are exported
    /// with `patient` (no `_since`: their older data too) and members that left are
    /// removed with their resources. Both exports finish before anything is
    /// applied, so a failed update leaves `dir` as it was.
    pub async fn update(&self, request: &ExportRequest, dir: &Path) -> Result<Updated, ClientError> {
        let io_at = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ClientError::Io { path, source }
        };
        let kept = dir.join(KEPT_MANIFEST);
        let members_file = dir.join(KEPT_MEMBERS);
        let group = match &request.level {
            Level::Group(id) => Some(id.clone()),
            _ => None,
        };
        let members_now = match &group {
            Some(id) => Some(self.group_members(id).await?),
            None => None,
        };
        if !kept.exists() {
            let summary = self.export(request, dir).await?;
            if let Some(members) = &members_now {
                write_members(&members_file, members).map_err(io_at(&members_file))?;
            }
            return Ok(Updated { since: None, summary, applied: Applied::default(), joined: vec![], left: vec![] });
        }
        let previous: serde_json::Value = serde_json::from_slice(&std::fs::read(&kept).map_err(io_at(&kept))?)
            .map_err(|e| ClientError::Protocol(format!("{} is not a manifest: {e}", kept.display())))?;
        let since = previous["transactionTime"].as_str().filter(|t| !t.is_empty()).ok_or_else(|| {
            ClientError::Protocol(format!("{} has no transactionTime to continue from", kept.display()))
        })?;
        let mut changes = request.clone();
        changes.since = Some(since.to_string());
        let delta = dir.join(DELTA);
        let joined_dir = dir.join(JOINED);
        for leftover in [&delta, &joined_dir] {
            // What an interrupted update left: never applied, so safe to drop.
            if leftover.exists() {
                std::fs::remove_dir_all(leftover).map_err(io_at(leftover))?;
            }
        }
        let summary = self.export(&changes, &delta).await?;
        let (mut joined, mut left) = (Vec::new(), Vec::new());
        if let Some(now) = &members_now {
            let before = read_members(&members_file).map_err(io_at(&members_file))?;
            joined = now.difference(&before).cloned().collect();
            left = before.difference(now).cloned().collect();
            if !joined.is_empty() {
                let mut newcomers = request.clone();
                newcomers.since = None;
                newcomers.patients = joined.clone();
                newcomers.post = true;
                self.export(&newcomers, &joined_dir).await?;
            }
        }
        let mut applied = incremental::apply(dir, &delta).map_err(io_at(dir))?;
        if joined_dir.exists() {
            let more = incremental::apply(dir, &joined_dir).map_err(io_at(dir))?;
            applied.upserted += more.upserted;
            applied.deleted += more.deleted;
        }
        if !left.is_empty() {
            incremental::remove_patients(dir, &left).map_err(io_at(dir))?;
        }
        std::fs::rename(delta.join(KEPT_MANIFEST), &kept).map_err(io_at(&kept))?;
        if let Some(members) = &members_now {
            write_members(&members_file, members).map_err(io_at(&members_file))?;
        }
        for done in [&delta, &joined_dir] {
            if done.exists() {
                std::fs::remove_dir_all(done).map_err(io_at(done))?;
            }
        }
        Ok(Updated { since: Some(since.to_string()), summary, applied, joined, left })
    }

    /// The member references (`Patient/...`) of Group `id`, read with `GET Group/id`
    /// (or, when that answers 404, of the Group a Group search finds under that name).
    async fn group_members(&self, id: &str) -> Result<BTreeSet<String>, ClientError> {
        match self.read_group(id).await {
            Err(e) if crate::client::status_of(&e) == Some(404) => match self.find_group(id).await? {
                Some(found) if found != id => self.read_group(&found).await,
                _ => Err(e),
            },
            other => other,
        }
    }

    async fn read_group(&self, id: &str) -> Result<BTreeSet<String>, ClientError> {
        let url = self.inner.base.join(&format!("Group/{id}")).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let sent = self
            .inner
            .http
            .send(Method::GET, url.as_str(), true, |b| b.header("Accept", "application/fhir+json"))
            .await?;
        let status = sent.response.status().as_u16();
        let body = sent.response.bytes().await.unwrap_or_default().to_vec();
        if status != 200 {
            return Err(ClientError::from_body(status, url.as_str(), body));
        }
        let group: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(format!("Group/{id} is not JSON: {e}")))?;
        Ok(group["member"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["inactive"].as_bool() != Some(true))
            .filter_map(|m| m["entity"]["reference"].as_str().map(str::to_string))
            .collect())
    }
}

fn read_members(path: &Path) -> std::io::Result<BTreeSet<String>> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| std::io::Error::other(format!("not a member list: {e}")))
}

fn write_members(path: &Path, members: &BTreeSet<String>) -> std::io::Result<()> {
    let temporary = path.with_extension("json.partial");
    std::fs::write(&temporary, serde_json::to_vec_pretty(members).map_err(std::io::Error::other)?)?;
    std::fs::rename(&temporary, path)
}
