//! Frames: `magic + protocol version + flags + cluster tag + kind + postcard(body)`.
//!
//! ```text
//!  0      2         3       4             6      7
//!  +------+---------+-------+-------------+------+---------------------+
//!  | "MP" | version | flags | cluster tag | kind | postcard(body) ...  |
//!  +------+---------+-------+-------------+------+---------------------+
//! ```
//!
//! * One message per frame. A `kind` this version does not know is skipped
//!   ([`DecodeError::UnknownKind`], counted, not fatal), so a newer peer can
//!   send new kinds to older ones during a rolling upgrade.
//! * Bytes after a known body are ignored: new fields are appended at the
//!   end of a message.
//! * The cluster tag is a 16-bit hash of the `cluster_id`: frames of
//!   another cluster are rejected before their body is read. It is a cheap
//!   filter; the full cluster id travels in every connection's `Hello` and
//!   is checked there.
//! * `flags` bit 0 is reserved for frame authentication (a trailer with a
//!   MAC or signature); a frame that sets a flag this node does not support
//!   is rejected.
//!
//! Every failure is a typed [`DecodeError`]; nothing here panics on any
//! input, and decoding never changes node state.

use crate::id::{Addr, CallId, Incarnation, NodeId};
pub use crate::records::{
    CallError, CatalogDelta, CatalogEntry, FnBody, MemberRecord, MemberState,
};
use bytes::Bytes;
use compact_str::CompactString;
use semver::{Version, VersionReq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// The two magic bytes that open every frame.
pub const MAGIC: [u8; 2] = *b"MP";
/// The newest protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// The oldest protocol version this build speaks.
pub const MIN_PROTOCOL_VERSION: u8 = 1;
/// Bytes before the message kind.
pub const HEADER_LEN: usize = 6;
/// Flag bit reserved for authenticated frames.
pub const FLAG_AUTHENTICATED: u8 = 0b1;
/// Flag bits this build understands.
const KNOWN_FLAGS: u8 = 0;

/// The cluster tag a client that does not know the cluster id sends;
/// nodes accept it on client messages only.
pub const ANY_CLUSTER: u16 = 0;

/// The 32-bit tag of a cluster id carried in every frame header (never
/// [`ANY_CLUSTER`]).
pub fn cluster_tag(cluster_id: &str) -> u16 {
    (xxhash_rust::xxh3::xxh3_64(cluster_id.as_bytes()) as u16).max(1)
}

/// A 64-bit hash, fixed 8 bytes on the wire.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct H64(pub u64);

impl Serialize for H64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.to_le_bytes().serialize(s)
    }
}

impl<'de> Deserialize<'de> for H64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <[u8; 8]>::deserialize(d).map(|b| H64(u64::from_le_bytes(b)))
    }
}

/// What a node is on a connection.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Role {
    /// A cluster member.
    Member,
    /// A client that only calls functions and queries views.
    Client,
}

/// First frame on every connection: who the sender is and which protocol
/// versions it speaks. Its layout is frozen across versions.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Hello {
    /// The sender's id.
    pub node: NodeId,
    /// The sender's incarnation.
    pub incarnation: Incarnation,
    /// Where the sender can be reached (empty for clients).
    pub addr: Addr,
    /// Oldest version the sender speaks.
    pub min_version: u8,
    /// Newest version the sender speaks.
    pub max_version: u8,
    /// The sender's cluster id in full (the header carries only its tag).
    pub cluster_id: CompactString,
    /// Member or client.
    pub role: Role,
}

/// A unit of replicated state: what broadcasts and anti-entropy carry.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Update {
    /// A member record.
    Member(MemberRecord),
    /// Catalog changes of one owner.
    Catalog(CatalogDelta),
}

/// Names an update in an "I have" announcement.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum UpdateId {
    /// A member record at this version.
    Member {
        /// Whose.
        id: NodeId,
        /// Incarnation.
        incarnation: Incarnation,
        /// State.
        state: MemberState,
    },
    /// An owner's catalog up to this counter.
    Catalog {
        /// Whose.
        owner: NodeId,
        /// Epoch.
        epoch: u64,
        /// Highest counter in the update.
        counter: u64,
    },
}

/// A range of the NodeId space with the combined hash and count of the
/// members in it.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct RangeDigest {
    /// Index of the range at its level.
    pub index: u16,
    /// Combined hash of the members in it.
    pub hash: H64,
    /// Members in it.
    pub count: u32,
}

/// A call on the wire.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct CallRequest {
    /// Unique id; the executor deduplicates on it.
    pub id: CallId,
    /// Function name.
    pub function: CompactString,
    /// Accepted versions; `None` takes any.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = arb::version_req))]
    pub version_req: Option<VersionReq>,
    /// Resources the executing node must have.
    pub locs: crate::catalog::ResourceSet,
    /// Arguments, opaque to the core.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = arb::bytes))]
    pub args: Bytes,
    /// Remaining time budget in microseconds (relative, never a deadline).
    pub budget_us: u64,
    /// Remaining forwarding hops.
    pub hop_budget: u8,
    /// The cluster that must serve it (`None`: the caller's, or whichever
    /// cluster the caller's routes chose).
    pub target_cluster: Option<CompactString>,
    /// Clusters the call crossed so far (loop prevention).
    pub path: Vec<CompactString>,
    /// The member the caller chose. Another node at its address (a restart
    /// with a new id) answers [`CallError::NotHere`] without running it.
    pub executor: Option<NodeId>,
}

/// The outcome of a call on the wire.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct CallResponse {
    /// Which call.
    pub id: CallId,
    /// The handler's result or why there is none.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = arb::outcome))]
    pub result: Result<Bytes, CallError>,
    /// The executor's in-flight invocations (soft load state).
    pub load: u32,
}

/// A call made by a client connection (not a member).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ClientCall {
    /// Chosen by the client to match the reply.
    pub token: u64,
    /// Function name.
    pub function: CompactString,
    /// Accepted versions.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = arb::version_req))]
    pub version_req: Option<VersionReq>,
    /// Required resources.
    pub locs: crate::catalog::ResourceSet,
    /// Arguments.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = arb::bytes))]
    pub args: Bytes,
    /// Budget in microseconds; 0 takes the node's default.
    pub budget_us: u64,
    /// The cluster that must serve it, if any.
    pub target_cluster: Option<CompactString>,
}

/// The reply to a [`ClientCall`].
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ClientReply {
    /// The client's token.
    pub token: u64,
    /// The outcome.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = arb::outcome))]
    pub result: Result<Bytes, CallError>,
}

/// A multi-step call made by a client connection
/// ([`multistep`](crate::multistep)).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ClientMany {
    /// Chosen by the client to match the reply.
    pub token: u64,
    /// The commands as a JSON list in upstream's shape
    /// ([`Command::list_to_json`](crate::multistep::Command::list_to_json)).
    #[cfg_attr(feature = "arbitrary", arbitrary(with = arb::bytes))]
    pub commands: Bytes,
    /// Only `{"$ref": …}` refers
    /// ([`References::Explicit`](crate::multistep::References::Explicit)).
    pub explicit: bool,
    /// Budget of the whole request in microseconds; 0 takes the node's
    /// default.
    pub budget_us: u64,
}

/// The reply to a [`ClientMany`].
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ClientManyReply {
    /// The client's token.
    pub token: u64,
    /// Every command's result by name, as a JSON object, or why not.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = arb::many_outcome))]
    pub result: Result<Bytes, crate::multistep::ManyError>,
}

/// Views a client can ask for.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Query {
    /// The member table.
    Members,
    /// The catalog.
    Catalog,
}

/// A view, answered to a [`Query`].
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum QueryAnswer {
    /// Every member's record.
    Members(Vec<MemberRecord>),
    /// Every live catalog entry: (owner, name, version, body).
    Catalog(
        #[cfg_attr(feature = "arbitrary", arbitrary(with = arb::catalog_view))]
        Vec<(NodeId, CompactString, Version, FnBody)>,
    ),
}

macro_rules! messages {
    ($( $tag:literal => $variant:ident $( ( $ty:ty ) )? , $doc:literal ;)*) => {
        /// Every message of the protocol.
        #[derive(Clone, PartialEq, Debug)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
        #[allow(missing_docs)]
        pub enum Message {
            $( #[doc = $doc] $variant $( ( $ty ) )? , )*
        }

        /// The kind of a message, for metrics.
        #[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
        #[allow(missing_docs)]
        pub enum MessageKind {
            $( #[doc = $doc] $variant , )*
        }

        impl MessageKind {
            /// Every kind, in tag order.
            pub const ALL: &'static [MessageKind] = &[$( MessageKind::$variant ),*];
            /// Number of kinds.
            pub const COUNT: usize = Self::ALL.len();

            /// The kind's wire tag.
            pub fn tag(self) -> u8 {
                match self { $( MessageKind::$variant => $tag ),* }
            }

            /// Position in [`MessageKind::ALL`].
            pub fn index(self) -> usize {
                Self::ALL.iter().position(|k| *k == self).unwrap_or(0)
            }

            /// The kind with this wire tag.
            pub fn from_tag(tag: u8) -> Option<MessageKind> {
                match tag { $( $tag => Some(MessageKind::$variant), )* _ => None }
            }
        }

        impl Message {
            /// This message's kind.
            pub fn kind(&self) -> MessageKind {
                match self { $( messages!(@pat $variant $( $ty )?) => MessageKind::$variant ),* }
            }

            fn encode_body(&self, out: Vec<u8>) -> Result<Vec<u8>, postcard::Error> {
                match self {
                    $( messages!(@bind $variant m $( $ty )?) => messages!(@enc out m $( $ty )?), )*
                }
            }

            fn decode_body(kind: MessageKind, body: &[u8]) -> Result<Message, postcard::Error> {
                match kind {
                    $( MessageKind::$variant => messages!(@dec body $variant $( $ty )?), )*
                }
            }
        }
    };
    (@pat $variant:ident $ty:ty) => { Message::$variant(_) };
    (@pat $variant:ident) => { Message::$variant };
    (@bind $variant:ident $m:ident $ty:ty) => { Message::$variant($m) };
    (@bind $variant:ident $m:ident) => { Message::$variant };
    (@enc $out:ident $m:ident $ty:ty) => { postcard::to_extend($m, $out) };
    (@enc $out:ident $m:ident) => { Ok($out) };
    (@dec $body:ident $variant:ident $ty:ty) => {
        postcard::take_from_bytes::<$ty>($body).map(|(m, _rest)| Message::$variant(m))
    };
    (@dec $body:ident $variant:ident) => { Ok(Message::$variant) };
}

messages! {
    1 => Hello(Hello), "Opens a connection: identity and versions.";
    2 => Ping(u32), "A direct probe with a sequence number.";
    3 => Ack(Ack), "Answers a ping.";
    4 => PingReq(PingReq), "Asks the receiver to probe a target for the sender.";
    5 => IndirectAck(u32), "The target of a ping request answered.";
    6 => Nack(u32), "The target of a ping request did not answer in time.";
    7 => Join(MemberRecord), "A new node asks a seed to let it in.";
    8 => ForwardJoin(ForwardJoin), "A join on its random walk through the overlay.";
    9 => Neighbor(Neighbor), "Asks to become an active-view peer.";
    10 => NeighborReply(bool), "Accepts or refuses a neighbor request.";
    11 => Disconnect, "The sender drops the receiver from its active view.";
    12 => Shuffle(Shuffle), "A passive-view sample on its random walk.";
    13 => ShuffleReply(Vec<PeerInfo>), "The receiver's sample in return.";
    14 => Gossip(Vec<Update>), "Eager push of updates along the broadcast tree.";
    15 => IHave(Vec<UpdateId>), "Lazy announcement of updates.";
    16 => Graft(Vec<UpdateId>), "Asks for announced updates and joins the tree.";
    17 => Prune, "Leaves the sender's eager set.";
    18 => SyncRanges(SyncRanges), "Anti-entropy: digests of ranges of the NodeId space.";
    19 => SyncSummaries(SyncSummaries), "Anti-entropy: per-member hashes of ranges.";
    20 => SyncPull(Vec<NodeId>), "Anti-entropy: asks for these members' state.";
    21 => SyncUpdates(Vec<Update>), "Anti-entropy: members' state.";
    22 => Call(CallRequest), "Runs a function.";
    23 => Response(CallResponse), "The outcome of a call.";
    24 => Cancel(CallId), "The caller no longer waits.";
    25 => ClientCall(ClientCall), "A call from a client connection.";
    26 => ClientReply(ClientReply), "Answers a client call.";
    27 => ClientQuery((u64, Query)), "A client asks for a view.";
    28 => ClientAnswer((u64, QueryAnswer)), "Answers a client query.";
    29 => BridgeHello(BridgeHello), "Opens a bridge between two clusters.";
    30 => BridgeReject(CompactString), "The receiver's policy refuses the bridge.";
    31 => Summary(ClusterSummary), "What can be reached through the sender's cluster.";
    32 => FedCall(CallRequest), "A call crossing a bridge.";
    33 => FedResponse(CallResponse), "The outcome of a call, crossing back.";
    34 => ClientMany(ClientMany), "A multi-step call from a client connection.";
    35 => ClientManyReply(ClientManyReply), "Answers a client's multi-step call.";
    36 => Identify(crate::auth::Identify), "Admission: the sender's key and a challenge.";
    37 => Prove(crate::auth::Proof), "Admission: the answer to the receiver's challenge.";
    38 => Refused(crate::auth::Refusal), "Admission: the receiver's policy refuses the sender.";
}

/// Opens a bridge: who the sender is, in which cluster.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BridgeHello {
    /// The sender's id.
    pub node: NodeId,
    /// Where it listens.
    pub addr: Addr,
    /// Its cluster.
    pub cluster_id: CompactString,
}

/// A cluster summary a bridge node exports: for each cluster reachable
/// through it, the path and the functions served there. Versioned by its
/// single writer (the exporter); a newer version replaces an older one.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ClusterSummary {
    /// Exporter's version.
    pub version: u64,
    /// Reachable clusters.
    pub routes: Vec<RouteAd>,
}

/// One reachable cluster.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct RouteAd {
    /// Clusters from the exporter's own to the destination (path vector).
    pub path: Vec<CompactString>,
    /// Functions served there.
    pub functions: Vec<FnAd>,
}

/// A function in a summary.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct FnAd {
    /// Name.
    pub name: CompactString,
    /// Version.
    #[cfg_attr(feature = "arbitrary", arbitrary(with = arb::version))]
    pub version: Version,
    /// Maximal resource sets, each served by one node (bounded).
    pub sets: Vec<crate::catalog::ResourceSet>,
    /// Whether every provider registered it idempotent.
    pub idempotent: bool,
}

/// Answers a ping.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Ack {
    /// The ping's sequence number.
    pub seq: u32,
    /// The acker's in-flight invocations (soft load state).
    pub load: u32,
}

/// Asks the receiver to probe `target` and report back.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct PingReq {
    /// The requester's sequence number, echoed in the answer.
    pub seq: u32,
    /// Whom to probe.
    pub target: NodeId,
    /// Where.
    pub addr: Addr,
}

/// A join on its random walk.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ForwardJoin {
    /// The joining node.
    pub joiner: MemberRecord,
    /// Remaining steps.
    pub ttl: u8,
}

/// Asks to become an active-view peer.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Neighbor {
    /// The requester.
    pub sender: MemberRecord,
    /// Set when the requester has no active peer: must not be refused.
    pub high_priority: bool,
}

/// A peer known by id and address.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct PeerInfo {
    /// Its id.
    pub id: NodeId,
    /// Its address.
    pub addr: Addr,
}

/// A passive-view sample on its random walk.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Shuffle {
    /// Who started the shuffle (the reply goes there).
    pub origin: PeerInfo,
    /// Remaining steps.
    pub ttl: u8,
    /// The sample.
    pub sample: Vec<PeerInfo>,
}

/// Anti-entropy digests of ranges at one level of the range tree.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SyncRanges {
    /// Tree level: 0 is the whole space.
    pub level: u8,
    /// The ranges.
    pub ranges: Vec<RangeDigest>,
}

/// Per-member hashes of whole ranges.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SyncSummaries {
    /// Tree level of the ranges.
    pub level: u8,
    /// Which ranges these members cover.
    pub ranges: Vec<u16>,
    /// Every member in those ranges with its state hash.
    pub members: Vec<(NodeId, H64)>,
}

/// Why a frame was rejected. The node's state is unchanged.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Longer than the configured maximum frame size.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Shorter than a header.
    #[error("frame of {0} bytes is shorter than a header")]
    TooShort(usize),
    /// Does not start with the magic bytes.
    #[error("not an mpreg frame (bad magic)")]
    BadMagic,
    /// A protocol version this build does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// Flags this build does not understand (e.g. authentication).
    #[error("unsupported frame flags {0:#04x}")]
    UnsupportedFlags(u8),
    /// From another cluster.
    #[error("frame from another cluster (tag {0:04x})")]
    WrongCluster(u16),
    /// A message kind this version does not know: skipped, not fatal.
    #[error("unknown message kind {0} (skipped)")]
    UnknownKind(u8),
    /// The body does not decode.
    #[error("malformed {kind:?} body: {error}")]
    Malformed {
        /// The kind the header announced.
        kind: MessageKind,
        /// What postcard reported.
        error: postcard::Error,
    },
}

/// A frame's header.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct Header {
    /// Protocol version of the body.
    pub version: u8,
    /// Flag bits.
    pub flags: u8,
    /// Tag of the sender's cluster.
    pub cluster: u16,
}

/// Reads and checks a frame's header; `cluster` is the receiver's tag, and
/// `None` accepts any cluster.
pub fn decode_header(
    frame: &[u8],
    max: usize,
    cluster: Option<u16>,
) -> Result<Header, DecodeError> {
    if frame.len() > max {
        return Err(DecodeError::TooLarge {
            len: frame.len(),
            max,
        });
    }
    if frame.len() <= HEADER_LEN {
        return Err(DecodeError::TooShort(frame.len()));
    }
    if frame[..2] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let header = Header {
        version: frame[2],
        flags: frame[3],
        cluster: u16::from_le_bytes([frame[4], frame[5]]),
    };
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&header.version) {
        return Err(DecodeError::UnsupportedVersion(header.version));
    }
    if header.flags & !KNOWN_FLAGS != 0 {
        return Err(DecodeError::UnsupportedFlags(header.flags));
    }
    if let Some(tag) = cluster
        && tag != header.cluster
    {
        return Err(DecodeError::WrongCluster(header.cluster));
    }
    Ok(header)
}

/// Decodes a whole frame.
pub fn decode(
    frame: &[u8],
    max: usize,
    cluster: Option<u16>,
) -> Result<(Header, Message), DecodeError> {
    let header = decode_header(frame, max, cluster)?;
    let tag = frame[HEADER_LEN];
    let kind = MessageKind::from_tag(tag).ok_or(DecodeError::UnknownKind(tag))?;
    let msg = Message::decode_body(kind, &frame[HEADER_LEN + 1..])
        .map_err(|error| DecodeError::Malformed { kind, error })?;
    Ok((header, msg))
}

/// Encodes a message into a frame.
pub fn encode(msg: &Message, version: u8, cluster: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.push(version);
    out.push(0);
    out.extend_from_slice(&cluster.to_le_bytes());
    out.push(msg.kind().tag());
    // Serializing plain data into a Vec cannot fail; keep the header-only
    // frame if it ever did rather than panic.
    msg.encode_body(out.clone()).unwrap_or(out)
}

/// Encodes a frame with an arbitrary kind tag and body: for tests that play
/// a newer peer.
pub fn encode_raw(tag: u8, body: &[u8], version: u8, cluster: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 1 + body.len());
    out.extend_from_slice(&MAGIC);
    out.push(version);
    out.push(0);
    out.extend_from_slice(&cluster.to_le_bytes());
    out.push(tag);
    out.extend_from_slice(body);
    out
}

/// `Arbitrary` for the wire types whose fields come from crates without it.
#[cfg(feature = "arbitrary")]
mod arb {
    use super::*;
    use arbitrary::{Arbitrary, Result, Unstructured};

    pub(super) use crate::records::arb_version as version;

    pub(super) fn version_req(u: &mut Unstructured<'_>) -> Result<Option<VersionReq>> {
        let reqs = ["*", "^1", "=1.0.0", ">=0.2, <2", "~1.2.3", "<0.0.1"];
        Ok(match u.choose_index(reqs.len() + 1)? {
            0 => None,
            i => VersionReq::parse(reqs[i - 1]).ok(),
        })
    }

    pub(super) fn bytes(u: &mut Unstructured<'_>) -> Result<Bytes> {
        Ok(Bytes::from(Vec::<u8>::arbitrary(u)?))
    }

    pub(super) fn outcome(u: &mut Unstructured<'_>) -> Result<Result<Bytes, CallError>> {
        Ok(if u.arbitrary()? {
            Ok(bytes(u)?)
        } else {
            Err(u.arbitrary()?)
        })
    }

    pub(super) fn many_outcome(
        u: &mut Unstructured<'_>,
    ) -> Result<Result<Bytes, crate::multistep::ManyError>> {
        Ok(if u.arbitrary()? {
            Ok(bytes(u)?)
        } else {
            Err(u.arbitrary()?)
        })
    }

    pub(super) fn catalog_view(
        u: &mut Unstructured<'_>,
    ) -> Result<Vec<(NodeId, CompactString, Version, FnBody)>> {
        let n = u.arbitrary_len::<(NodeId, FnBody)>()?;
        (0..n)
            .map(|_| Ok((u.arbitrary()?, u.arbitrary()?, version(u)?, u.arbitrary()?)))
            .collect()
    }
}
