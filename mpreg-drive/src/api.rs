//! The types the application holds: events, catalog entries, counters,
//! handlers and calls. The drive loop, the node and the client all use
//! them; they use none of those.

use bytes::Bytes;
use mpreg_proto::multistep::{Command, ManyError, References, Request, Results};
use mpreg_proto::{Call, CallError, Event, NodeId};
use semver::{Version, VersionReq};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::broadcast;

/// A handler's future (not `Send`: it runs on the node's thread).
pub(crate) type LocalFuture = Pin<Box<dyn Future<Output = Result<Bytes, String>>>>;

/// A registered handler, as the drive loop runs it.
#[derive(Clone)]
pub(crate) enum Handler {
    /// Runs on the drive loop's thread (must not block).
    Async(Arc<dyn Fn(Bytes) -> LocalFuture + Send + Sync>),
    /// Runs on the blocking pool.
    Blocking(Arc<dyn Fn(Bytes) -> Result<Bytes, String> + Send + Sync>),
}

/// An event of the core and when the drive loop saw it. The stream
/// carries membership, catalog and limit events; the outcome of a call
/// goes to its caller instead ([`Event::CallDone`] never appears here).
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// When it was observed.
    pub at: Instant,
    /// What.
    pub event: Event,
}

/// One catalog entry of a live node (the funtimes view, flattened).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FunctionEntry {
    /// Function name.
    pub name: String,
    /// Version.
    #[serde(serialize_with = "ser_display")]
    pub version: Version,
    /// The serving node.
    #[serde(serialize_with = "ser_display")]
    pub node: NodeId,
    /// Its resources.
    pub resources: Vec<String>,
    /// Whether calls may be retried on another provider.
    pub idempotent: bool,
    /// For a function served in another cluster: that cluster. `node` is
    /// then this cluster's bridge node towards it, and `resources` one of
    /// the maximal sets a single node there serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// For a function served in another cluster: the clusters a call
    /// crosses, from the next one to `cluster`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<String>,
}

impl FunctionEntry {
    /// The entries one catalog provider stands for: itself, or for a route
    /// to another cluster one entry per resource set served there.
    pub(crate) fn of(
        name: &str,
        node: NodeId,
        version: &Version,
        body: &mpreg_proto::FnBody,
    ) -> Vec<FunctionEntry> {
        let entry = |resources: &mpreg_proto::ResourceSet| FunctionEntry {
            name: name.to_string(),
            version: version.clone(),
            node,
            resources: resources.iter().map(|r| r.to_string()).collect(),
            idempotent: body.idempotent,
            cluster: body.route.as_ref().map(|r| r.cluster.to_string()),
            via: body
                .route
                .as_ref()
                .map_or_else(Vec::new, |r| r.path.iter().map(|c| c.to_string()).collect()),
        };
        match &body.route {
            Some(r) => r.sets.iter().map(entry).collect(),
            None => vec![entry(&body.resources)],
        }
    }
}

fn ser_display<T: Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// The funtimes view: function → resource set → serving nodes (of this
/// cluster: routes to other clusters are left out).
pub fn funtimes(entries: &[FunctionEntry]) -> BTreeMap<String, BTreeMap<Vec<String>, Vec<NodeId>>> {
    let mut out: BTreeMap<String, BTreeMap<Vec<String>, Vec<NodeId>>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.cluster.is_none()) {
        out.entry(e.name.clone())
            .or_default()
            .entry(e.resources.clone())
            .or_default()
            .push(e.node);
    }
    out
}

/// Runtime counters of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open (or opening) connections.
    pub connections: usize,
    /// Addresses the core asked to keep connected (its active view).
    pub kept: usize,
    /// Dials started.
    pub dials: u64,
    /// Dials that failed.
    pub dial_failures: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections refused (limit reached, or leaving).
    pub refused: u64,
    /// Connections closed because they were idle.
    pub idle_closed: u64,
    /// Connections dropped because their peer stopped reading.
    pub queue_overflows: u64,
    /// Frames skipped because they exceeded `limits.max_frame_size`.
    pub frames_too_large: u64,
    /// Frames the core rejected.
    pub frames_rejected: u64,
    /// Handlers running.
    pub running_invocations: usize,
    /// Calls this node waits on.
    pub pending_calls: usize,
    /// Alive and Suspect members, this node included.
    pub live_members: usize,
    /// Lifeguard local-health score (0 is healthy).
    pub local_health: u32,
}

/// The node stopped (it left, was aborted, or its thread ended).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("the node has stopped")]
pub struct Stopped;

/// A stream of [`Observed`] events.
#[derive(Debug)]
pub struct Events {
    pub(crate) rx: broadcast::Receiver<Observed>,
    pub(crate) skipped: u64,
}

impl Events {
    /// The next event; `None` once the node has stopped.
    pub async fn next(&mut self) -> Option<Observed> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(n)) => self.skipped += n,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is ready.
    pub fn try_next(&mut self) -> Option<Observed> {
        loop {
            match self.rx.try_recv() {
                Ok(e) => return Some(e),
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.skipped += n,
                Err(_) => return None,
            }
        }
    }

    /// Events skipped because this receiver fell behind.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

// ----- calls ---------------------------------------------------------------------

/// The future of a call's outcome.
pub(crate) type Outcome = Pin<Box<dyn Future<Output = Result<Bytes, CallError>> + Send>>;

/// How a call reaches the core (a node's drive loop, or a client's
/// connection).
pub(crate) type Dispatch = Box<dyn FnOnce(Call) -> Outcome + Send>;

/// A call being prepared; `.await` it for the outcome.
#[must_use = "a call does nothing until awaited"]
pub struct CallBuilder {
    dispatch: Dispatch,
    call: Call,
    error: Option<CallError>,
}

impl std::fmt::Debug for CallBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallBuilder")
            .field("call", &self.call)
            .finish()
    }
}

impl CallBuilder {
    pub(crate) fn new(
        dispatch: Dispatch,
        function: &str,
        args: Result<Vec<u8>, serde_json::Error>,
    ) -> CallBuilder {
        let (args, error) = match args {
            Ok(a) => (Bytes::from(a), None),
            Err(e) => (
                Bytes::new(),
                Some(CallError::Rejected(format!(
                    "the arguments do not encode as JSON: {e}"
                ))),
            ),
        };
        CallBuilder {
            dispatch,
            call: Call::new(function).args(args),
            error,
        }
    }

    /// Requires the executing node to have these resources.
    pub fn locs(mut self, locs: impl IntoIterator<Item = impl AsRef<str>>) -> CallBuilder {
        self.call = self.call.locs(locs);
        self
    }

    /// Sets the time budget (default: the node's `calls.default_timeout`).
    pub fn timeout(mut self, timeout: Duration) -> CallBuilder {
        self.call = self.call.timeout(timeout);
        self
    }

    /// Accepts only versions matching `req`.
    pub fn version(mut self, req: VersionReq) -> CallBuilder {
        self.call = self.call.version(req);
        self
    }

    /// Requires the call to be served in `cluster`, reached over bridges
    /// when it is not this node's own. Without it, a call with no provider
    /// in this cluster goes to the nearest cluster that has one.
    pub fn cluster(mut self, cluster: impl AsRef<str>) -> CallBuilder {
        self.call = self.call.cluster(cluster);
        self
    }
}

/// A call's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply(pub Bytes);

impl Reply {
    /// The raw bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// Decodes the result as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.0)
    }
}

impl IntoFuture for CallBuilder {
    type Output = Result<Reply, CallError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Reply, CallError>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            if let Some(e) = self.error {
                return Err(e);
            }
            (self.dispatch)(self.call).await.map(Reply)
        })
    }
}

// ----- multi-step calls ---------------------------------------------------------

/// The future of a multi-step call's outcome.
pub(crate) type ManyOutcome = Pin<Box<dyn Future<Output = Result<Results, ManyError>> + Send>>;

/// How a multi-step call reaches the core.
pub(crate) type ManyDispatch = Box<dyn FnOnce(Request) -> ManyOutcome + Send>;

/// A multi-step call being prepared ([`mpreg_proto::multistep`]); `.await`
/// it for every command's result by name.
///
/// ```no_run
/// # async fn demo(node: mpreg_drive::Node) -> Result<(), mpreg_drive::ManyError> {
/// use mpreg_drive::Command;
/// use std::time::Duration;
/// let results = node
///     .call_many([
///         Command::new("raw", "ingest").arg("s3://bucket/day").locs(["storage"]),
///         // "raw.rows" takes the field `rows` of ingest's result.
///         Command::new("model", "train").arg("raw.rows").locs(["gpu"]),
///     ])
///     .timeout(Duration::from_secs(60))
///     .await?;
/// println!("{}", results["model"]);
/// # Ok(())
/// # }
/// ```
#[must_use = "a call does nothing until awaited"]
pub struct ManyBuilder {
    dispatch: ManyDispatch,
    commands: Vec<Command>,
    references: References,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for ManyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManyBuilder")
            .field("commands", &self.commands)
            .field("references", &self.references)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ManyBuilder {
    pub(crate) fn new(
        dispatch: ManyDispatch,
        commands: impl IntoIterator<Item = Command>,
    ) -> ManyBuilder {
        ManyBuilder {
            dispatch,
            commands: commands.into_iter().collect(),
            references: References::Names,
            timeout: None,
        }
    }

    /// Sets the budget of the whole request (default: the node's
    /// `calls.default_timeout`).
    pub fn timeout(mut self, timeout: Duration) -> ManyBuilder {
        self.timeout = Some(timeout);
        self
    }

    /// Only `{"$ref": "name.field"}` objects refer to other commands'
    /// results; plain strings stay strings.
    pub fn explicit_references(mut self) -> ManyBuilder {
        self.references = References::Explicit;
        self
    }
}

impl IntoFuture for ManyBuilder {
    type Output = Result<Results, ManyError>;
    type IntoFuture = ManyOutcome;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let mut req = Request::with_references(self.commands, self.references)?;
            req.timeout = self.timeout;
            (self.dispatch)(req).await
        })
    }
}

/// Decodes JSON arguments; empty arguments are `null`.
pub(crate) fn decode_args<A: DeserializeOwned>(args: &[u8]) -> Result<A, String> {
    let args = if args.is_empty() { b"null" } else { args };
    serde_json::from_slice(args).or_else(|e| {
        // An empty list (what upstream clients send for no arguments) also
        // fits a handler taking `()`.
        let no_args =
            serde_json::from_slice::<Vec<serde_json::Value>>(args).is_ok_and(|v| v.is_empty());
        no_args
            .then(|| serde_json::from_slice(b"null").ok())
            .flatten()
            .ok_or_else(|| format!("invalid arguments: {e}"))
    })
}

/// Encodes a handler's result as JSON.
pub(crate) fn encode_result<R: Serialize, E: Display>(r: Result<R, E>) -> Result<Bytes, String> {
    match r {
        Ok(v) => serde_json::to_vec(&v)
            .map(Bytes::from)
            .map_err(|e| format!("the result does not encode as JSON: {e}")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_arguments_decode_from_positional_json() {
        let (a, b): (i64, String) = decode_args(b"[1,\"x\"]").unwrap();
        assert_eq!((a, b.as_str()), (1, "x"));
        let () = decode_args(b"").unwrap();
        let () = decode_args(b" [ ] ").unwrap();
        let (): () = decode_args(b"null").unwrap();
        assert!(decode_args::<()>(b"[1]").is_err());
        assert!(
            decode_args::<(i64,)>(b"{}")
                .unwrap_err()
                .contains("invalid arguments")
        );
    }
}
