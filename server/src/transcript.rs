//! The transcript: every request and response, the evidence a test or the
//! harness judges. Secrets never appear: tokens and assertions are reduced to
//! a fingerprint; a token request keeps its decoded assertion header and claims.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One request and its response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Exchange {
    /// Order of arrival, from 1.
    pub seq: u64,
    /// Milliseconds since the server started.
    pub at_ms: u64,
    /// Wall-clock time of arrival, Unix milliseconds (to judge `Retry-After` HTTP-dates).
    #[serde(default)]
    pub unix_ms: u64,
    /// The connection the request came on (the client's source port): one id per
    /// open TCP connection; a later connection may get a closed one's port again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<u16>,
    /// The server's serial number of that connection (1, 2, ... per server):
    /// never given to another connection, so requests with the same one shared a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<u64>,
    /// The client, from its bearer token or token request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// What the request is (the fault engine's classification): token,
    /// metadata, kickoff, status, delete, file, attachment; absent for others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<crate::faults::Target>,
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
    /// The query string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Chosen request headers; `authorization` as a fingerprint.
    pub headers: BTreeMap<String, String>,
    /// For token requests: the form fields other than the assertion itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<BTreeMap<String, String>>,
    /// The response status.
    pub status: u16,
    /// Chosen response headers (`retry-after`, `content-location`, `location`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub response: BTreeMap<String, String>,
    /// Body bytes handed to the connection.
    pub bytes: u64,
    /// Time to the response headers, in milliseconds.
    pub duration_ms: u64,
    /// The fault rule that fired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// For token requests: the assertion's decoded header and claims (unverified).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assertion: Option<Value>,
    /// For token responses that issued a token: its fingerprint (as it appears in
    /// later `authorization` headers) and `expires_in` as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued: Option<Value>,
    /// A fault rule that matched but could not act on this response (a byte
    /// offset past the end of the body it met), and why: the response went out
    /// untouched, and `fault` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_not_applied: Option<String>,
    /// How the response body ended as it was handed to the connection:
    /// `complete` (sent to its end: the only evidence that a body without
    /// `Content-Length`, a chunked one, went out whole), `failed` (it broke off:
    /// a fault's cut, an upstream's body that broke off behind a proxy) or
    /// `dropped` (the connection went away first). Absent while the body
    /// streams, and in transcripts written before this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_end: Option<crate::capture::BodyEnd>,
}

/// Response headers worth recording.
pub const RECORDED_RESPONSE_HEADERS: &[&str] = &[
    "content-encoding",
    "content-length",
    "content-location",
    "content-type",
    "etag",
    "location",
    "retry-after",
    "www-authenticate",
    "x-export-status",
    "x-progress",
];

/// Request headers worth recording.
pub const RECORDED_HEADERS: &[&str] =
    &["accept", "accept-encoding", "authorization", "content-type", "host", "if-range", "prefer", "range"];

struct Entry {
    exchange: Exchange,
    bytes: Arc<AtomicU64>,
    /// Set by a body fault that found, while the body streamed, that it could not act.
    unacted: Option<Arc<OnceLock<String>>>,
}

impl Entry {
    /// The exchange as it stands: the bytes sent so far, and a fault that
    /// turned out not to act recorded as not applied.
    fn snapshot(&self) -> Exchange {
        let mut exchange = Exchange { bytes: self.bytes.load(Ordering::Relaxed), ..self.exchange.clone() };
        if let Some(why) = self.unacted.as_ref().and_then(|u| u.get())
            && let Some(label) = exchange.fault.take()
        {
            exchange.fault_not_applied = Some(format!("{label}: {why}"));
        }
        exchange
    }
}

/// What the transcript tells its subscribers (the dashboard), as it happens.
#[derive(Debug, Clone)]
pub enum TranscriptEvent {
    /// An exchange's response headers left; its body may still be streaming.
    Started(Arc<Exchange>),
    /// The body of exchange `seq` is done: `bytes` were handed to the connection.
    Finished {
        /// The exchange.
        seq: u64,
        /// Body bytes sent in all.
        bytes: u64,
        /// Set when the exchange's fault found, while the body streamed, that
        /// it could not act (the exchange then reads as not applied).
        fault_not_applied: Option<String>,
    },
    /// The transcript was cleared.
    Cleared,
}

/// Events a subscriber may fall behind by before it loses the oldest ones
/// (the broadcast channel's capacity: what bounds the server's memory for a
/// slow or stalled subscriber).
pub const EVENT_CAPACITY: usize = 1024;

/// Exchanges a transcript keeps in memory: the latest ones, the oldest
/// forgotten beyond it, so a server that runs for days stays bounded (about
/// 1 KB an exchange). The live file (`--transcript`) keeps every one.
pub const KEPT_EXCHANGES: usize = 50_000;

/// The transcript of one server.
pub struct Transcript {
    entries: Mutex<std::collections::VecDeque<Entry>>,
    next: AtomicU64,
    started: Instant,
    live: Option<Mutex<std::fs::File>>,
    events: tokio::sync::broadcast::Sender<TranscriptEvent>,
}

/// A short, stable fingerprint of a secret: enough to tell two apart, useless to an attacker.
pub fn fingerprint(secret: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
}

impl Transcript {
    /// An empty transcript; `live` receives every exchange as an NDJSON line.
    pub fn new(live: Option<std::fs::File>) -> Self {
        Transcript {
            entries: Mutex::new(std::collections::VecDeque::new()),
            next: AtomicU64::new(1),
            started: Instant::now(),
            live: live.map(Mutex::new),
            events: tokio::sync::broadcast::channel(EVENT_CAPACITY).0,
        }
    }

    /// Every event from now on. Sending never waits: a receiver more than
    /// [`EVENT_CAPACITY`] events behind loses the oldest ones (`Lagged`).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<TranscriptEvent> {
        self.events.subscribe()
    }

    /// Events queued for the slowest subscriber (at most [`EVENT_CAPACITY`]).
    pub fn queued_events(&self) -> usize {
        self.events.len()
    }

    /// Sends `event` when someone listens (no clone, no lock otherwise).
    fn announce(&self, event: impl FnOnce() -> TranscriptEvent) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(event());
        }
    }

    /// Milliseconds since the server started.
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Records an exchange whose body is still streaming; `bytes` is updated as
    /// it goes. Returns its sequence number for [`Transcript::finish`].
    pub fn record(&self, exchange: Exchange, bytes: Arc<AtomicU64>) -> u64 {
        self.record_watched(exchange, bytes, None)
    }

    /// [`Transcript::record`], for an exchange whose fault may find only while
    /// its body streams that it cannot act: when `unacted` is set (with why),
    /// the exchange reads as not applied (`fault_not_applied`), never as fired.
    pub fn record_watched(
        &self,
        mut exchange: Exchange,
        bytes: Arc<AtomicU64>,
        unacted: Option<Arc<OnceLock<String>>>,
    ) -> u64 {
        exchange.seq = self.next.fetch_add(1, Ordering::Relaxed);
        let seq = exchange.seq;
        self.announce(|| TranscriptEvent::Started(Arc::new(exchange.clone())));
        let mut entries = self.entries.lock().expect("transcript");
        if entries.len() == KEPT_EXCHANGES {
            entries.pop_front();
        }
        entries.push_back(Entry { exchange, bytes, unacted });
        seq
    }

    /// The body of exchange `seq` is done (sent, failed or abandoned): writes
    /// its line, with the bytes actually sent, to the live transcript file.
    pub fn finish(&self, seq: u64) {
        let listening = self.events.receiver_count() > 0;
        if self.live.is_none() && !listening {
            return;
        }
        let exchange =
            self.entries.lock().expect("transcript").iter().rev().find(|e| e.exchange.seq == seq).map(Entry::snapshot);
        if listening && let Some(e) = &exchange {
            let _ = self.events.send(TranscriptEvent::Finished {
                seq,
                bytes: e.bytes,
                fault_not_applied: e.fault_not_applied.clone(),
            });
        }
        let Some(live) = &self.live else { return };
        if let Some(exchange) = exchange
            && let Ok(mut line) = serde_json::to_vec(&exchange)
        {
            line.push(b'\n');
            let _ = live.lock().expect("transcript file").write_all(&line);
        }
    }

    /// The body of exchange `seq` ended as `end`: kept with the exchange, then
    /// its line written as by [`Transcript::finish`].
    pub fn finish_with(&self, seq: u64, end: crate::capture::BodyEnd) {
        if let Some(entry) = self.entries.lock().expect("transcript").iter_mut().rev().find(|e| e.exchange.seq == seq) {
            entry.exchange.body_end = Some(end);
        }
        self.finish(seq);
    }

    /// Number of requests recorded so far (cheap: no copy).
    pub fn count(&self) -> u64 {
        self.next.load(Ordering::Relaxed) - 1
    }

    /// Exchanges kept now: [`count`](Self::count) less those cleared, at most [`KEPT_EXCHANGES`].
    pub fn kept(&self) -> usize {
        self.entries.lock().expect("transcript").len()
    }

    /// Every exchange kept (the latest [`KEPT_EXCHANGES`]), in order of arrival.
    pub fn exchanges(&self) -> Vec<Exchange> {
        let mut out: Vec<Exchange> = self.entries.lock().expect("transcript").iter().map(Entry::snapshot).collect();
        out.sort_by_key(|e| e.seq);
        out
    }

    /// Forgets every exchange.
    pub fn clear(&self) {
        self.entries.lock().expect("transcript").clear();
        self.announce(|| TranscriptEvent::Cleared);
    }

    /// The latest `n` exchanges, in order of arrival (what a dashboard shows on connecting).
    pub fn latest(&self, n: usize) -> Vec<Exchange> {
        let entries = self.entries.lock().expect("transcript");
        let mut out: Vec<Exchange> = entries.iter().rev().take(n).map(Entry::snapshot).collect();
        out.sort_by_key(|e| e.seq);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange() -> Exchange {
        serde_json::from_value(serde_json::json!({
            "seq": 0, "at_ms": 0, "method": "GET", "path": "/fhir/metadata", "headers": {},
            "status": 200, "bytes": 0, "duration_ms": 0
        }))
        .unwrap()
    }

    #[test]
    fn a_long_run_keeps_the_latest_exchanges_only() {
        let transcript = Transcript::new(None);
        for _ in 0..KEPT_EXCHANGES + 5 {
            transcript.record(exchange(), Arc::default());
        }
        assert_eq!(transcript.count(), KEPT_EXCHANGES as u64 + 5, "every request is counted");
        assert_eq!(transcript.kept(), KEPT_EXCHANGES);
        let kept = transcript.exchanges();
        assert_eq!((kept[0].seq, kept.last().unwrap().seq), (6, KEPT_EXCHANGES as u64 + 5), "the oldest went");
        assert_eq!(transcript.latest(2).iter().map(|e| e.seq).collect::<Vec<_>>(), [50_004, 50_005]);
    }
}
