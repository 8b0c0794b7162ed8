//! Regression tests for what the fuzz targets (`fuzz/`) found, one per
//! crash, named after the property that broke. Each says which target
//! found it.

use bytes::Bytes;
use mpreg_proto::testing::Lone;
use mpreg_proto::wire::{self, Hello, MemberRecord, Message, Role};
use mpreg_proto::{Addr, Config, FrameError, Identity, MemberState, Node, NodeId, Time};

const CLUSTER: &str = "fuzz";

fn config() -> Config {
    Config {
        cluster_id: CLUSTER.into(),
        ..Config::default()
    }
}

/// A node under test whose peers are scripted: it reads like a `Node`,
/// and frames come from addresses.
struct N(Lone);

impl std::ops::Deref for N {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.0.node
    }
}

impl std::ops::DerefMut for N {
    fn deref_mut(&mut self) -> &mut Node {
        &mut self.0.node
    }
}

impl N {
    fn handle_frame(&mut self, now: Time, from: &Addr, frame: &[u8]) -> Result<(), FrameError> {
        self.0.now = now;
        self.0.frame(from, frame)
    }
}

fn node_with(cfg: Config, i: u128) -> N {
    let identity = Identity {
        id: NodeId::from_u128(i),
        key: mpreg_proto::testing::key(i),
        addr: Addr::new(format!("sim://{i}")),
        incarnation: 1,
    };
    N(Lone::with_identity(cfg, identity))
}

fn node(i: u128) -> N {
    node_with(config(), i)
}

fn frame(msg: &Message) -> Vec<u8> {
    wire::encode(msg, wire::PROTOCOL_VERSION, wire::cluster_tag(CLUSTER))
}

fn hello(id: NodeId, addr: &Addr, incarnation: u64) -> Message {
    Message::Hello(Hello {
        node: id,
        incarnation,
        addr: addr.clone(),
        min_version: wire::MIN_PROTOCOL_VERSION,
        max_version: wire::PROTOCOL_VERSION,
        cluster_id: CLUSTER.into(),
        role: Role::Member,
    })
}

/// Everything sent since the last call, by destination.
fn transmits(n: &mut N) -> Vec<(Addr, Bytes)> {
    n.0.drain();
    n.0.events.clear();
    n.0.sent.drain(..).collect()
}

/// node_inputs: a `Hello` claiming the node's own address made the node
/// queue its own `Hello` to itself. Now: such a connection is not keyed by
/// the node's own address, and the node never dials itself.
#[test]
fn a_hello_from_the_nodes_own_address_is_not_answered_to_itself() {
    let mut n = node(1);
    let me = n.addr().clone();
    let impostor = n.0.accept(&Addr::new("impostor"));
    let _ = n.0.frame_on(impostor, &frame(&hello(n.id(), &me, 1)));
    let stranger = n.0.accept(&Addr::new("stranger"));
    let nobody = Addr::new("");
    let _ =
        n.0.frame_on(stranger, &frame(&hello(NodeId::from_u128(2), &nobody, 1)));
    // A runtime that dials the node's own address gets the connection closed.
    n.0.conn(&me);
    let _ = transmits(&mut n);
    assert!(n.connections().all(|c| c.addr != me || c.closing));
    assert!(n.0.dials.is_empty(), "{:?}", n.0.dials);
}

fn gossip(records: Vec<MemberRecord>) -> Vec<u8> {
    frame(&Message::Gossip(
        records.into_iter().map(wire::Update::Member).collect(),
    ))
}

fn record(id: NodeId, addr: &Addr, incarnation: u64, state: MemberState) -> MemberRecord {
    MemberRecord {
        id,
        addr: addr.clone(),
        incarnation,
        state,
        accusers: vec![],
        name: Default::default(),
    }
}

/// node_inputs: a record of the node itself at incarnation `u64::MAX`
/// (gossiped or imported) overflowed the refutation's `incarnation + 1`.
/// Member `i` (at `sim://i`) says Hello and joins through the node.
fn join(n: &mut N, i: u128) -> (NodeId, Addr) {
    let (id, at) = (NodeId::from_u128(i), Addr::new(format!("sim://{i}")));
    let join = Message::Join(record(id, &at, 1, MemberState::Alive));
    let _ = n.handle_frame(Time::ZERO, &at, &frame(&hello(id, &at, 1)));
    let _ = n.handle_frame(Time::ZERO, &at, &frame(&join));
    (id, at)
}

#[test]
fn a_record_of_the_node_at_the_top_incarnation_is_refuted_without_overflow() {
    let mut n = node(1);
    let (me, at) = (n.id(), n.addr().clone());
    let peer = Addr::new("sim://2");
    let bad = record(me, &at, u64::MAX, MemberState::Suspect);
    let _ = n.handle_frame(Time::ZERO, &peer, &gossip(vec![bad.clone()]));
    assert_eq!(n.incarnation(), u64::MAX);
    assert_eq!(n.member_state(&me), Some(MemberState::Alive));
    // Again, and through import: the incarnation stays at the top.
    let _ = n.handle_frame(Time::ZERO, &peer, &gossip(vec![bad.clone()]));
    n.import(Time::ZERO, &[wire::Update::Member(bad)]);
    assert_eq!(n.incarnation(), u64::MAX);
    assert_eq!(n.member_state(&me), Some(MemberState::Alive));
}

/// node_inputs: an unsolicited `NeighborReply(true)` from a peer that said
/// `Hello` but is no member (unknown, or refused by the member cap) put it
/// in the active view, where nothing would ever remove it.
#[test]
fn only_live_members_enter_the_active_view() {
    let mut n = node(1);
    let (ghost, at) = (NodeId::from_u128(4), Addr::new("sim://4"));
    let _ = n.handle_frame(Time::ZERO, &at, &frame(&hello(ghost, &at, 1)));
    let _ = n.handle_frame(Time::ZERO, &at, &frame(&Message::NeighborReply(true)));
    assert!(n.active_view().is_empty(), "{:?}", n.active_view());
    assert_eq!(n.member_state(&ghost), None);
    // A joiner the member cap keeps out is not made a neighbour either.
    let mut cfg = config();
    cfg.limits.max_members = 2;
    let mut n = node_with(cfg, 1);
    for i in [2u128, 3] {
        join(&mut n, i);
    }
    assert_eq!(n.members().count(), 2);
    assert_eq!(n.active_view(), vec![NodeId::from_u128(2)]);
}

/// node_inputs: importing a snapshot in which an active peer has left (or
/// died) kept it in the active view: imports skip member events, and with
/// them the clean-up.
#[test]
fn an_imported_departure_leaves_the_active_view() {
    let mut n = node(1);
    let (id, at) = join(&mut n, 5);
    assert_eq!(n.active_view(), vec![id]);
    let left = record(id, &at, 2, MemberState::Left);
    n.import(Time::ZERO, &[wire::Update::Member(left)]);
    assert_eq!(n.member_state(&id), Some(MemberState::Left));
    assert!(n.active_view().is_empty(), "{:?}", n.active_view());
}

fn own_entries(n: &Node) -> usize {
    n.replicated_state()
        .iter()
        .filter_map(|u| match u {
            wire::Update::Catalog(d) if d.owner == n.id() => Some(d.entries.len()),
            _ => None,
        })
        .sum()
}

/// node_inputs: a node's own catalog grew past `max_functions_per_node`
/// (which counts tombstones) by registering and unregistering, and past
/// `max_catalog_entries` by registering when other owners filled it; peers
/// capped at the same numbers could then never hold all of it.
#[test]
fn own_entries_obey_the_catalog_caps_tombstones_included() {
    use mpreg_proto::{FunctionSpec, RegisterError};
    let mut cfg = config();
    cfg.limits.max_functions_per_node = 2;
    let mut n = node_with(cfg, 1);
    let v = semver::Version::new(1, 0, 0);
    for f in ["a", "b"] {
        n.register(Time::ZERO, FunctionSpec::new(f)).unwrap();
        assert!(n.unregister(Time::ZERO, f, &v));
    }
    assert_eq!(
        n.register(Time::ZERO, FunctionSpec::new("c")),
        Err(RegisterError::Limit(2))
    );
    assert_eq!(own_entries(&n), 2);
    // A key that has a tombstone takes no new room.
    n.register(Time::ZERO, FunctionSpec::new("a")).unwrap();
    assert_eq!(own_entries(&n), 2);
    assert_eq!(n.catalog().entries_of(&n.id()).count(), 1);

    let mut cfg = config();
    cfg.limits.max_catalog_entries = 2;
    let mut n = node_with(cfg, 1);
    let (peer, at) = (NodeId::from_u128(2), Addr::new("sim://2"));
    let entries = ["x", "y"]
        .iter()
        .enumerate()
        .map(|(k, name)| wire::CatalogEntry {
            name: (*name).into(),
            version: v.clone(),
            counter: k as u64 + 1,
            scope: Default::default(),
            body: Some(mpreg_proto::FnBody {
                resources: Default::default(),
                idempotent: false,
                route: None,
            }),
        })
        .collect();
    let delta = wire::CatalogDelta {
        owner: peer,
        epoch: 1,
        floor: 0,
        complete: false,
        entries,
    };
    let _ = n.handle_frame(
        Time::ZERO,
        &at,
        &gossip(vec![record(peer, &at, 1, MemberState::Alive)]),
    );
    let _ = n.handle_frame(
        Time::ZERO,
        &at,
        &frame(&Message::Gossip(vec![wire::Update::Catalog(delta)])),
    );
    assert_eq!(n.catalog().total_entries(), 2);
    assert_eq!(
        n.register(Time::ZERO, FunctionSpec::new("c")),
        Err(RegisterError::Limit(2))
    );
    assert_eq!(n.catalog().total_entries(), 2);
}

/// node_inputs: route entries a bridge node writes for what its bridges
/// offer bypassed the per-node cap: one summary could make the node's own
/// catalog as large as a frame.
#[test]
fn bridged_routes_obey_the_per_node_cap() {
    let mut cfg = config();
    cfg.limits.max_functions_per_node = 2;
    cfg.federation.policy = mpreg_proto::config::Policy::Permissive;
    let mut n = node_with(cfg, 1);
    let (peer, at) = (NodeId::from_u128(7), Addr::new("sim://7"));
    let other = wire::cluster_tag("other");
    let hello = Message::BridgeHello(wire::BridgeHello {
        node: peer,
        addr: at.clone(),
        cluster_id: "other".into(),
    });
    let v = wire::PROTOCOL_VERSION;
    n.handle_frame(Time::ZERO, &at, &wire::encode(&hello, v, other))
        .unwrap();
    assert_eq!(n.bridges().len(), 1);
    let summary = Message::Summary(wire::ClusterSummary {
        version: 1,
        routes: vec![wire::RouteAd {
            path: vec!["other".into()],
            functions: ["f0", "f1", "f2", "f3"]
                .iter()
                .map(|f| wire::FnAd {
                    name: (*f).into(),
                    version: semver::Version::new(1, 0, 0),
                    sets: vec![Default::default()],
                    idempotent: true,
                })
                .collect(),
        }],
    });
    n.handle_frame(Time::ZERO, &at, &wire::encode(&summary, v, other))
        .unwrap();
    assert_eq!(own_entries(&n), 2);
    assert!(n.metrics().limit_hits(mpreg_proto::Limit::FunctionsPerNode) >= 1);
}

/// Runs `n`'s timers for `secs` seconds of virtual time, draining its
/// output.
fn run_timers(n: &mut N, from: Time, secs: u64) {
    let end = from + std::time::Duration::from_secs(secs);
    for _ in 0..10_000 {
        let Some(t) = n.poll_timeout() else { break };
        if t > end {
            break;
        }
        n.0.advance_to(t);
        let _ = transmits(n);
    }
}

/// config (proptest `configurations_that_validate_make_working_nodes`): a
/// configuration with `Duration::MAX` intervals validated, and the first
/// timer scaled one (`sync_interval` times the cluster-size factor, or a
/// jitter above 1) overflowed in `Node::new`. Durations are now capped at
/// 365 days by `validate` (a typed error naming the key), and every
/// duration at the cap makes a node that runs.
#[test]
fn durations_beyond_the_cap_are_refused_and_durations_at_it_run() {
    use mpreg_proto::config::{ConfigError, MAX_DURATION};
    use std::time::Duration;
    let mut cfg = config();
    cfg.dissemination.sync_interval = Duration::MAX;
    match cfg.validate() {
        Err(ConfigError::Range { key, .. }) => assert_eq!(key, "dissemination.sync_interval"),
        other => panic!("{other:?}"),
    }
    let mut cfg = config();
    for (_, d) in cfg.durations_mut() {
        *d = MAX_DURATION;
    }
    cfg.validate().unwrap();
    let mut n = node_with(cfg, 1);
    let (peer, at) = (NodeId::from_u128(2), Addr::new("sim://2"));
    n.join(Time::ZERO, [at.clone()]);
    let _ = n.handle_frame(Time::ZERO, &at, &frame(&hello(peer, &at, 1)));
    let _ = transmits(&mut n);
    run_timers(&mut n, Time::ZERO, 10 * 365 * 24 * 3600);
}

/// config (proptest `configurations_that_validate_make_working_nodes`):
/// `overlay.shuffle_size = usize::MAX` validated, then a shuffle reserved
/// `shuffle_size + 1` entries (capacity overflow) and an incoming sample
/// took `shuffle_size * 2` of them (multiply overflow).
#[test]
fn a_huge_shuffle_size_neither_overflows_nor_over_allocates() {
    let mut cfg = config();
    cfg.overlay.shuffle_size = usize::MAX;
    cfg.validate().unwrap();
    let mut n = node_with(cfg, 1);
    let (peer, at) = join(&mut n, 2);
    let _ = transmits(&mut n);
    assert_eq!(n.active_view(), vec![peer]);
    let sample = (3..8u128)
        .map(|i| wire::PeerInfo {
            id: NodeId::from_u128(i),
            addr: Addr::new(format!("sim://{i}")),
        })
        .collect();
    let shuffle = Message::Shuffle(wire::Shuffle {
        origin: wire::PeerInfo {
            id: peer,
            addr: at.clone(),
        },
        ttl: 0,
        sample,
    });
    let _ = n.handle_frame(Time::ZERO, &at, &frame(&shuffle));
    run_timers(&mut n, Time::ZERO, 60);
}

/// config: `overlay.passive_view_size = 0` validated, and the first peer
/// offered to the (empty, full) passive view made the node pick a victim
/// from an empty range.
#[test]
fn a_zero_passive_view_stays_empty() {
    let mut cfg = config();
    cfg.overlay.passive_view_size = 0;
    cfg.overlay.active_view_max = 1;
    cfg.overlay.active_view_min = 1;
    cfg.validate().unwrap();
    let mut n = node_with(cfg, 1);
    for i in [2u128, 3, 4] {
        join(&mut n, i);
    }
    let _ = transmits(&mut n);
    run_timers(&mut n, Time::ZERO, 30);
    assert!(n.active_view().len() <= 1, "{:?}", n.active_view());
}

/// config (a timeout, not a panic): `MPREG_GOSSIP_INTERVAL=7e-9` made a
/// 7 ns probe period that validated; `Time` counts microseconds, so the
/// probe timer was re-armed at `now` and `handle_timeout` never returned.
/// Periods below 1 µs are now refused, and a timer a handler re-arms at
/// `now` (a 1 µs period halved) waits for the next `handle_timeout`.
#[test]
fn periods_below_the_clocks_resolution_are_refused() {
    use mpreg_proto::config::ConfigError;
    use std::time::Duration;
    let mut cfg = config();
    let m = &mut cfg.membership;
    m.probe_period = Duration::from_nanos(7);
    m.probe_timeout_min = Duration::from_nanos(7);
    m.probe_timeout_max = Duration::from_nanos(7);
    match cfg.validate() {
        Err(ConfigError::Range { key, .. }) => assert_eq!(key, "membership.probe_period"),
        other => panic!("{other:?}"),
    }
    let mut cfg = config();
    let m = &mut cfg.membership;
    m.probe_period = Duration::from_micros(1);
    m.probe_timeout_min = Duration::from_micros(1);
    m.probe_timeout_max = Duration::from_micros(1);
    cfg.validate().unwrap();
    let mut n = node_with(cfg, 1);
    join(&mut n, 2);
    run_timers(&mut n, Time::ZERO, 1);
}

/// config: `overlay.active_view_extra` (or `active_view_slack`) near
/// `usize::MAX` validated, and the view target `⌈log₂ n⌉ + extra` (and the
/// view maximum `target + slack`) overflowed when a member joined.
#[test]
fn huge_active_view_extra_and_slack_saturate() {
    for (extra, slack) in [(usize::MAX, 0), (1, usize::MAX)] {
        let mut cfg = config();
        cfg.overlay.active_view_extra = extra;
        cfg.overlay.active_view_slack = slack;
        cfg.validate().unwrap();
        assert_eq!(
            cfg.active_view_target(100),
            if extra == 1 {
                8
            } else {
                cfg.overlay.active_view_max
            }
        );
        let mut n = node_with(cfg, 1);
        for i in [2u128, 3] {
            join(&mut n, i);
        }
        assert_eq!(n.active_view().len(), 2);
        run_timers(&mut n, Time::ZERO, 5);
    }
}

/// config: `membership.indirect_probes` near `usize::MAX` validated; a
/// failed probe then looked for `4 × indirect_probes` helpers (overflow,
/// and with fewer members a loop that never ends). Helpers are now at most
/// the members there are.
#[test]
fn huge_indirect_probes_ask_at_most_every_member() {
    let mut cfg = config();
    cfg.membership.indirect_probes = usize::MAX / 2;
    cfg.validate().unwrap();
    let mut n = node_with(cfg, 1);
    for i in [2u128, 3, 4] {
        join(&mut n, i);
    }
    // Nobody answers: probes time out and go indirect.
    run_timers(&mut n, Time::ZERO, 10);
    assert!(n.metrics().indirect_probes > 0);
}

/// config: `membership.suspicion_confirmations = u32::MAX` validated, and
/// the suspicion timeout's `ln(k + 1)` overflowed in `u32` when a member
/// was first suspected.
#[test]
fn the_suspicion_timeout_takes_any_number_of_confirmations() {
    let mut cfg = config();
    cfg.membership.suspicion_confirmations = u32::MAX;
    cfg.validate().unwrap();
    let (max, min) = (cfg.suspicion_max(10), cfg.suspicion_min(10));
    for c in [0, 1, 1000, u32::MAX - 1, u32::MAX] {
        let t = cfg.suspicion_timeout(10, c);
        assert!(min <= t && t <= max, "{c}: {t:?}");
    }
}

/// node_inputs: with every session an active peer's (a view as large as
/// `max_sessions`), a frame from a new address made a session past the
/// cap: eviction only considered sessions of non-active peers. The cap is
/// `connections.max_connections` now, and holds the same way.
#[test]
fn connections_stay_within_the_cap_when_active_peers_fill_it() {
    let mut cfg = config();
    cfg.connections.max_connections = 2;
    cfg.validate().unwrap();
    let mut n = node_with(cfg, 1);
    for i in [2u128, 3] {
        join(&mut n, i);
    }
    assert_eq!(n.active_view().len(), 2);
    assert_eq!(n.connection_count(), 2);
    // An accepted connection is refused; a dial finds no room either.
    n.0.accept(&Addr::new("sim://9"));
    let gossip = Message::Gossip(vec![wire::Update::Member(record(
        NodeId::from_u128(9),
        &Addr::new("sim://9"),
        1,
        MemberState::Alive,
    ))]);
    let _ = n.handle_frame(Time::ZERO, &Addr::new("sim://2"), &frame(&gossip));
    let _ = transmits(&mut n);
    assert!(
        n.connection_count() <= 2,
        "{} connections",
        n.connection_count()
    );
    assert!(n.metrics().limit_hits(mpreg_proto::Limit::Connections) >= 1);
}

/// node_inputs (the connection harness): a connection the node had ordered
/// closed was still treated as open — a `Hello` on it re-keyed it and made
/// it primary, so frames to that address went onto a closing connection
/// and were lost unreported.
#[test]
fn a_closing_connection_is_never_rekeyed_or_made_primary() {
    let mut cfg = config();
    cfg.connections.idle_timeout = std::time::Duration::from_secs(1);
    let mut n = node_with(cfg, 1);
    // The runtime is slow to close: the close stays pending.
    let c = mpreg_proto::ConnId(77);
    n.handle_accepted(Time::ZERO, c);
    n.0.drain();
    n.handle_timeout(Time::from_secs(2));
    assert!(n.connections().any(|v| v.id == c && v.closing));
    let peer = Addr::new("sim://2");
    let hello = frame(&hello(NodeId::from_u128(2), &peer, 1));
    let _ = n.0.node.handle_frame(Time::from_secs(2), c, &hello);
    n.handle_dialed(Time::from_secs(2), &peer, c);
    let v = n.connections().find(|v| v.id == c).unwrap();
    assert!(!v.primary && v.addr != peer, "{v:?}");
    // Nothing went out on it after its close.
    let mut after_close = false;
    while let Some(o) = n.0.node.poll_order() {
        match o {
            mpreg_proto::Order::Close(x) if x == c => after_close = true,
            mpreg_proto::Order::Send(t) if t.conn == c => {
                assert!(!after_close, "a frame on a closing connection")
            }
            _ => {}
        }
    }
}

/// node_inputs: a `Stopped` node still took commands — `import` refuted
/// its own `Left` record back to `Alive`, and a call stayed pending for
/// ever — because guards tested `status == Left`.
#[test]
fn a_stopped_node_takes_no_commands() {
    let mut n = node(1);
    n.0.node.leave(Time::ZERO);
    n.0.drain();
    assert!(n.0.stopped);
    let me = n.id();
    let own = record(me, &n.addr().clone(), 1, MemberState::Suspect);
    n.import(Time::ZERO, &[wire::Update::Member(own)]);
    assert_eq!(n.member_state(&me), Some(MemberState::Left));
    assert_eq!(n.incarnation(), 1);
    assert!(n.call(Time::ZERO, mpreg_proto::Call::new("f")).is_err());
    assert_eq!(n.pending_calls(), 0);
    n.join(Time::ZERO, [Addr::new("sim://2")]);
    let _ = transmits(&mut n);
    assert!(n.0.dials.is_empty());
}
