//! The fuzzing harness: drives [`Node`]s with inputs decoded from arbitrary
//! bytes and checks invariants after every step.
//!
//! Shared, file for file, by the cargo-fuzz targets (`fuzz/fuzz_targets/`)
//! and by the proptest versions in `mpreg-proto/tests/fuzz_invariants.rs`,
//! which include this file by path: it may depend only on `mpreg-proto`,
//! `arbitrary`, `bytes`, `semver` and `compact_str`, and uses none of
//! mpreg-proto's own `Arbitrary` impls (so the tests need no feature).
//!
//! Inputs are drawn from small domains on purpose: ten node ids, a dozen
//! addresses, small incarnations and counters (plus the extremes), four
//! function names. Random 128-bit ids would never collide with the ones a
//! node knows, and collisions are where the interesting states are.
//!
//! The harness is also the nodes' runtime: it carries out every
//! [`Order`] (dials, sends, closes, handlers, stop) as the contract of the
//! crate docs says, adversarially where the contract allows (dials left
//! pending, slow closes, ids reused at once), and checks what the node and
//! the runtime must agree on.
//!
//! Every check is an `assert!`: a violated invariant is a crash to the
//! fuzzer and a failure to proptest.

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;
use compact_str::CompactString;
use mpreg_proto::catalog::Route;
use mpreg_proto::config::{BridgeConfig, Policy};
use mpreg_proto::wire::{self, Message, Update};
use mpreg_proto::{
    Addr, Call, CallError, CallId, Closed, Config, ConnId, ConnView, Event, FnBody, FrameError,
    FunctionSpec, Identity, InvocationId, MemberState, Node, NodeId, Order, Status, Time, Transmit,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// The cluster every harness node belongs to.
pub const CLUSTER: &str = "fuzz";
/// The cluster at the other end of bridges.
pub const OTHER: &str = "other";

/// A cluster id: the node's own, the bridged one, a third, or anything.
#[derive(Arbitrary, Debug, Clone)]
pub enum Cluster {
    /// The node's own.
    Own,
    /// The bridged one.
    Other,
    /// A third cluster.
    Third,
    /// Anything.
    Any(String),
}

impl Cluster {
    fn get(&self) -> CompactString {
        match self {
            Cluster::Own => CLUSTER.into(),
            Cluster::Other => OTHER.into(),
            Cluster::Third => "third".into(),
            Cluster::Any(s) => s.as_str().into(),
        }
    }
}

fn clusters(v: &[Cluster]) -> Vec<CompactString> {
    v.iter().map(Cluster::get).collect()
}

/// The node ids fuzzed inputs choose from: spread over the id space (so
/// every anti-entropy range level is exercised), with two neighbours that
/// share a top-8-bit range. Index 0 is the node under test.
pub const IDS: [u128; 10] = [
    0x7000_0000_0000_0000_0000_0000_0000_0001,
    0x1000_0000_0000_0000_0000_0000_0000_0000,
    0x2200_0000_0000_0000_0000_0000_0000_0000,
    0x3300_0000_0000_0000_0000_0000_0000_0000,
    0x4400_0000_0000_0000_0000_0000_0000_0000,
    0x9900_0000_0000_0000_0000_0000_0000_0000,
    0xaa00_0000_0000_0000_0000_0000_0000_0000,
    0xff00_0000_0000_0000_0000_0000_0000_0000,
    0x0000_0000_0000_0000_0000_0000_0000_0000,
    0x1000_0000_0000_0000_0000_0000_0000_0001,
];

/// The id with index `i` (mod 10).
pub fn id(i: u8) -> NodeId {
    NodeId::from_u128(IDS[usize::from(i) % IDS.len()])
}

/// The address of the node with index `i`.
pub fn addr(i: u8) -> Addr {
    Addr::new(format!("sim://{}", i % 10))
}

/// A configuration with small caps, so that every limit is reachable by a
/// short input, and short periods, so that every timer fires.
pub fn small_config(seed: u64) -> Config {
    let ms = Duration::from_millis;
    let mut c = Config {
        cluster_id: CLUSTER.into(),
        name: "node".into(),
        rng_seed: seed,
        ..Config::default()
    };
    let m = &mut c.membership;
    m.probe_period = ms(100);
    m.probe_timeout_min = ms(20);
    m.probe_timeout_max = ms(50);
    m.indirect_timeout = ms(60);
    m.suspicion_per_decade = ms(300);
    m.dissemination_allowance = ms(50);
    m.reconnect_window = Duration::from_secs(20);
    m.join_retry_interval = ms(100);
    m.seed_redial_interval = ms(1000);
    let o = &mut c.overlay;
    o.active_view_min = 2;
    o.active_view_max = 4;
    o.passive_view_size = 4;
    o.shuffle_period = ms(1000);
    o.shuffle_size = 2;
    let d = &mut c.dissemination;
    d.graft_timeout = ms(20);
    d.ihave_delay = ms(5);
    d.sync_interval = ms(200);
    d.sync_page_bytes = 1024;
    d.sync_pages_per_exchange = 2;
    c.calls.default_timeout = ms(1000);
    c.calls.max_timeout = ms(5000);
    c.calls.hop_budget = 3;
    let l = &mut c.limits;
    l.max_frame_size = 8192;
    l.max_members = 8;
    l.max_functions_per_node = 3;
    l.max_catalog_entries = 10;
    l.max_pending_calls = 3;
    l.max_invocations = 2;
    l.max_dedup_entries = 4;
    l.max_missing_updates = 6;
    l.max_queued_transmits = 64;
    l.peer_frames_per_sec = 20;
    l.peer_frame_burst = 40;
    let n = &mut c.connections;
    n.idle_timeout = ms(1000);
    n.client_idle_timeout = ms(3000);
    n.dial_timeout = ms(300);
    n.close_timeout = ms(300);
    n.backoff_min = ms(50);
    n.backoff_max = ms(800);
    n.max_connections = 6;
    // Room for two frames of the largest size.
    n.max_held_bytes = 2 * 8192;
    c.leave.grace = ms(300);
    c.leave.flush_timeout = ms(200);
    c
}

/// A node of the harness: index `i` in [`IDS`], incarnation 1.
pub fn make_node(cfg: Config, i: u8, now: Time) -> Node {
    let identity = Identity {
        id: id(i),
        key: mpreg_proto::testing::key(u128::from(i)),
        addr: addr(i),
        incarnation: 1,
    };
    Node::new(cfg, identity, now).expect("the harness config validates")
}

// ----- small domains ------------------------------------------------------

/// A node id: one of [`IDS`].
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Who(pub u8);

/// An address: a known node's, the node's own, empty, or a stranger's.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Where(pub u8);

impl Where {
    fn addr(self) -> Addr {
        match self.0 % 13 {
            10 => Addr::new(""),
            11 => Addr::new("sim://stranger"),
            12 => Addr::new(format!("sim://{}", "x".repeat(300))),
            i => addr(i),
        }
    }
}

/// An incarnation, epoch or counter: small, or near the top.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Num {
    /// 0..=5.
    Small(u8),
    /// `u64::MAX - n` (n < 4).
    Huge(u8),
}

impl Num {
    fn get(self) -> u64 {
        match self {
            Num::Small(n) => u64::from(n % 6),
            Num::Huge(n) => u64::MAX - u64::from(n % 4),
        }
    }
}

/// A member state.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct St(pub u8);

impl St {
    fn get(self) -> MemberState {
        [
            MemberState::Alive,
            MemberState::Suspect,
            MemberState::Dead,
            MemberState::Left,
        ][usize::from(self.0 % 4)]
    }
}

/// A name: empty, short, or over the 255-byte limit.
#[derive(Arbitrary, Debug, Clone)]
pub enum Text {
    /// Empty.
    Empty,
    /// One of a few short ones.
    Short(u8),
    /// Anything.
    Any(String),
    /// 300 bytes.
    Long,
}

impl Text {
    fn get(&self, prefix: &str) -> CompactString {
        match self {
            Text::Empty => CompactString::default(),
            Text::Short(n) => format!("{prefix}{}", n % 4).into(),
            Text::Any(s) => s.as_str().into(),
            Text::Long => "y".repeat(300).into(),
        }
    }
}

/// A function version: each part 0..=2.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Ver(pub u8, pub u8, pub u8);

impl Ver {
    fn get(self) -> semver::Version {
        semver::Version::new(
            u64::from(self.0 % 3),
            u64::from(self.1 % 3),
            u64::from(self.2 % 3),
        )
    }
}

/// A version requirement.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Req(pub u8);

impl Req {
    fn get(self) -> Option<semver::VersionReq> {
        let reqs = ["*", "^1", "=1.0.0", ">=0.2, <2", "^2"];
        match usize::from(self.0) % (reqs.len() + 1) {
            0 => None,
            i => semver::VersionReq::parse(reqs[i - 1]).ok(),
        }
    }
}

fn resources(r: &[u8]) -> BTreeSet<CompactString> {
    r.iter().map(|x| format!("r{}", x % 3).into()).collect()
}

/// A catalog entry body: a local function, or a route to another cluster.
#[derive(Arbitrary, Debug, Clone)]
pub struct Body {
    res: Vec<u8>,
    idempotent: bool,
    route: Option<(Cluster, Vec<Cluster>, Vec<Vec<u8>>)>,
}

impl Body {
    fn get(&self) -> FnBody {
        FnBody {
            resources: resources(&self.res),
            idempotent: self.idempotent,
            route: self.route.as_ref().map(|(c, path, sets)| Route {
                cluster: c.get(),
                path: clusters(path),
                sets: sets.iter().map(|s| resources(s)).collect(),
            }),
        }
    }

    fn scope(&self) -> CompactString {
        self.route.as_ref().map(|r| r.0.get()).unwrap_or_default()
    }
}

/// A member record.
#[derive(Arbitrary, Debug, Clone)]
pub struct Rec {
    who: Who,
    at: Where,
    /// Whether the address is the one that goes with the id.
    true_addr: bool,
    inc: Num,
    state: St,
    accusers: Vec<Who>,
    name: Text,
}

impl Rec {
    fn get(&self) -> wire::MemberRecord {
        wire::MemberRecord {
            id: id(self.who.0),
            addr: if self.true_addr {
                addr(self.who.0)
            } else {
                self.at.addr()
            },
            incarnation: self.inc.get(),
            state: self.state.get(),
            accusers: self.accusers.iter().map(|w| id(w.0)).collect(),
            name: self.name.get("n"),
        }
    }
}

/// A catalog entry.
#[derive(Arbitrary, Debug, Clone)]
pub struct Entry {
    name: Text,
    ver: Ver,
    counter: Num,
    body: Option<Body>,
    /// A scope of its own (else the body's, as a well-formed entry has).
    scope: Option<Cluster>,
}

/// A replicated update.
#[derive(Arbitrary, Debug, Clone)]
pub enum Upd {
    /// A member record.
    Member(Rec),
    /// A catalog delta.
    Catalog {
        /// Whose.
        owner: Who,
        /// Epoch.
        epoch: Num,
        /// Tombstone floor.
        floor: Num,
        /// A complete snapshot?
        complete: bool,
        /// Entries.
        entries: Vec<Entry>,
    },
}

impl Upd {
    fn get(&self) -> Update {
        match self {
            Upd::Member(r) => Update::Member(r.get()),
            Upd::Catalog {
                owner,
                epoch,
                floor,
                complete,
                entries,
            } => Update::Catalog(wire::CatalogDelta {
                owner: id(owner.0),
                epoch: epoch.get(),
                floor: floor.get(),
                complete: *complete,
                entries: entries
                    .iter()
                    .map(|e| wire::CatalogEntry {
                        name: e.name.get("f"),
                        version: e.ver.get(),
                        counter: e.counter.get(),
                        scope: match (&e.scope, &e.body) {
                            (Some(c), _) => c.get(),
                            (None, Some(b)) => b.scope(),
                            (None, None) => CompactString::default(),
                        },
                        body: e.body.as_ref().map(Body::get),
                    })
                    .collect(),
            }),
        }
    }
}

/// An update id.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum UpdId {
    /// A member version.
    Member(Who, Num, St),
    /// A catalog version.
    Catalog(Who, Num, Num),
}

impl UpdId {
    fn get(self) -> wire::UpdateId {
        match self {
            UpdId::Member(w, n, s) => wire::UpdateId::Member {
                id: id(w.0),
                incarnation: n.get(),
                state: s.get(),
            },
            UpdId::Catalog(w, e, c) => wire::UpdateId::Catalog {
                owner: id(w.0),
                epoch: e.get(),
                counter: c.get(),
            },
        }
    }
}

/// A call id: possibly one of the node's own.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Cid {
    origin: Who,
    inc: Num,
    seq: u8,
}

impl Cid {
    fn get(self) -> CallId {
        CallId {
            origin: id(self.origin.0),
            incarnation: self.inc.get(),
            seq: u64::from(self.seq % 8),
        }
    }
}

/// A call outcome.
#[derive(Arbitrary, Debug, Clone)]
pub enum Outcome {
    /// A result.
    Ok(Vec<u8>),
    /// The handler failed.
    Failed(String),
    /// The provider was overloaded (the caller retries elsewhere).
    Overloaded,
    /// Timed out.
    Timeout,
    /// Not found.
    NotFound,
    /// The call reached a node other than the one it was sent to.
    NotHere,
}

impl Outcome {
    fn get(&self) -> std::result::Result<Bytes, CallError> {
        match self {
            Outcome::Ok(b) => Ok(Bytes::from(b.clone())),
            Outcome::Failed(s) => Err(CallError::HandlerFailed(s.clone())),
            Outcome::Overloaded => Err(CallError::Overloaded),
            Outcome::Timeout => Err(CallError::Timeout),
            Outcome::NotFound => Err(CallError::NotFound("f0".into())),
            Outcome::NotHere => Err(CallError::NotHere),
        }
    }
}

/// A peer as a shuffle carries it.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct PeerA(Who, Where);

impl PeerA {
    fn get(self) -> wire::PeerInfo {
        wire::PeerInfo {
            id: id(self.0.0),
            addr: self.1.addr(),
        }
    }
}

/// Every message of the protocol, over the small domains.
#[derive(Arbitrary, Debug, Clone)]
pub enum Msg {
    Hello {
        who: Who,
        inc: Num,
        at: Where,
        min: u8,
        max: u8,
        other_cluster: bool,
        client: bool,
    },
    Ping(u8),
    Ack(u8, u32),
    PingReq(u8, Who, Where),
    IndirectAck(u8),
    Nack(u8),
    Join(Rec),
    ForwardJoin(Rec, u8),
    Neighbor(Rec, bool),
    NeighborReply(bool),
    Disconnect,
    Shuffle(PeerA, u8, Vec<PeerA>),
    ShuffleReply(Vec<PeerA>),
    Gossip(Vec<Upd>),
    IHave(Vec<UpdId>),
    Graft(Vec<UpdId>),
    Prune,
    SyncRanges(u8, Vec<(u16, u64, u32)>),
    SyncSummaries(u8, Vec<u16>, Vec<(Who, u64)>),
    SyncPull(Vec<Who>),
    SyncUpdates(Vec<Upd>),
    Call(CallReq),
    Response(Cid, Outcome, u32),
    Cancel(Cid),
    ClientCall {
        token: u64,
        function: Text,
        req: Req,
        locs: Vec<u8>,
        args: Vec<u8>,
        budget_us: u32,
        target: Option<Cluster>,
    },
    ClientReply(u64, Outcome),
    ClientQuery(u64, bool),
    ClientAnswer(u64),
    BridgeHello(Who, Where, Cluster),
    BridgeReject(Text),
    Summary(Num, Vec<RouteAd>),
    FedCall(CallReq),
    FedResponse(Cid, Outcome, u32),
}

/// A call request (member or bridged).
#[derive(Arbitrary, Debug, Clone)]
pub struct CallReq {
    id: Cid,
    function: Text,
    req: Req,
    locs: Vec<u8>,
    args: Vec<u8>,
    budget_us: u32,
    hops: u8,
    target: Option<Cluster>,
    path: Vec<Cluster>,
    executor: Option<Who>,
}

impl CallReq {
    fn get(&self) -> wire::CallRequest {
        wire::CallRequest {
            id: self.id.get(),
            function: self.function.get("f"),
            version_req: self.req.get(),
            locs: resources(&self.locs),
            args: Bytes::from(self.args.clone()),
            budget_us: u64::from(self.budget_us),
            hop_budget: self.hops,
            target_cluster: self.target.as_ref().map(Cluster::get),
            path: clusters(&self.path),
            executor: self.executor.map(|w| id(w.0)),
        }
    }
}

/// A route in a cluster summary.
#[derive(Arbitrary, Debug, Clone)]
pub struct RouteAd {
    path: Vec<Cluster>,
    functions: Vec<(Text, Ver, Vec<Vec<u8>>, bool)>,
}

impl RouteAd {
    fn get(&self) -> wire::RouteAd {
        wire::RouteAd {
            path: clusters(&self.path),
            functions: self
                .functions
                .iter()
                .map(|(name, ver, sets, idempotent)| wire::FnAd {
                    name: name.get("f"),
                    version: ver.get(),
                    sets: sets.iter().map(|s| resources(s)).collect(),
                    idempotent: *idempotent,
                })
                .collect(),
        }
    }
}

impl Msg {
    /// The protocol message.
    pub fn get(&self) -> Message {
        let ids = |v: &[UpdId]| v.iter().map(|i| i.get()).collect();
        let ups = |v: &[Upd]| v.iter().map(Upd::get).collect();
        match self {
            Msg::Hello {
                who,
                inc,
                at,
                min,
                max,
                other_cluster,
                client,
            } => Message::Hello(wire::Hello {
                node: id(who.0),
                incarnation: inc.get(),
                addr: at.addr(),
                min_version: *min % 3,
                max_version: *max % 3,
                cluster_id: if *other_cluster { "other" } else { CLUSTER }.into(),
                role: if *client {
                    wire::Role::Client
                } else {
                    wire::Role::Member
                },
            }),
            Msg::Ping(s) => Message::Ping(u32::from(*s)),
            Msg::Ack(s, load) => Message::Ack(wire::Ack {
                seq: u32::from(*s),
                load: *load,
            }),
            Msg::PingReq(s, w, a) => Message::PingReq(wire::PingReq {
                seq: u32::from(*s),
                target: id(w.0),
                addr: a.addr(),
            }),
            Msg::IndirectAck(s) => Message::IndirectAck(u32::from(*s)),
            Msg::Nack(s) => Message::Nack(u32::from(*s)),
            Msg::Join(r) => Message::Join(r.get()),
            Msg::ForwardJoin(r, ttl) => Message::ForwardJoin(wire::ForwardJoin {
                joiner: r.get(),
                ttl: *ttl % 8,
            }),
            Msg::Neighbor(r, high) => Message::Neighbor(wire::Neighbor {
                sender: r.get(),
                high_priority: *high,
            }),
            Msg::NeighborReply(ok) => Message::NeighborReply(*ok),
            Msg::Disconnect => Message::Disconnect,
            Msg::Shuffle(origin, ttl, sample) => Message::Shuffle(wire::Shuffle {
                origin: origin.get(),
                ttl: *ttl % 4,
                sample: sample.iter().map(|p| p.get()).collect(),
            }),
            Msg::ShuffleReply(s) => Message::ShuffleReply(s.iter().map(|p| p.get()).collect()),
            Msg::Gossip(u) => Message::Gossip(ups(u)),
            Msg::IHave(i) => Message::IHave(ids(i)),
            Msg::Graft(i) => Message::Graft(ids(i)),
            Msg::Prune => Message::Prune,
            Msg::SyncRanges(level, r) => Message::SyncRanges(wire::SyncRanges {
                level: *level % 4,
                ranges: r
                    .iter()
                    .map(|(index, hash, count)| wire::RangeDigest {
                        index: *index % 300,
                        hash: wire::H64(*hash),
                        count: *count % 12,
                    })
                    .collect(),
            }),
            Msg::SyncSummaries(level, ranges, members) => {
                Message::SyncSummaries(wire::SyncSummaries {
                    level: *level % 4,
                    ranges: ranges.iter().map(|r| *r % 300).collect(),
                    members: members
                        .iter()
                        .map(|(w, h)| (id(w.0), wire::H64(*h)))
                        .collect(),
                })
            }
            Msg::SyncPull(w) => Message::SyncPull(w.iter().map(|w| id(w.0)).collect()),
            Msg::SyncUpdates(u) => Message::SyncUpdates(ups(u)),
            Msg::Call(c) => Message::Call(c.get()),
            Msg::Response(c, o, load) => Message::Response(wire::CallResponse {
                id: c.get(),
                result: o.get(),
                load: *load,
            }),
            Msg::Cancel(c) => Message::Cancel(c.get()),
            Msg::ClientCall {
                token,
                function,
                req,
                locs,
                args,
                budget_us,
                target,
            } => Message::ClientCall(wire::ClientCall {
                token: *token,
                function: function.get("f"),
                version_req: req.get(),
                locs: resources(locs),
                args: Bytes::from(args.clone()),
                budget_us: u64::from(*budget_us),
                target_cluster: target.as_ref().map(Cluster::get),
            }),
            Msg::ClientReply(t, o) => Message::ClientReply(wire::ClientReply {
                token: *t,
                result: o.get(),
            }),
            Msg::ClientQuery(t, members) => Message::ClientQuery((
                *t,
                if *members {
                    wire::Query::Members
                } else {
                    wire::Query::Catalog
                },
            )),
            Msg::ClientAnswer(t) => Message::ClientAnswer((*t, wire::QueryAnswer::Members(vec![]))),
            Msg::BridgeHello(w, at, c) => Message::BridgeHello(wire::BridgeHello {
                node: id(w.0),
                addr: at.addr(),
                cluster_id: c.get(),
            }),
            Msg::BridgeReject(t) => Message::BridgeReject(t.get("why")),
            Msg::Summary(v, routes) => Message::Summary(wire::ClusterSummary {
                version: v.get(),
                routes: routes.iter().map(RouteAd::get).collect(),
            }),
            Msg::FedCall(c) => Message::FedCall(c.get()),
            Msg::FedResponse(c, o, load) => Message::FedResponse(wire::CallResponse {
                id: c.get(),
                result: o.get(),
                load: *load,
            }),
        }
    }
}

/// How a structured message is framed.
#[derive(Arbitrary, Debug, Clone)]
pub enum Framing {
    /// As a peer of the cluster would.
    Normal,
    /// With the wildcard cluster tag clients use.
    Wildcard,
    /// With another cluster's tag.
    OtherCluster,
    /// With a header version byte of its own.
    Version(u8),
    /// With flag bits set.
    Flags(u8),
    /// With bytes appended (a newer peer's extra fields).
    Trailer(Vec<u8>),
    /// Truncated to this many bytes.
    Truncate(u16),
    /// With bytes overwritten.
    Corrupt(Vec<(u16, u8)>),
}

/// Encodes `msg` as `framing` says.
pub fn frame(msg: &Message, framing: &Framing) -> Vec<u8> {
    let tag = wire::cluster_tag(CLUSTER);
    let v = wire::PROTOCOL_VERSION;
    match framing {
        Framing::Normal => wire::encode(msg, v, tag),
        Framing::Wildcard => wire::encode(msg, v, wire::ANY_CLUSTER),
        Framing::OtherCluster => wire::encode(msg, v, wire::cluster_tag(OTHER)),
        Framing::Version(x) => wire::encode(msg, *x, tag),
        Framing::Flags(f) => {
            let mut b = wire::encode(msg, v, tag);
            b[3] = *f;
            b
        }
        Framing::Trailer(t) => {
            let mut b = wire::encode(msg, v, tag);
            b.extend_from_slice(t);
            b
        }
        Framing::Truncate(n) => {
            let mut b = wire::encode(msg, v, tag);
            b.truncate(usize::from(*n));
            b
        }
        Framing::Corrupt(edits) => {
            let mut b = wire::encode(msg, v, tag);
            if !b.is_empty() {
                let len = b.len();
                for (at, x) in edits {
                    b[usize::from(*at) % len] = *x;
                }
            }
            b
        }
    }
}

// ----- local inputs ---------------------------------------------------------

/// How far the clock moves.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Advance {
    /// To the node's next deadline.
    ToDeadline,
    /// By a few milliseconds.
    Millis(u8),
    /// By a few seconds.
    Secs(u8),
    /// Past the reconnect window.
    Minutes(u8),
}

/// A command from the application.
#[derive(Arbitrary, Debug, Clone)]
pub enum Local {
    /// `register`.
    Register {
        name: Text,
        ver: Ver,
        res: Vec<u8>,
        idempotent: bool,
    },
    /// `unregister`.
    Unregister(Text, Ver),
    /// `call`.
    Call {
        function: Text,
        req: Req,
        locs: Vec<u8>,
        big_args: bool,
        timeout_ms: Option<u16>,
        target: Option<Cluster>,
    },
    /// `cancel` of one of the node's calls (or an unknown one).
    Cancel(u8),
    /// `complete_invocation` of one of the running handlers.
    Complete { pick: u8, ok: bool, big: bool },
    /// `complete_invocation` of an invocation id (the ids are small
    /// counters, so sometimes a running one).
    CompleteUnknown(u64),
    /// `leave`: the phased graceful leave (drain, flush, stop).
    Leave,
    /// `bridge` to a cluster through seeds.
    Bridge(Cluster, Vec<Where>),
}

/// How a connection ended, as the runtime reports it.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum How {
    /// Cleanly, nothing lost.
    Clean,
    /// The peer closed cleanly; frames queued here were never written.
    Unsent,
    /// It broke.
    Lost,
}

impl How {
    fn get(self) -> Closed {
        match self {
            How::Clean => Closed::Clean,
            How::Unsent => Closed::Unsent,
            How::Lost => Closed::Lost,
        }
    }
}

/// One input to a single node.
#[derive(Arbitrary, Debug, Clone)]
pub enum Step {
    /// A structured message from an address, on its connection (opened as
    /// if dialled, on first use).
    Frame(Where, Msg, Framing),
    /// Raw bytes from an address.
    Raw(Where, Vec<u8>),
    /// A message on the connection with id `n % 16`: open, closing, or
    /// unknown to the node.
    On(u8, Msg),
    /// A plausible answer from the peer to one of the node's recent frames
    /// (on the connection it went out on, if still open).
    Reply(u8, bool),
    /// The peer at this index sends its `Hello` (a handshake).
    Handshake(Who),
    /// The clock moves; due timers fire.
    Advance(Advance),
    /// The runtime accepted a connection: from now on frames from the
    /// address arrive on it, unnamed to the node until a `Hello` names it.
    Accept(Where),
    /// A connection to the address opened: the answer to a dial, or one
    /// the runtime opened by itself; `true` answers with the id of the
    /// address's connection (a connectionless transport).
    Connected(Where, bool),
    /// Answers one of the dials the node ordered: connected, or failed.
    Answer(u8, bool),
    /// A dial of the address failed (ordered or not).
    DialFailed(Where),
    /// The address's connection ended.
    Closed(Where, How),
    /// Whether the closes the node orders from now on are held until a
    /// [`Step::Finish`] (slow closes), or carried out at once (the start).
    Hang(bool),
    /// A held close finishes.
    Finish(u8, How),
    /// `join` through seeds.
    Join(Vec<Where>),
    /// `leave`.
    Leave,
    /// `import` of a snapshot.
    Import(Vec<Upd>),
    /// A command.
    Local(Local),
}

// ----- invariants -----------------------------------------------------------

/// Tracks what a node showed before, to check that versions never go back.
#[derive(Debug, Default)]
pub struct Checker {
    incarnation: u64,
    versions: BTreeMap<NodeId, (u64, MemberState)>,
    status: Option<Status>,
    /// Connections left in the table when the node stopped (it ignores the
    /// runtime from then on).
    at_stop: Option<usize>,
    /// When it last checked.
    last: Option<Time>,
}

impl Checker {
    /// The caps on what waits in the node's queue: checked whenever the
    /// runtime is about to take an order.
    pub fn check_queues(node: &Node) {
        let l = &node.config().limits;
        assert!(
            node.queued_transmits() <= l.max_queued_transmits,
            "{} queued transmits > cap {}",
            node.queued_transmits(),
            l.max_queued_transmits
        );
    }

    /// Checks every invariant of `node` (configured as `node.config()`) at
    /// `now`, once the runtime has carried out its orders; `held` is the
    /// number of closes it ordered that the runtime has not reported yet.
    pub fn check(&mut self, node: &Node, held: usize, now: Time) {
        let l = &node.config().limits;
        let me = node.id();
        let members: Vec<_> = node.members().collect();
        // Caps.
        assert!(
            members.len() <= l.max_members,
            "{} members > cap {}",
            members.len(),
            l.max_members
        );
        let cat = node.catalog();
        assert!(
            cat.total_entries() <= l.max_catalog_entries,
            "{} catalog entries > cap {}",
            cat.total_entries(),
            l.max_catalog_entries
        );
        let state = node.replicated_state();
        let mut record_ids = Vec::new();
        for u in &state {
            match u {
                Update::Member(r) => record_ids.push(r.id),
                Update::Catalog(d) => assert!(
                    d.entries.len() <= l.max_functions_per_node,
                    "{} entries of {:?} > per-node cap {}",
                    d.entries.len(),
                    d.owner,
                    l.max_functions_per_node
                ),
            }
        }
        assert!(
            node.pending_calls() <= l.max_pending_calls,
            "{} pending calls > cap {}",
            node.pending_calls(),
            l.max_pending_calls
        );
        assert!(node.running_invocations() <= l.max_invocations);
        Checker::check_queues(node);
        assert!(node.passive_view_len() <= node.config().overlay.passive_view_size);
        for a in node.active_view() {
            assert!(
                members.iter().any(|m| m.id == a && m.state.is_live()),
                "active peer {a:?} is not a live member"
            );
        }
        // Connections: open ones and dials within the cap at all times;
        // closing ones stay in the table until the runtime reports them.
        let c = &node.config().connections;
        let conns: Vec<ConnView> = node.connections().collect();
        assert_eq!(conns.len(), node.connection_count());
        let open = conns.iter().filter(|v| !v.closing).count();
        assert!(
            open + node.dialing_count() <= c.max_connections,
            "{open} open connections + {} dials > cap {}",
            node.dialing_count(),
            c.max_connections
        );
        if node.status() == Status::Stopped {
            let at_stop = *self.at_stop.get_or_insert(node.connection_count());
            assert!(node.connection_count() <= at_stop, "a stopped node opened");
        } else {
            assert!(
                node.connection_count() <= c.max_connections.saturating_add(held),
                "{} connections > cap {} (+ {held} closing)",
                node.connection_count(),
                c.max_connections
            );
        }
        let mut primaries = BTreeSet::new();
        for v in &conns {
            assert!(
                !v.kept || v.primary,
                "a kept connection is not primary: {v:?}"
            );
            assert!(
                !(v.primary && v.closing),
                "a closing connection is primary: {v:?}"
            );
            if v.primary {
                assert!(
                    primaries.insert(v.addr.clone()),
                    "two primary connections to {:?}",
                    v.addr
                );
            }
        }
        // Every timer is keyed by something bounded: a member (probe,
        // suspicion), a probe in flight, a pending call (its budget and a
        // resend), a remembered execution, a running handler, or one of
        // nine singletons (graft, announce, bridge, sync, shuffle, join,
        // dial, idle, leave).
        let timer_cap = [
            9,
            l.max_members.saturating_mul(2),
            l.max_pending_calls.saturating_mul(2),
            l.max_dedup_entries,
            l.max_invocations,
            c.max_connections
                .saturating_mul(2)
                .saturating_mul(l.peer_frame_burst as usize),
        ]
        .into_iter()
        .fold(0usize, usize::saturating_add);
        assert!(
            node.timer_count() <= timer_cap,
            "{} timers > {timer_cap}",
            node.timer_count()
        );
        // Views agree with each other.
        let ids: Vec<NodeId> = members.iter().map(|m| m.id).collect();
        assert_eq!(ids, record_ids, "members() and replicated_state() differ");
        assert_eq!(node.state_digest().1 as usize, members.len());
        let live = members.iter().filter(|m| m.state.is_live()).count();
        assert_eq!(node.live_members(), live);
        let counts = node.member_counts();
        assert_eq!(counts.iter().sum::<usize>(), members.len());
        for p in cat.functions().flat_map(|(_, ps)| ps) {
            assert!(ids.contains(&p.node), "catalog entry of a non-member");
        }
        // Life goes one way: Active, Draining, Left, Stopped.
        let status = node.status();
        if let Some(old) = self.status {
            assert!(status >= old, "status went from {old:?} back to {status:?}");
        }
        self.status = Some(status);
        // A node never marks itself Dead; its own record is Alive until it
        // has left, then Left, and carries its incarnation.
        let own = members
            .iter()
            .find(|m| m.id == me)
            .expect("a node always knows itself");
        assert_ne!(own.state, MemberState::Dead, "a node marked itself Dead");
        let want = if status >= Status::Left {
            MemberState::Left
        } else {
            MemberState::Alive
        };
        assert_eq!(own.state, want, "own record ({status:?})");
        assert_eq!(own.incarnation, node.incarnation());
        // Versions never go backwards.
        assert!(
            node.incarnation() >= self.incarnation,
            "own incarnation went from {} to {}",
            self.incarnation,
            node.incarnation()
        );
        self.incarnation = node.incarnation();
        let mut versions = BTreeMap::new();
        for m in &members {
            let v = (m.incarnation, m.state);
            if let Some(old) = self.versions.get(&m.id) {
                assert!(v >= *old, "member {:?} went from {old:?} to {v:?}", m.id);
            }
            versions.insert(m.id, v);
        }
        // A member is forgotten a reconnect window after it died or left;
        // one live at the last check may have done both since, if that was
        // as long ago.
        let window = node.config().membership.reconnect_window;
        let lapsed = self.last.is_some_and(|t| now >= t + window);
        for (id, old) in &self.versions {
            if !versions.contains_key(id) {
                assert!(
                    lapsed || matches!(old.1, MemberState::Dead | MemberState::Left),
                    "member {id:?} forgotten while {:?}",
                    old.1
                );
            }
        }
        self.versions = versions;
        self.last = Some(now);
    }
}

/// Checks a frame the node sent: within the size limit, and decodable —
/// a native frame, or (sent whole) an answer to an upstream JSON client.
fn sent_message(node: &Node, t: &Transmit) -> Option<Message> {
    let max = node.config().limits.max_frame_size;
    assert!(
        t.frame.len() <= max,
        "a frame of {} bytes > limit {max} went out",
        t.frame.len()
    );
    if t.whole {
        let answer: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&t.frame).expect("upstream answers are JSON objects");
        assert!(
            answer.contains_key("u") && answer.contains_key("error"),
            "{answer:?}"
        );
        return None;
    }
    Some(
        wire::decode(&t.frame, max, None)
            .expect("own frames decode")
            .1,
    )
}

/// Checks a dial the node ordered: never itself, nor an address it could
/// not have (empty, or an unnamed connection's key).
fn check_dial(node: &Node, a: &Addr) {
    assert_ne!(a, node.addr(), "a node dialled itself");
    assert!(
        !a.as_str().is_empty() && !a.as_str().starts_with("conn:"),
        "a dial of {a:?}"
    );
}

/// Remembers a handler the node started.
fn invoked(invs: &mut Vec<InvocationId>, id: InvocationId) {
    assert!(!invs.contains(&id), "invocation id {id:?} reused");
    if invs.len() < 64 {
        invs.push(id);
    }
}

/// Forgets a handler the node cancelled: one that was running.
fn cancelled(invs: &mut Vec<InvocationId>, id: InvocationId) {
    assert!(
        invs.len() >= 64 || invs.contains(&id),
        "Cancel of {id:?}, which is not running"
    );
    invs.retain(|i| *i != id);
}

/// What the runtime and the node agree on once the orders are carried
/// out: the node knows only connections the runtime has open, it has
/// stopped exactly when it ordered `Stop`, and the handlers running are
/// those it started and neither finished nor cancelled.
fn check_runtime(node: &Node, stopped: bool, invs: &[InvocationId], open: impl Fn(ConnId) -> bool) {
    assert_eq!(
        stopped,
        node.status() == Status::Stopped,
        "Stop ordered: {stopped}, status {:?}",
        node.status()
    );
    if !stopped {
        for v in node.connections() {
            assert!(open(v.id), "the node has {v:?}, which the runtime closed");
        }
    }
    if invs.len() < 64 {
        assert_eq!(
            node.running_invocations(),
            invs.len(),
            "running handlers: {invs:?}"
        );
    }
}

// ----- one node -------------------------------------------------------------

/// The federation setup of a node under test.
#[derive(Arbitrary, Debug, Clone)]
pub enum Fed {
    /// No bridges (the default).
    Strict,
    /// Bridges with any cluster; one configured to the other cluster.
    Permissive(bool),
    /// Bridges with the other cluster only, some functions each way.
    Explicit(bool),
}

impl Fed {
    /// Sets the config's federation section.
    pub fn apply(&self, c: &mut Config) {
        let (policy, dial) = match self {
            Fed::Strict => (Policy::Strict, false),
            Fed::Permissive(dial) => (Policy::Permissive, *dial),
            Fed::Explicit(dial) => (
                Policy::Explicit {
                    allow: vec![OTHER.into()],
                    export: vec!["f*".into()],
                    import: vec!["f0".into(), "f1".into(), "*2".into()],
                },
                *dial,
            ),
        };
        c.federation.policy = policy;
        if dial {
            c.federation.bridges.push(BridgeConfig {
                cluster: OTHER.into(),
                seeds: vec![addr(7)],
            });
        }
    }
}

/// A connection of [`Single`]'s runtime.
#[derive(Debug)]
struct Peer {
    /// The address frames on it come from (for an accepted one, the label
    /// the step gave it).
    addr: Addr,
    /// Opened as dialled (`handle_dialed`), else accepted.
    dialed: bool,
}

/// A node fed arbitrary inputs, checked after every step, and the runtime
/// around it: it carries out every order, keeps dials pending until a step
/// answers them, and (while told to) closes slowly.
#[derive(Debug)]
pub struct Single {
    /// The node under test.
    pub node: Node,
    /// The clock.
    pub now: Time,
    checker: Checker,
    calls: Vec<CallId>,
    invocations: Vec<InvocationId>,
    /// Recent frames the node sent: (connection, its peer, message).
    recent: VecDeque<(ConnId, Addr, Message)>,
    /// Connections reported open and not yet reported closed.
    open: BTreeMap<ConnId, Peer>,
    /// The connection frames from each address arrive on.
    by_addr: BTreeMap<Addr, ConnId>,
    /// Dials ordered and not answered yet (the latest 16).
    dials: VecDeque<Addr>,
    /// Closes ordered and not carried out yet.
    held: Vec<ConnId>,
    /// Closes are held rather than carried out at once.
    hang: bool,
    /// The node ordered `Stop`.
    pub stopped: bool,
}

impl Single {
    /// A node with the small config and a federation policy.
    pub fn new(seed: u64, fed: &Fed) -> Single {
        let mut cfg = small_config(seed);
        fed.apply(&mut cfg);
        let node = make_node(cfg, 0, Time::ZERO);
        let mut s = Single {
            node,
            now: Time::ZERO,
            checker: Checker::default(),
            calls: Vec::new(),
            invocations: Vec::new(),
            recent: VecDeque::new(),
            open: BTreeMap::new(),
            by_addr: BTreeMap::new(),
            dials: VecDeque::new(),
            held: Vec::new(),
            hang: false,
            stopped: false,
        };
        s.after();
        s
    }

    /// Runs every step decoded from `u`.
    pub fn run(u: &mut Unstructured<'_>) -> Result<()> {
        let (seed, fed): (u64, Fed) = u.arbitrary()?;
        let mut s = Single::new(seed, &fed);
        let trace = std::env::var_os("MPREG_FUZZ_TRACE").is_some();
        while !u.is_empty() {
            let step: Step = u.arbitrary()?;
            if trace {
                eprintln!("{:?} {step:?}", s.now);
            }
            s.step(&step);
        }
        Ok(())
    }

    /// The lowest id not open: ids of closed connections are reused at
    /// once, as the API allows.
    fn fresh(&self) -> ConnId {
        (0u64..)
            .map(ConnId)
            .find(|c| !self.open.contains_key(c))
            .unwrap_or(ConnId(u64::MAX))
    }

    /// Reports a connection to `a` opened as dialled: a new one, or with
    /// `reuse` the address's own (if it has one).
    fn dialed(&mut self, a: &Addr, reuse: bool) -> ConnId {
        let c = match self.by_addr.get(a) {
            Some(c) if reuse && !self.held.contains(c) => *c,
            _ => {
                let c = self.fresh();
                let peer = Peer {
                    addr: a.clone(),
                    dialed: true,
                };
                self.open.insert(c, peer);
                self.by_addr.insert(a.clone(), c);
                c
            }
        };
        self.node.handle_dialed(self.now, a, c);
        self.drain();
        c
    }

    /// Reports a connection accepted, labelled `a`.
    fn accept(&mut self, a: &Addr) {
        let c = self.fresh();
        let peer = Peer {
            addr: a.clone(),
            dialed: false,
        };
        self.open.insert(c, peer);
        self.by_addr.insert(a.clone(), c);
        self.node.handle_accepted(self.now, c);
    }

    /// The connection frames from `a` arrive on (opened as dialled if it
    /// has none).
    fn conn(&mut self, a: &Addr) -> ConnId {
        match self.by_addr.get(a) {
            Some(c) => *c,
            None => self.dialed(a, false),
        }
    }

    /// Reports connection `c` closed.
    fn close(&mut self, c: ConnId, how: Closed) {
        if let Some(p) = self.open.remove(&c)
            && self.by_addr.get(&p.addr) == Some(&c)
        {
            self.by_addr.remove(&p.addr);
        }
        self.held.retain(|h| *h != c);
        self.node.handle_closed(self.now, c, how);
    }

    fn forget_dial(&mut self, a: &Addr) {
        if let Some(i) = self.dials.iter().position(|d| d == a) {
            self.dials.remove(i);
        }
    }

    /// A frame on `conn`; checks that a rejected frame changes nothing.
    pub fn feed(&mut self, conn: ConnId, bytes: &[u8]) {
        fn state(n: &Node) -> impl PartialEq + std::fmt::Debug + use<> {
            (
                n.state_digest(),
                n.incarnation(),
                n.pending_calls(),
                n.running_invocations(),
                n.status(),
            )
        }
        fn quiet(n: &Node) -> impl PartialEq + std::fmt::Debug + use<> {
            (
                n.connections().collect::<Vec<_>>(),
                n.dialing_count(),
                n.timer_count(),
                n.poll_timeout(),
                n.active_view(),
                n.passive_view_len(),
            )
        }
        let before = state(&self.node);
        let calm = quiet(&self.node);
        let (sends, orders) = (self.node.queued_transmits(), self.node.queued_orders());
        if let Err(e) = self.node.handle_frame(self.now, conn, bytes) {
            assert_eq!(
                before,
                state(&self.node),
                "a rejected frame ({e}) changed the node"
            );
            let sent = self.node.queued_transmits().saturating_sub(sends);
            if matches!(e, FrameError::RateLimited) {
                // A call beyond the sender's rate is answered Overloaded
                // (one frame, after a Hello if the node never spoke on that
                // connection).
                assert!(sent <= 2, "a rate-limited frame sent {sent} frames");
            } else {
                // Any other rejected frame does nothing at all.
                assert_eq!(
                    calm,
                    quiet(&self.node),
                    "a rejected frame ({e}) changed connections or timers"
                );
                assert_eq!(
                    self.node.queued_orders(),
                    orders,
                    "a rejected frame ({e}) ordered something"
                );
            }
        }
    }

    /// Applies one step, carries out the orders, checks the invariants.
    pub fn step(&mut self, step: &Step) {
        let now = self.now;
        match step {
            Step::Frame(from, msg, framing) => {
                let bytes = frame(&msg.get(), framing);
                let c = self.conn(&from.addr());
                self.feed(c, &bytes);
            }
            Step::Raw(from, bytes) => {
                let c = self.conn(&from.addr());
                self.feed(c, bytes);
            }
            Step::On(n, msg) => {
                let bytes = frame(&msg.get(), &Framing::Normal);
                self.feed(ConnId(u64::from(n % 16)), &bytes);
            }
            Step::Reply(pick, good) => {
                if let Some((conn, to, reply)) = self.reply(*pick, *good) {
                    // Bridge peers speak with their own cluster's tag.
                    let bridged = self.node.bridges().iter().any(|b| b.0 == to)
                        || matches!(reply, Message::BridgeHello(_));
                    let framing = if bridged {
                        Framing::OtherCluster
                    } else {
                        Framing::Normal
                    };
                    let bytes = frame(&reply, &framing);
                    self.feed(conn, &bytes);
                }
            }
            Step::Handshake(w) => {
                let i = w.0 % 10;
                let hello = Message::Hello(wire::Hello {
                    node: id(i),
                    incarnation: 1,
                    addr: addr(i),
                    min_version: wire::MIN_PROTOCOL_VERSION,
                    max_version: wire::PROTOCOL_VERSION,
                    cluster_id: CLUSTER.into(),
                    role: wire::Role::Member,
                });
                let c = self.conn(&addr(i));
                self.feed(c, &frame(&hello, &Framing::Normal));
            }
            Step::Advance(a) => {
                self.now = advance(self.now, *a, self.node.poll_timeout());
                self.node.handle_timeout(self.now);
            }
            Step::Accept(w) => self.accept(&w.addr()),
            Step::Connected(w, reuse) => {
                let a = w.addr();
                self.forget_dial(&a);
                self.dialed(&a, *reuse);
            }
            Step::Answer(pick, ok) => {
                if !self.dials.is_empty() {
                    let i = usize::from(*pick) % self.dials.len();
                    if let Some(a) = self.dials.remove(i) {
                        if *ok {
                            self.dialed(&a, false);
                        } else {
                            self.node.handle_dial_failed(now, &a);
                        }
                    }
                }
            }
            Step::DialFailed(w) => {
                let a = w.addr();
                self.forget_dial(&a);
                self.node.handle_dial_failed(now, &a);
            }
            Step::Closed(w, how) => {
                if let Some(c) = self.by_addr.get(&w.addr()).copied() {
                    self.close(c, how.get());
                }
            }
            Step::Hang(h) => self.hang = *h,
            Step::Finish(pick, how) => {
                if !self.held.is_empty() {
                    let c = self.held[usize::from(*pick) % self.held.len()];
                    self.close(c, how.get());
                }
            }
            Step::Join(seeds) => self.node.join(now, seeds.iter().map(|w| w.addr())),
            Step::Leave => self.node.leave(now),
            Step::Import(u) => {
                let updates: Vec<Update> = u.iter().map(Upd::get).collect();
                self.node.import(now, &updates);
            }
            Step::Local(l) => local(
                &mut self.node,
                now,
                l,
                &mut self.calls,
                &mut self.invocations,
            ),
        }
        self.after();
    }

    /// Carries out every order and takes every event.
    fn drain(&mut self) {
        let mut n = 0usize;
        loop {
            Checker::check_queues(&self.node);
            if let Some(o) = self.node.poll_order() {
                n += 1;
                assert!(n < 100_000, "the node orders without end");
                assert!(!self.stopped, "an order after Stop: {o:?}");
                self.carry_out(o);
            } else if let Some(e) = self.node.poll_event() {
                on_event(e, &mut self.calls);
            } else {
                break;
            }
        }
    }

    fn carry_out(&mut self, o: Order) {
        match o {
            Order::Send(t) => {
                let msg = sent_message(&self.node, &t);
                let peer = self
                    .open
                    .get(&t.conn)
                    .unwrap_or_else(|| panic!("a frame on {:?}, which is not open", t.conn));
                assert!(
                    !(peer.dialed && peer.addr == *self.node.addr()),
                    "a node sent to itself"
                );
                let Some(msg) = msg else {
                    return; // an answer to an upstream client
                };
                if self.recent.len() == 16 {
                    self.recent.pop_front();
                }
                self.recent.push_back((t.conn, peer.addr.clone(), msg));
            }
            Order::Dial(a) => {
                check_dial(&self.node, &a);
                if self.dials.len() == 16 {
                    self.dials.pop_front();
                }
                self.dials.push_back(a);
            }
            Order::Close(c) => {
                assert!(
                    self.open.contains_key(&c),
                    "Close of {c:?}, which is not open"
                );
                if self.hang {
                    self.held.push(c);
                } else {
                    self.close(c, Closed::Clean);
                }
            }
            Order::Abort(c) => {
                assert!(
                    self.open.contains_key(&c),
                    "Abort of {c:?}, which is not open"
                );
                self.close(c, Closed::Clean);
            }
            Order::Invoke(inv) => invoked(&mut self.invocations, inv.id),
            Order::Cancel(id) => cancelled(&mut self.invocations, id),
            Order::Stop => self.stopped = true,
        }
    }

    fn after(&mut self) {
        self.drain();
        self.checker.check(&self.node, self.held.len(), self.now);
        let open = &self.open;
        check_runtime(&self.node, self.stopped, &self.invocations, |c| {
            open.contains_key(&c)
        });
    }

    /// What the addressee of a recent frame might answer, and the
    /// connection it answers on.
    fn reply(&mut self, pick: u8, good: bool) -> Option<(ConnId, Addr, Message)> {
        if self.recent.is_empty() {
            return None;
        }
        let i = usize::from(pick) % self.recent.len();
        let (conn, to, msg) = self.recent.remove(i)?;
        let peer = (0..10u8).find(|i| addr(*i) == to).map(id);
        let m = match msg {
            Message::Hello(_) | Message::Join(_) => Message::Hello(wire::Hello {
                node: peer?,
                incarnation: 1,
                addr: to.clone(),
                min_version: wire::MIN_PROTOCOL_VERSION,
                max_version: wire::PROTOCOL_VERSION,
                cluster_id: CLUSTER.into(),
                role: wire::Role::Member,
            }),
            Message::Ping(seq) => Message::Ack(wire::Ack { seq, load: 0 }),
            Message::PingReq(r) if good => Message::IndirectAck(r.seq),
            Message::PingReq(r) => Message::Nack(r.seq),
            Message::Neighbor(_) => Message::NeighborReply(good),
            Message::Call(c) => Message::Response(wire::CallResponse {
                id: c.id,
                result: if good {
                    Ok(c.args)
                } else {
                    Err(CallError::Overloaded)
                },
                load: 1,
            }),
            Message::FedCall(c) => Message::FedResponse(wire::CallResponse {
                id: c.id,
                result: if good {
                    Ok(c.args)
                } else {
                    Err(CallError::Unreachable)
                },
                load: 1,
            }),
            Message::BridgeHello(_) if good => Message::BridgeHello(wire::BridgeHello {
                node: peer?,
                addr: to.clone(),
                cluster_id: OTHER.into(),
            }),
            Message::BridgeHello(_) => Message::BridgeReject("no".into()),
            Message::Summary(_) => Message::Summary(wire::ClusterSummary {
                version: 1,
                routes: vec![wire::RouteAd {
                    path: vec![OTHER.into()],
                    functions: vec![wire::FnAd {
                        name: "f0".into(),
                        version: semver::Version::new(1, 0, 0),
                        sets: vec![resources(&[0])],
                        idempotent: true,
                    }],
                }],
            }),
            Message::SyncRanges(r) if good => Message::SyncRanges(wire::SyncRanges {
                level: r.level,
                ranges: r
                    .ranges
                    .iter()
                    .map(|d| wire::RangeDigest {
                        index: d.index,
                        hash: wire::H64(0),
                        count: 0,
                    })
                    .collect(),
            }),
            Message::SyncRanges(r) => Message::SyncRanges(wire::SyncRanges {
                level: r.level.saturating_add(1),
                ranges: r
                    .ranges
                    .iter()
                    .map(|d| wire::RangeDigest {
                        index: d.index.wrapping_mul(16),
                        hash: wire::H64(1),
                        count: 3,
                    })
                    .collect(),
            }),
            Message::SyncSummaries(s) => {
                Message::SyncPull(s.members.iter().map(|(id, _)| *id).collect())
            }
            Message::IHave(ids) => Message::Graft(ids),
            Message::Graft(_) | Message::Gossip(_) => Message::Prune,
            Message::Shuffle(s) => Message::ShuffleReply(s.sample),
            _ => return None,
        };
        // On the connection the frame went out on, while it is open.
        let conn = match self.open.get(&conn) {
            Some(p) if p.addr == to => conn,
            _ => self.conn(&to),
        };
        Some((conn, to, m))
    }
}

/// The clock after `a`.
pub fn advance(now: Time, a: Advance, deadline: Option<Time>) -> Time {
    let to = match a {
        Advance::ToDeadline => deadline.unwrap_or(now).max(now),
        Advance::Millis(n) => now + Duration::from_millis(u64::from(n)),
        Advance::Secs(n) => now + Duration::from_secs(u64::from(n % 16)),
        Advance::Minutes(n) => now + Duration::from_secs(60 * u64::from(n % 8)),
    };
    to.max(now)
}

/// Takes an event: a finished call is forgotten.
pub fn on_event(e: Event, calls: &mut Vec<CallId>) {
    if let Event::CallDone { call, .. } = e {
        calls.retain(|c| *c != call);
    }
}

/// Applies an application command. `invs` are the handlers running (as
/// the runtime knows them): completing one of them succeeds, completing
/// anything else fails.
pub fn local(
    node: &mut Node,
    now: Time,
    l: &Local,
    calls: &mut Vec<CallId>,
    invs: &mut Vec<InvocationId>,
) {
    match l {
        Local::Register {
            name,
            ver,
            res,
            idempotent,
        } => {
            let spec = FunctionSpec {
                name: name.get("f"),
                version: ver.get(),
                resources: resources(res),
                idempotent: *idempotent,
            };
            let _ = node.register(now, spec);
        }
        Local::Unregister(name, ver) => {
            let _ = node.unregister(now, &name.get("f"), &ver.get());
        }
        Local::Call {
            function,
            req,
            locs,
            big_args,
            timeout_ms,
            target,
        } => {
            let mut call = Call::new(function.get("f"));
            call.target_cluster = target.as_ref().map(Cluster::get);
            call.version_req = req.get();
            call.locs = resources(locs);
            if *big_args {
                call.args = Bytes::from(vec![7u8; node.config().limits.max_frame_size]);
            }
            call.timeout = timeout_ms.map(|t| Duration::from_millis(u64::from(t)));
            if let Ok(id) = node.call(now, call)
                && calls.len() < 64
            {
                calls.push(id);
            }
        }
        Local::Cancel(pick) => {
            let id = match calls.len() {
                0 => CallId {
                    origin: node.id(),
                    incarnation: 1,
                    seq: u64::from(*pick),
                },
                n => calls[usize::from(*pick) % n],
            };
            let _ = node.cancel(now, id);
        }
        Local::Complete { pick, ok, big } => {
            if invs.is_empty() {
                return;
            }
            let inv = invs.remove(usize::from(*pick) % invs.len());
            let len = if *big {
                node.config().limits.max_frame_size
            } else {
                3
            };
            let result = if *ok {
                Ok(Bytes::from(vec![1u8; len]))
            } else {
                Err("x".repeat(len))
            };
            let r = node.complete_invocation(now, inv, result);
            assert!(r.is_ok(), "completing running {inv:?}: {r:?}");
        }
        Local::CompleteUnknown(i) => {
            let inv = InvocationId(*i);
            let r = node.complete_invocation(now, inv, Ok(Bytes::new()));
            let running = invs.contains(&inv);
            assert!(
                invs.len() >= 64 || r.is_ok() == running,
                "completing {inv:?} (running: {running}): {r:?}"
            );
            invs.retain(|x| *x != inv);
        }
        Local::Leave => node.leave(now),
        Local::Bridge(c, seeds) => {
            let b = BridgeConfig {
                cluster: c.get().to_string(),
                seeds: seeds.iter().map(|w| w.addr()).collect(),
            };
            let _ = node.bridge(now, b);
        }
    }
}

// ----- two nodes over a faulty link -------------------------------------------

/// What dials of the peer do.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialMode {
    /// They connect at once.
    Connect,
    /// They fail at once.
    Refuse,
    /// They never finish (the core gives up on them).
    Hang,
}

/// One input to a pair of nodes.
#[derive(Arbitrary, Debug, Clone)]
pub enum PairStep {
    /// Delivers the frame at this position of a direction's queue.
    Deliver(bool, u8),
    /// Delivers it and keeps a copy (a duplicate).
    Duplicate(bool, u8),
    /// Loses it.
    Drop(bool, u8),
    /// Delivers a direction's whole queue in order.
    Flush(bool),
    /// Breaks every connection: queued frames are lost, both sides are
    /// told; the next frame needs a new dial.
    Break,
    /// What dials of the peer do from now on.
    Dials(DialMode),
    /// The clock moves; due timers fire on both nodes.
    Advance(Advance),
    /// A command on one node.
    Local(bool, Local),
}

/// One node's end of a connection of [`Pair`].
#[derive(Debug, Clone, Copy)]
struct End {
    /// The other node's end.
    peer: ConnId,
    /// The other node closed its end: this one is reported closed once the
    /// frames the other wrote before closing are delivered (or lost);
    /// `true` if this node's own frames went unread.
    peer_closed: Option<bool>,
}

/// Two nodes and the link between them: every connection is a pair of
/// ends, one on each node, and frames in flight wait in one queue per
/// direction, each with the receiving end's id.
#[derive(Debug)]
pub struct Pair {
    /// Node 1 (`sim://1`, which joins through node 2) and node 2
    /// (`sim://2`).
    pub nodes: [Node; 2],
    /// The clock.
    pub now: Time,
    /// Frames in flight: `[1 → 2, 2 → 1]`.
    pub link: [VecDeque<(ConnId, Bytes)>; 2],
    /// Ends not reported closed yet: (node, its end).
    ends: BTreeMap<(usize, ConnId), End>,
    /// Ends reported closed (a node may still have frames for one, queued
    /// before it heard).
    closed: BTreeSet<(usize, ConnId)>,
    next: u64,
    dials: DialMode,
    stopped: [bool; 2],
    checkers: [Checker; 2],
    calls: [Vec<CallId>; 2],
    invocations: [Vec<InvocationId>; 2],
}

/// The config of pair nodes: the small one with room for both and their
/// traffic.
pub fn pair_config(seed: u64) -> Config {
    let mut c = small_config(seed);
    c.limits.max_queued_transmits = 4096;
    c.limits.peer_frames_per_sec = 100_000;
    c.limits.peer_frame_burst = 100_000;
    c
}

impl Pair {
    /// Two fresh nodes; node 1 joins through node 2.
    pub fn new(seed: u64) -> Pair {
        let now = Time::ZERO;
        let a = make_node(pair_config(seed), 1, now);
        let b = make_node(pair_config(seed.wrapping_add(1)), 2, now);
        let mut p = Pair {
            nodes: [a, b],
            now,
            link: [VecDeque::new(), VecDeque::new()],
            ends: BTreeMap::new(),
            closed: BTreeSet::new(),
            next: 0,
            dials: DialMode::Connect,
            stopped: [false; 2],
            checkers: [Checker::default(), Checker::default()],
            calls: [Vec::new(), Vec::new()],
            invocations: [Vec::new(), Vec::new()],
        };
        p.after();
        p.nodes[0].join(now, [addr(2)]);
        p.after();
        p
    }

    /// Runs the faulty phase decoded from `u`, then heals the link and
    /// checks that the two converge.
    pub fn run(u: &mut Unstructured<'_>) -> Result<()> {
        let mut p = Pair::new(u.arbitrary()?);
        let trace = std::env::var_os("MPREG_FUZZ_TRACE").is_some();
        while !u.is_empty() {
            let step: PairStep = u.arbitrary()?;
            if trace {
                eprintln!("{:?} {step:?}", p.now);
            }
            p.step(&step);
        }
        p.converge();
        Ok(())
    }

    /// A frame to node `to` on its end `conn`, if that is still open.
    fn deliver(&mut self, to: usize, conn: ConnId, frame: &[u8]) {
        if self.ends.contains_key(&(to, conn)) {
            let _ = self.nodes[to].handle_frame(self.now, conn, frame);
        }
    }

    /// Applies one step, carries out the orders, checks both nodes.
    pub fn step(&mut self, step: &PairStep) {
        let now = self.now;
        match step {
            PairStep::Deliver(to_b, pick) | PairStep::Duplicate(to_b, pick) => {
                let from = usize::from(!*to_b);
                let q = &mut self.link[from];
                if !q.is_empty() {
                    let i = usize::from(*pick) % q.len();
                    let f = if matches!(step, PairStep::Duplicate(..)) {
                        Some(q[i].clone())
                    } else {
                        q.remove(i)
                    };
                    if let Some((c, f)) = f {
                        self.deliver(1 - from, c, &f);
                    }
                }
            }
            PairStep::Drop(to_b, pick) => {
                let q = &mut self.link[usize::from(!*to_b)];
                if !q.is_empty() {
                    let i = usize::from(*pick) % q.len();
                    q.remove(i);
                }
            }
            PairStep::Flush(to_b) => {
                let from = usize::from(!*to_b);
                let frames: Vec<(ConnId, Bytes)> = self.link[from].drain(..).collect();
                for (c, f) in frames {
                    self.deliver(1 - from, c, &f);
                }
            }
            PairStep::Break => self.break_link(),
            PairStep::Dials(m) => self.dials = *m,
            PairStep::Advance(adv) => {
                let deadline = self.nodes.iter().filter_map(Node::poll_timeout).min();
                self.now = advance(now, *adv, deadline);
                for n in &mut self.nodes {
                    n.handle_timeout(self.now);
                }
            }
            PairStep::Local(on_a, l) => {
                let i = usize::from(!*on_a);
                local(
                    &mut self.nodes[i],
                    now,
                    l,
                    &mut self.calls[i],
                    &mut self.invocations[i],
                );
            }
        }
        self.after();
    }

    /// Forgets end `(i, c)` and reports it closed to node `i`; frames in
    /// flight to it are lost.
    fn report(&mut self, i: usize, c: ConnId, how: Closed) {
        self.ends.remove(&(i, c));
        self.closed.insert((i, c));
        self.link[1 - i].retain(|(to, _)| *to != c);
        self.nodes[i].handle_closed(self.now, c, how);
    }

    /// End `(i, c)` ends as `how` (it broke, or its node aborted it), and
    /// the other end breaks (unless its node closed it already).
    fn sever(&mut self, i: usize, c: ConnId, how: Closed) {
        if let Some(e) = self.ends.get(&(i, c)).copied() {
            self.report(i, c, how);
            if e.peer_closed.is_none() && self.ends.contains_key(&(1 - i, e.peer)) {
                self.report(1 - i, e.peer, Closed::Lost);
            }
        }
    }

    /// Every connection breaks: frames in flight are lost.
    fn break_link(&mut self) {
        self.link[0].clear();
        self.link[1].clear();
        let all: Vec<(usize, ConnId)> = self.ends.keys().copied().collect();
        for (i, c) in all {
            if self.ends.contains_key(&(i, c)) {
                self.report(i, c, Closed::Lost);
            }
        }
    }

    /// Ends whose peer closed and whose last frames have arrived (or were
    /// lost) are reported closed. Returns whether there were any.
    fn settle(&mut self) -> bool {
        let done: Vec<(usize, ConnId, bool)> = self
            .ends
            .iter()
            .filter_map(|((i, c), e)| {
                let unsent = e.peer_closed?;
                let pending = self.link[1 - i].iter().any(|(to, _)| to == c);
                (!pending).then_some((*i, *c, unsent))
            })
            .collect();
        for (i, c, unsent) in &done {
            let how = if *unsent {
                Closed::Unsent
            } else {
                Closed::Clean
            };
            self.report(*i, *c, how);
        }
        !done.is_empty()
    }

    /// Node `i` closes its end `c`: what it wrote there still arrives (a
    /// close waits for the queue), what the peer wrote is never read; the
    /// peer hears once the last frame is in. An abort breaks it at once.
    fn close(&mut self, i: usize, c: ConnId, abort: bool) {
        let j = 1 - i;
        let Some(e) = self.ends.get(&(i, c)).copied() else {
            // A break or the peer's close got there first (and the node
            // heard of it).
            assert!(
                self.closed.contains(&(i, c)),
                "node {i} closed {c:?}, which was never open"
            );
            return;
        };
        if abort {
            return self.sever(i, c, Closed::Clean);
        }
        if e.peer_closed.is_none()
            && let Some(p) = self.ends.get_mut(&(j, e.peer))
        {
            let unsent = self.link[j].iter().any(|(to, _)| *to == c);
            p.peer_closed = Some(unsent);
        }
        self.report(i, c, Closed::Clean);
    }

    fn fresh(&mut self) -> ConnId {
        self.next += 1;
        ConnId(self.next)
    }

    fn carry_out(&mut self, i: usize, o: Order) {
        let (j, now) = (1 - i, self.now);
        match o {
            Order::Send(t) => {
                sent_message(&self.nodes[i], &t);
                match self.ends.get_mut(&(i, t.conn)) {
                    Some(e) => match e.peer_closed {
                        // Never read: the peer closed.
                        Some(_) => e.peer_closed = Some(true),
                        None => {
                            if self.link[i].len() < 10_000 {
                                self.link[i].push_back((e.peer, t.frame));
                            }
                        }
                    },
                    // Queued before the node heard of the close.
                    None => assert!(
                        self.closed.contains(&(i, t.conn)),
                        "node {i} sent on {:?}, which was never open",
                        t.conn
                    ),
                }
            }
            Order::Dial(a) => {
                check_dial(&self.nodes[i], &a);
                let peer = a == *self.nodes[j].addr() && !self.stopped[j];
                match self.dials {
                    DialMode::Connect if peer => {
                        let (x, y) = (self.fresh(), self.fresh());
                        let end = |peer| End {
                            peer,
                            peer_closed: None,
                        };
                        self.ends.insert((i, x), end(y));
                        self.ends.insert((j, y), end(x));
                        self.nodes[j].handle_accepted(now, y);
                        self.nodes[i].handle_dialed(now, &a, x);
                    }
                    DialMode::Hang if peer => {}
                    _ => self.nodes[i].handle_dial_failed(now, &a),
                }
            }
            Order::Close(c) => self.close(i, c, false),
            Order::Abort(c) => self.close(i, c, true),
            Order::Invoke(inv) => invoked(&mut self.invocations[i], inv.id),
            Order::Cancel(id) => cancelled(&mut self.invocations[i], id),
            Order::Stop => {
                // The process is gone: what it had open breaks (what it
                // closed still arrives).
                self.stopped[i] = true;
                for c in ends_of(&self.ends, i) {
                    self.sever(i, c, Closed::Lost);
                }
            }
        }
    }

    /// Carries out both nodes' orders until neither has any, and reports
    /// the closes that are done.
    fn drain(&mut self) {
        let mut n = 0usize;
        loop {
            let mut idle = true;
            for i in 0..2 {
                loop {
                    Checker::check_queues(&self.nodes[i]);
                    if let Some(o) = self.nodes[i].poll_order() {
                        n += 1;
                        assert!(n < 200_000, "the nodes order without end");
                        assert!(!self.stopped[i], "node {i}: an order after Stop: {o:?}");
                        self.carry_out(i, o);
                        idle = false;
                    } else if let Some(e) = self.nodes[i].poll_event() {
                        on_event(e, &mut self.calls[i]);
                    } else {
                        break;
                    }
                }
            }
            if idle && !self.settle() {
                break;
            }
        }
    }

    fn after(&mut self) {
        self.drain();
        for i in 0..2 {
            self.checkers[i].check(&self.nodes[i], 0, self.now);
            let ends = &self.ends;
            check_runtime(&self.nodes[i], self.stopped[i], &self.invocations[i], |c| {
                ends.contains_key(&(i, c))
            });
        }
    }

    /// Whether the two hold the same state and each holds the other Alive;
    /// or, where one left, it has stopped and the other no longer holds it
    /// live.
    pub fn converged(&self) -> bool {
        let [a, b] = &self.nodes;
        let gone = |n: &Node| n.status() >= Status::Draining;
        let forgot = |n: &Node, of: &Node| {
            of.status() == Status::Stopped && !n.member_state(&of.id()).is_some_and(|s| s.is_live())
        };
        match (gone(a), gone(b)) {
            (false, false) => {
                a.state_digest() == b.state_digest()
                    && a.member_state(&b.id()) == Some(MemberState::Alive)
                    && b.member_state(&a.id()) == Some(MemberState::Alive)
                    && a.replicated_state() == b.replicated_state()
            }
            (true, false) => forgot(b, a),
            (false, true) => forgot(a, b),
            (true, true) => a.status() == Status::Stopped && b.status() == Status::Stopped,
        }
    }

    /// Heals the link: dials connect, every frame is delivered in order,
    /// handlers answer, and the clock runs. Panics unless the two converge
    /// within a minute of simulated time.
    pub fn converge(&mut self) {
        // A clean link starts with fresh connections (a stream transport
        // reports the loss of frames as a broken connection).
        self.dials = DialMode::Connect;
        self.break_link();
        self.after();
        let start = self.now;
        let limit = start + Duration::from_secs(60);
        loop {
            let mut n = 0;
            while !(self.link[0].is_empty() && self.link[1].is_empty()) {
                self.step(&PairStep::Flush(true));
                self.step(&PairStep::Flush(false));
                n += 1;
                assert!(n < 10_000, "the two nodes talk forever");
            }
            for on_a in [true, false] {
                while !self.invocations[usize::from(!on_a)].is_empty() {
                    let done = Local::Complete {
                        pick: 0,
                        ok: true,
                        big: false,
                    };
                    self.step(&PairStep::Local(on_a, done));
                }
            }
            if self.converged() {
                return;
            }
            assert!(
                self.now < limit,
                "no convergence a minute after the link healed:\n\
                 a ({:?}): {:?} {:?}\nb ({:?}): {:?} {:?}",
                self.nodes[0].status(),
                self.nodes[0].members().collect::<Vec<_>>(),
                self.nodes[0].state_digest(),
                self.nodes[1].status(),
                self.nodes[1].members().collect::<Vec<_>>(),
                self.nodes[1].state_digest(),
            );
            self.step(&PairStep::Advance(Advance::ToDeadline));
            if self.link.iter().all(VecDeque::is_empty) {
                // Nothing was due yet: move on a little.
                self.step(&PairStep::Advance(Advance::Millis(10)));
            }
        }
    }
}

/// The connections node `i` has an end of.
fn ends_of<V>(ends: &BTreeMap<(usize, ConnId), V>, i: usize) -> Vec<ConnId> {
    ends.range((i, ConnId(0))..=(i, ConnId(u64::MAX)))
        .map(|((_, c), _)| *c)
        .collect()
}

// ----- configurations -----------------------------------------------------------

/// Nodes on an in-memory network that delivers in waves, handlers that
/// answer at once: the runtime of [`exercise`].
struct Mesh {
    nodes: Vec<Node>,
    now: Time,
    /// Ends not reported closed yet: (node, its end) → (the other node,
    /// its end).
    ends: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    /// Ends whose peer closed: reported closed once the frames written
    /// before are delivered.
    closing: BTreeSet<(usize, ConnId)>,
    /// Frames in flight: (to, its end, frame).
    wire: VecDeque<(usize, ConnId, Bytes)>,
    next: u64,
    stopped: Vec<bool>,
    checkers: Vec<Checker>,
}

impl Mesh {
    fn fresh(&mut self) -> ConnId {
        self.next += 1;
        ConnId(self.next)
    }

    /// Carries out every node's orders until none has any.
    fn drain(&mut self) {
        let mut n = 0usize;
        loop {
            let mut idle = true;
            for i in 0..self.nodes.len() {
                loop {
                    Checker::check_queues(&self.nodes[i]);
                    let Some(o) = self.nodes[i].poll_order() else {
                        break;
                    };
                    n += 1;
                    assert!(n < 1_000_000, "the nodes order without end");
                    assert!(!self.stopped[i], "node {i}: an order after Stop: {o:?}");
                    self.carry_out(i, o);
                    idle = false;
                }
                while self.nodes[i].poll_event().is_some() {}
            }
            if idle {
                break;
            }
        }
    }

    /// Forgets end `(i, c)` and reports it closed; frames to it are lost.
    fn report(&mut self, i: usize, c: ConnId, how: Closed) {
        self.ends.remove(&(i, c));
        self.closing.remove(&(i, c));
        self.wire.retain(|(to, e, _)| (*to, *e) != (i, c));
        self.nodes[i].handle_closed(self.now, c, how);
    }

    /// End `(i, c)` ends as `how` (it broke, or its node aborted it), and
    /// the other end breaks (unless its node closed it already).
    fn sever(&mut self, i: usize, c: ConnId, how: Closed) {
        if let Some(&(j, p)) = self.ends.get(&(i, c)) {
            let peer_open = !self.closing.contains(&(i, c));
            self.report(i, c, how);
            if peer_open && self.ends.contains_key(&(j, p)) {
                self.report(j, p, Closed::Lost);
            }
        }
    }

    fn carry_out(&mut self, i: usize, o: Order) {
        let now = self.now;
        match o {
            Order::Send(t) => {
                sent_message(&self.nodes[i], &t);
                if let Some(&(to, c)) = self.ends.get(&(i, t.conn)) {
                    self.wire.push_back((to, c, t.frame));
                }
            }
            Order::Dial(a) => {
                check_dial(&self.nodes[i], &a);
                let to = (0..self.nodes.len())
                    .find(|j| *j != i && !self.stopped[*j] && *self.nodes[*j].addr() == a);
                match to {
                    Some(j) => {
                        let (x, y) = (self.fresh(), self.fresh());
                        self.ends.insert((i, x), (j, y));
                        self.ends.insert((j, y), (i, x));
                        self.nodes[j].handle_accepted(now, y);
                        self.nodes[i].handle_dialed(now, &a, x);
                    }
                    None => self.nodes[i].handle_dial_failed(now, &a),
                }
            }
            Order::Close(c) => {
                // What it wrote still arrives; the peer hears after. (An
                // end not in `ends` was reported closed already.)
                if let Some(&(j, p)) = self.ends.get(&(i, c)) {
                    if !self.closing.contains(&(i, c)) {
                        self.closing.insert((j, p));
                    }
                    self.report(i, c, Closed::Clean);
                }
            }
            Order::Abort(c) => self.sever(i, c, Closed::Clean),
            Order::Invoke(inv) => {
                let r = self.nodes[i].complete_invocation(now, inv.id, Ok(inv.args));
                assert!(r.is_ok(), "completing {:?} at once: {r:?}", inv.id);
            }
            // Queued with its `Invoke` before the handler ran.
            Order::Cancel(_) => {}
            Order::Stop => {
                // The process is gone: what it had open breaks.
                self.stopped[i] = true;
                for c in ends_of(&self.ends, i) {
                    self.sever(i, c, Closed::Lost);
                }
            }
        }
    }

    /// Breaks every connection between nodes `i` and `j`.
    fn cut(&mut self, i: usize, j: usize) {
        let broken: Vec<ConnId> = self
            .ends
            .iter()
            .filter(|((n, _), (m, _))| *n == i && *m == j)
            .map(|((_, c), _)| *c)
            .collect();
        for c in broken {
            self.sever(i, c, Closed::Lost);
        }
    }

    /// Delivers every frame in flight, then reports the closes whose last
    /// frames arrived; false if there was nothing to do.
    fn deliver(&mut self) -> bool {
        let frames: Vec<_> = self.wire.drain(..).collect();
        for (to, c, f) in &frames {
            if self.ends.contains_key(&(*to, *c)) {
                let _ = self.nodes[*to].handle_frame(self.now, *c, f);
            }
        }
        let done: Vec<(usize, ConnId)> = self
            .closing
            .iter()
            .filter(|(j, p)| !self.wire.iter().any(|(to, e, _)| (to, e) == (j, p)))
            .copied()
            .collect();
        for (j, p) in &done {
            self.report(*j, *p, Closed::Clean);
        }
        !frames.is_empty() || !done.is_empty()
    }

    fn check(&mut self) {
        for (i, n) in self.nodes.iter().enumerate() {
            self.checkers[i].check(n, 0, self.now);
            let ends = &self.ends;
            check_runtime(n, self.stopped[i], &[], |c| ends.contains_key(&(i, c)));
        }
    }
}

/// Runs a short three-node scenario on any configuration that validates:
/// join, register, call, a broken connection, a leave, another call, a
/// few seconds of protocol time. Nothing may panic, every invariant holds.
pub fn exercise(cfg: &Config) {
    let mk = |i: u128, seed_off: u64| {
        let mut c = cfg.clone();
        c.rng_seed = c.rng_seed.wrapping_add(seed_off);
        Node::new(
            c,
            Identity {
                id: NodeId::from_u128(i),
                key: mpreg_proto::testing::key(i),
                addr: Addr::new(format!("cfg://{i}")),
                incarnation: 1,
            },
            Time::ZERO,
        )
        .expect("a validated config makes a node")
    };
    let mut m = Mesh {
        nodes: vec![mk(1 << 120, 0), mk(9 << 120, 1), mk(5 << 120, 2)],
        now: Time::ZERO,
        ends: BTreeMap::new(),
        closing: BTreeSet::new(),
        wire: VecDeque::new(),
        next: 0,
        stopped: vec![false; 3],
        checkers: (0..3).map(|_| Checker::default()).collect(),
    };
    m.drain();
    let addrs: Vec<Addr> = m.nodes.iter().map(|n| n.addr().clone()).collect();
    let spec = FunctionSpec::new("echo").resources(["r"]).idempotent(true);
    let now = m.now;
    let _ = m.nodes[1].register(now, spec.clone());
    let _ = m.nodes[2].register(now, spec);
    m.nodes[0].join(now, [addrs[1].clone()]);
    m.nodes[2].join(now, [addrs[0].clone()]);
    for round in 0..60 {
        // Deliver everything, in waves.
        for _ in 0..8 {
            m.drain();
            if !m.deliver() {
                break;
            }
        }
        m.drain();
        m.check();
        let now = m.now;
        match round {
            10 | 40 => {
                let _ = m.nodes[0].call(now, Call::new("echo").locs(["r"]).args("x"));
            }
            20 => m.cut(2, 1),
            30 => m.nodes[1].leave(now),
            _ => {}
        }
        m.drain();
        m.check();
        let next = m
            .nodes
            .iter()
            .filter_map(Node::poll_timeout)
            .min()
            .unwrap_or(now);
        m.now = next.max(now + Duration::from_millis(1));
        for n in &mut m.nodes {
            n.handle_timeout(m.now);
        }
        m.drain();
        m.check();
    }
}

/// A configuration from fuzzed tweaks of the small one: each field is
/// kept or replaced by an arbitrary value.
pub fn tweaked_config(u: &mut Unstructured<'_>) -> Result<Config> {
    fn d(u: &mut Unstructured<'_>, v: &mut Duration) -> Result<()> {
        if u.ratio(1, 4)? {
            *v = match u.int_in_range(0..=3)? {
                0 => Duration::from_micros(u.int_in_range(0..=2_000_000)?),
                1 => Duration::from_secs(u.arbitrary()?),
                2 => Duration::MAX,
                _ => Duration::ZERO,
            };
        }
        Ok(())
    }
    fn n<'a, T: Arbitrary<'a> + TryFrom<u8>>(u: &mut Unstructured<'a>, v: &mut T) -> Result<()> {
        if u.ratio(1, 4)? {
            *v = if u.arbitrary()? {
                u.arbitrary()?
            } else {
                T::try_from(u.int_in_range(0..=8u8)?)
                    .map_err(|_| arbitrary::Error::IncorrectFormat)?
            };
        }
        Ok(())
    }
    let mut c = small_config(u.arbitrary()?);
    for (_, v) in c.durations_mut() {
        d(u, v)?;
    }
    let m = &mut c.membership;
    n(u, &mut m.indirect_probes)?;
    n(u, &mut m.suspicion_confirmations)?;
    n(u, &mut m.suspicion_speedup)?;
    n(u, &mut m.max_local_health)?;
    let o = &mut c.overlay;
    for v in [
        &mut o.active_view_extra,
        &mut o.active_view_min,
        &mut o.active_view_max,
        &mut o.active_view_slack,
        &mut o.passive_view_size,
        &mut o.shuffle_size,
    ] {
        n(u, v)?;
    }
    n(u, &mut o.join_walk_ttl)?;
    n(u, &mut o.passive_walk_ttl)?;
    let s = &mut c.dissemination;
    n(u, &mut s.sync_page_bytes)?;
    n(u, &mut s.sync_pages_per_exchange)?;
    n(u, &mut c.calls.hop_budget)?;
    let k = &mut c.connections;
    n(u, &mut k.max_connections)?;
    n(u, &mut k.max_held_bytes)?;
    let l = &mut c.limits;
    for v in [
        &mut l.max_frame_size,
        &mut l.max_members,
        &mut l.max_functions_per_node,
        &mut l.max_catalog_entries,
        &mut l.max_pending_calls,
        &mut l.max_invocations,
        &mut l.max_dedup_entries,
        &mut l.max_dedup_bytes,
        &mut l.max_missing_updates,
        &mut l.max_queued_transmits,
        &mut l.max_pending_announcements,
    ] {
        n(u, v)?;
    }
    n(u, &mut l.peer_frames_per_sec)?;
    n(u, &mut l.peer_frame_burst)?;
    if u.ratio(1, 8)? {
        c.cluster_id = u.arbitrary()?;
    }
    if u.ratio(1, 8)? {
        c.name = u.arbitrary()?;
    }
    let fed: Fed = u.arbitrary()?;
    fed.apply(&mut c);
    Ok(c)
}

/// Validates a configuration; one that validates must make working nodes.
pub fn check_config(cfg: &Config) {
    if cfg.validate().is_ok() {
        exercise(cfg);
    }
}
