//! Where each file's current URL lives. File URLs may expire (403/404/410);
//! fetching the manifest page again gives fresh ones (CLI-080). Many downloads
//! may hit an expired URL at once: the first fetches, the others reuse its result.

use std::collections::HashMap;

use bulkmock_wire::{Manifest, ManifestFile};

use crate::client::Inner;
use crate::error::ClientError;
use crate::events::Event;
use crate::job::{Poll, poll_once};

/// Which list of the manifest a file is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// `output`.
    Output,
    /// `deleted`.
    Deleted,
    /// `error` (`outcome` in the v4 ballot).
    Error,
}

/// A file's place: manifest page, list and position.
#[derive(Debug, Clone)]
pub(crate) struct FileRef {
    /// The URL of the manifest page listing it.
    pub page_url: String,
    /// The list.
    pub group: Group,
    /// Position in the list.
    pub index: usize,
}

/// A file's URL as last seen, and whether it needs the token.
#[derive(Debug, Clone)]
pub(crate) struct Location {
    /// The URL.
    pub url: String,
    /// `requiresAccessToken` of the manifest it came from (CLI-081, CLI-082).
    pub requires_token: bool,
    /// How often the page was fetched again before this URL was read.
    pub generation: u64,
}

struct Page {
    generation: u64,
    manifest: Manifest,
}

/// The latest manifest of every page.
#[derive(Default)]
pub(crate) struct UrlBook {
    pages: tokio::sync::Mutex<HashMap<String, Page>>,
    /// Pages recorded by the poller before any download asked (no await needed).
    fresh: std::sync::Mutex<Vec<(String, Manifest)>>,
}

fn file_at<'m>(manifest: &'m Manifest, place: &FileRef) -> Option<&'m ManifestFile> {
    match place.group {
        Group::Output => manifest.output.get(place.index),
        Group::Deleted => manifest.deleted.as_ref()?.get(place.index),
        Group::Error => manifest.error.get(place.index),
    }
}

impl UrlBook {
    /// Keeps the newest copy of a page the poller saw.
    pub fn record(&self, page_url: &str, manifest: &Manifest) {
        if let Ok(mut fresh) = self.fresh.lock() {
            fresh.push((page_url.to_string(), manifest.clone()));
        }
    }

    async fn pages(&self) -> tokio::sync::MutexGuard<'_, HashMap<String, Page>> {
        let mut pages = self.pages.lock().await;
        let fresh = self.fresh.lock().map(|mut f| std::mem::take(&mut *f)).unwrap_or_default();
        for (url, manifest) in fresh {
            let generation = pages.get(&url).map_or(0, |p| p.generation);
            pages.insert(url, Page { generation, manifest });
        }
        pages
    }

    /// The file's current location.
    pub async fn current(&self, place: &FileRef) -> Result<Location, ClientError> {
        let pages = self.pages().await;
        locate(&pages, place)
    }

    /// A fresh location after `stale` stopped working: the page is fetched again
    /// unless another download already did so since `stale` was read.
    pub async fn renew(&self, inner: &Inner, place: &FileRef, stale: &Location) -> Result<Location, ClientError> {
        let mut pages = self.pages().await;
        if pages.get(&place.page_url).is_some_and(|p| p.generation > stale.generation) {
            return locate(&pages, place);
        }
        let mut polls = 0;
        let manifest = loop {
            match poll_once(inner, &place.page_url).await? {
                Poll::Page { manifest, .. } => break *manifest,
                Poll::Running { wait, .. } => {
                    polls += 1;
                    if polls >= inner.policy.max_attempts {
                        return Err(ClientError::Protocol(format!(
                            "{} answered 'in progress' again and again when fetched for fresh file URLs",
                            place.page_url
                        )));
                    }
                    tokio::time::sleep(inner.waits.next(wait, polls)).await;
                }
            }
        };
        inner.emit(Event::UrlsRenewed { url: place.page_url.clone() });
        pages.insert(place.page_url.clone(), Page { generation: stale.generation + 1, manifest });
        locate(&pages, place)
    }
}

fn locate(pages: &HashMap<String, Page>, place: &FileRef) -> Result<Location, ClientError> {
    let page = pages
        .get(&place.page_url)
        .ok_or_else(|| ClientError::Protocol(format!("no manifest recorded for {}", place.page_url)))?;
    let file = file_at(&page.manifest, place).ok_or_else(|| {
        ClientError::Protocol(format!(
            "the manifest at {} no longer lists file {} of {:?}",
            place.page_url, place.index, place.group
        ))
    })?;
    Ok(Location {
        url: file.url.clone(),
        requires_token: page.manifest.requires_access_token,
        generation: page.generation,
    })
}
