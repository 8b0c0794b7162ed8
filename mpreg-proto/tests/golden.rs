//! Golden vectors of everything nodes compare across builds: the
//! anti-entropy digest of a node's state (the sum of its members' leaves,
//! each xxh3-64 of a canonical postcard encoding, plus their catalog
//! entries') and the frame header's cluster tag. The numbers were computed
//! independently of this code; they must never change, or nodes of
//! different builds stop agreeing (and re-sync forever).

use mpreg_proto::wire::cluster_tag;
use mpreg_proto::{Addr, Config, FunctionSpec, Identity, Node, NodeId, Time};

fn node() -> Node {
    let identity = Identity {
        id: NodeId::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
        key: mpreg_proto::Keypair::from_seed([3; 32]),
        addr: Addr::new("ws://10.0.0.1:7000"),
        incarnation: 3,
    };
    let cfg = Config {
        name: "n1".into(),
        ..Config::default()
    };
    Node::new(cfg, identity, Time::ZERO).unwrap()
}

#[test]
fn a_lone_nodes_digest_is_its_member_leaf() {
    // xxh3-64 of: id | len "ws://10.0.0.1:7000" | incarnation 3 | Alive (0)
    // | no accusers (0) | len "n1"
    assert_eq!(node().state_digest(), (0x394b_47f0_aed3_b5b5, 1));
}

#[test]
fn a_function_adds_its_entry_and_its_owners_epoch_to_the_digest() {
    let mut n = node();
    let spec = FunctionSpec::new("embed")
        .version(semver::Version::new(1, 2, 3))
        .resources(["gpu", "model-a"])
        .idempotent(true);
    n.register(Time::ZERO, spec).unwrap();
    // + xxh3(owner | "embed" | "1.2.3" | scope "" | counter 1 | Some(body:
    //   {"gpu","model-a"}, idempotent, no route))
    // + xxh3(owner | epoch 3 | floor 0)
    assert_eq!(n.state_digest(), (0xe2dc_1c88_1e55_68bc, 1));
}

#[test]
fn the_cluster_tag_is_the_low_bits_of_xxh3_of_the_id() {
    assert_eq!(cluster_tag("default"), 0xac1a);
}
