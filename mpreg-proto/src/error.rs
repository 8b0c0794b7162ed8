//! Typed errors, one enum per operation. Each says whether state changed.

use crate::wire::{DecodeError, MessageKind};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a call produced no result. One set for every path: returned by
/// [`Node::call`](crate::Node::call) when the call cannot start, delivered
/// in [`Event::CallDone`](crate::Event::CallDone) otherwise, and carried on
/// the wire to callers on other nodes.
#[derive(Debug, Error, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum CallError {
    /// No node has registered a function of this name (and version).
    #[error("no function {0:?} is registered")]
    NotFound(CompactString),
    /// The function exists, but no live node serving it has every resource
    /// in `locs`.
    #[error("no live provider of {function:?} has resources {locs:?}")]
    NoProvider {
        /// The function.
        function: CompactString,
        /// The resources asked for.
        locs: Vec<CompactString>,
    },
    /// The time budget ran out.
    #[error("the call timed out")]
    Timeout,
    /// No provider could be reached.
    #[error("no provider could be reached")]
    Unreachable,
    /// The provider is at its concurrency cap; the handler did not run.
    #[error("the provider is overloaded")]
    Overloaded,
    /// The provider failed with the call in flight. The handler may or may
    /// not have run; the function is not idempotent, so it was not retried.
    #[error("the provider failed with the call in flight; it may or may not have run")]
    OutcomeUnknown,
    /// The call was forwarded more often than its hop budget allows.
    #[error("the call's hop budget is exhausted")]
    HopBudgetExhausted,
    /// No bridge leads to the target cluster (or none serves the function).
    #[error("no route to cluster {0:?}")]
    NoRoute(CompactString),
    /// The call came back to a cluster it had already crossed.
    #[error("the call looped back to a cluster it crossed")]
    Loop,
    /// The handler ran and returned an error.
    #[error("the handler failed: {0}")]
    HandlerFailed(String),
    /// Refused by policy or a limit (too large, too many pending, leaving).
    #[error("rejected: {0}")]
    Rejected(String),
    /// The caller cancelled the call.
    #[error("the call was cancelled")]
    Cancelled,
    /// The request reached a node other than the member it was sent to (a
    /// process restarted at that address); the handler did not run. The
    /// caller's node handles this itself: applications never see it.
    #[error("the call reached a node other than the one it was sent to")]
    NotHere,
}

/// Why [`Node::handle_frame`](crate::Node::handle_frame) rejected a frame.
/// The node's state is unchanged except for the counters in
/// [`Metrics`](crate::Metrics).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The frame does not decode (or is too large, or of an unknown kind).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The sender exceeded its frame rate.
    #[error("rate limit exceeded")]
    RateLimited,
    /// The peer speaks no protocol version this node speaks.
    #[error("no common protocol version (peer speaks {min}..={max})")]
    IncompatibleVersion {
        /// Peer's oldest.
        min: u8,
        /// Peer's newest.
        max: u8,
    },
    /// A client connection sent a member-only message.
    #[error("{0:?} is not allowed from a client")]
    NotAllowed(MessageKind),
    /// The node has left the cluster and ignores member traffic.
    #[error("the node has left")]
    Left,
    /// No such connection: the runtime reported it closed already, or
    /// never reported it opened.
    #[error("unknown connection")]
    UnknownConnection,
}

/// Why [`Node::register`](crate::Node::register) refused a function. Nothing
/// was registered.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// The name is empty or longer than 255 bytes.
    #[error("invalid function name {0:?}")]
    InvalidName(String),
    /// A resource tag is empty or longer than 255 bytes, or there are more
    /// than 64.
    #[error("invalid resources: {0}")]
    InvalidResources(String),
    /// The per-node function limit is reached.
    #[error("function limit of {0} reached")]
    Limit(usize),
    /// The node is draining or has left the cluster.
    #[error("the node is leaving or has left")]
    Left,
}

/// Why [`Node::complete_invocation`](crate::Node::complete_invocation) did
/// nothing.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum InvocationError {
    /// No such invocation is running (it completed, or was cancelled).
    #[error("unknown invocation")]
    Unknown,
}
