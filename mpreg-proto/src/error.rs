//! Typed errors, one enum per operation. Each says whether state changed.

pub use crate::records::CallError;
use crate::wire::{DecodeError, MessageKind};
use thiserror::Error;

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
    /// The peer is not admitted (see [`crate::auth`]).
    #[error("the peer is not admitted: {0}")]
    NotAdmitted(crate::auth::Refusal),
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
