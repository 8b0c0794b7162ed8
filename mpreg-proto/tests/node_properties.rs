//! Properties of a whole node under arbitrary input.

use mpreg_proto::testing::Lone;
use mpreg_proto::wire::{self, CatalogDelta, CatalogEntry, MemberRecord, Message, Update};
use mpreg_proto::{Addr, Config, ConnId, FnBody, MemberState, Node, NodeId, Time};
use proptest::prelude::*;

/// Node `id` with a connection (id 1) from a peer at `sim://9`.
fn node(id: u128) -> Node {
    let mut l = Lone::new(Config::default(), id);
    l.conn(&Addr::new("sim://9"));
    l.node
}

const PEER: ConnId = ConnId(1);

fn drain(n: &mut Node) -> usize {
    let mut k = 0;
    while n.poll_order().is_some() {
        k += 1;
    }
    while n.poll_event().is_some() {
        k += 1;
    }
    k
}

fn gossip(updates: Vec<Update>) -> Vec<u8> {
    wire::encode(
        &Message::Gossip(updates),
        wire::PROTOCOL_VERSION,
        wire::cluster_tag("default"),
    )
}

fn update() -> impl Strategy<Value = Update> {
    let member = (
        0u128..6,
        1u64..4,
        0u8..4,
        proptest::collection::vec(0u128..6, 0..3),
    )
        .prop_map(|(id, inc, st, acc)| {
            let state = [
                MemberState::Alive,
                MemberState::Suspect,
                MemberState::Dead,
                MemberState::Left,
            ][st as usize];
            Update::Member(MemberRecord {
                id: NodeId::from_u128(id),
                addr: Addr::new(format!("sim://{id}")),
                incarnation: inc,
                state,
                accusers: if state == MemberState::Suspect {
                    acc.into_iter().map(NodeId::from_u128).collect()
                } else {
                    vec![]
                },
                name: Default::default(),
            })
        });
    let catalog = (
        0u128..6,
        1u64..3,
        proptest::collection::vec((0u8..3, 1u64..6, any::<bool>()), 0..3),
    )
        .prop_map(|(o, epoch, es)| {
            Update::Catalog(CatalogDelta {
                owner: NodeId::from_u128(o),
                epoch,
                floor: 0,
                complete: false,
                entries: es
                    .into_iter()
                    .map(|(n, counter, live)| CatalogEntry {
                        name: format!("f{n}").into(),
                        version: semver::Version::new(1, 0, 0),
                        scope: Default::default(),
                        counter,
                        body: live.then(|| FnBody {
                            resources: Default::default(),
                            idempotent: false,
                            route: None,
                        }),
                    })
                    .collect(),
            })
        });
    prop_oneof![3 => member, 2 => catalog]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Garbage never panics; a rejected frame changes nothing but counters
    /// and produces no output.
    #[test]
    fn rejected_frames_leave_the_node_unchanged(
        garbage in proptest::collection::vec(any::<u8>(), 0..300),
        valid in proptest::collection::vec(update(), 0..5),
    ) {
        let mut n = node(1000);
        let _ = n.handle_frame(Time::from_millis(1), PEER, &gossip(valid));
        drain(&mut n);
        let before = (n.replicated_state(), n.state_digest(), n.poll_timeout());
        let mut frames = vec![garbage.clone()];
        let mut corrupt = gossip(vec![]);
        corrupt.extend_from_slice(&garbage);
        frames.push(corrupt);
        let mut wrong_cluster = gossip(vec![]);
        wrong_cluster[4] ^= 1;
        frames.push(wrong_cluster);
        for f in frames {
            if n.handle_frame(Time::from_millis(2), PEER, &f).is_err() {
                prop_assert_eq!(drain(&mut n), 0);
                prop_assert_eq!(&(n.replicated_state(), n.state_digest(), n.poll_timeout()), &before);
            }
            drain(&mut n);
        }
        let rejected: u64 = n.metrics().rejected.iter().sum();
        prop_assert!(rejected >= 1);
    }

    /// The anti-entropy digest of two nodes is equal exactly when their
    /// replicated states are.
    #[test]
    fn digests_are_equal_exactly_when_states_are(
        a_updates in proptest::collection::vec(update(), 0..12),
        b_updates in proptest::collection::vec(update(), 0..12),
        shared in proptest::collection::vec(update(), 0..6),
    ) {
        // Two nodes with the same id see different update streams (as two
        // replicas of one node's view would).
        let (mut a, mut b) = (node(1000), node(1000));
        for (n, ups) in [(&mut a, &a_updates), (&mut b, &b_updates)] {
            for u in shared.iter().chain(ups.iter()) {
                let _ = n.handle_frame(Time::from_millis(1), PEER, &gossip(vec![u.clone()]));
                drain(n);
            }
        }
        let same_state = a.replicated_state() == b.replicated_state();
        let same_digest = a.state_digest() == b.state_digest();
        prop_assert_eq!(same_state, same_digest);
        // Feeding each the other's full state makes them equal.
        let (sa, sb) = (a.replicated_state(), b.replicated_state());
        let _ = a.handle_frame(Time::from_millis(2), PEER, &gossip(sb));
        let _ = b.handle_frame(Time::from_millis(2), PEER, &gossip(sa));
        prop_assert_eq!(a.replicated_state(), b.replicated_state());
        prop_assert_eq!(a.state_digest(), b.state_digest());
    }
}

#[test]
fn a_node_never_sends_to_itself_and_answers_pings() {
    let mut l = Lone::new(Config::default(), 1);
    let from = Addr::new("sim://2");
    let ping = wire::encode(&Message::Ping(7), 1, wire::cluster_tag("default"));
    l.frame(&from, &ping).unwrap();
    let out = l.messages();
    assert!(out.iter().all(|(to, _)| *to == from));
    assert!(matches!(
        out.last(),
        Some((_, Message::Ack(wire::Ack { seq: 7, .. })))
    ));
    assert!(l.dials.is_empty());
}
