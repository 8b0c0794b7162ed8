//! Federation in the simulator: clusters bridged under policies, summaries,
//! cross-cluster calls, loop-free path vectors, failover of bridges.

mod common;

use common::*;
use mpreg_proto::{Call, CallError, Config, FunctionSpec, Policy, RejectReason};
use mpreg_sim::Sim;
use std::time::Duration;

fn cfg(cluster: &str, policy: Policy) -> Config {
    Config {
        cluster_id: cluster.into(),
        federation: mpreg_proto::FederationConfig {
            policy,
            bridges: Vec::new(),
        },
        ..Config::default()
    }
}

/// A cluster of `n` nodes seeded as a chain inside it.
fn cluster(sim: &mut Sim, name: &str, n: usize, policy: Policy) -> Vec<usize> {
    let nodes: Vec<usize> = (0..n)
        .map(|_| sim.add_node(cfg(name, policy.clone())))
        .collect();
    for i in 1..n {
        sim.join(nodes[i], &[nodes[i - 1]]);
    }
    nodes
}

fn outcome(sim: &Sim, id: mpreg_proto::CallId) -> Option<Result<bytes::Bytes, CallError>> {
    sim.log
        .calls
        .iter()
        .find(|c| c.call == id)
        .map(|c| c.result.clone())
}

#[test]
fn strict_isolation_lets_nothing_cross() {
    let mut sim = Sim::new(1);
    let a = cluster(&mut sim, "a", 3, Policy::Strict);
    let b = cluster(&mut sim, "b", 3, Policy::Permissive);
    sim.register(b[1], FunctionSpec::new("b-only"));
    sim.bridge(b[0], "a", &[a[0]]);
    sim.run_for(Duration::from_secs(10));
    let n = sim.node(a[0]).unwrap();
    assert!(
        n.metrics().rejected_for(RejectReason::WrongCluster) > 0,
        "the bridge hello was rejected"
    );
    for i in &a {
        let n = sim.node(*i).unwrap();
        assert!(n.catalog().providers("b-only").is_empty());
        assert_eq!(n.live_members(), 3, "membership never crosses");
    }
    assert!(
        sim.node(b[0])
            .unwrap()
            .bridges()
            .iter()
            .all(|(_, _, up)| !up)
    );
    assert!(matches!(
        sim.call(a[2], Call::new("b-only")),
        Err(CallError::NotFound(_))
    ));
}

/// A → B → C → D, bridged by their first nodes.
fn chain_of_clusters(seed: u64) -> (Sim, Vec<Vec<usize>>) {
    let mut sim = Sim::new(seed);
    let names = ["a", "b", "c", "d"];
    let clusters: Vec<Vec<usize>> = names
        .iter()
        .map(|n| cluster(&mut sim, n, 3, Policy::Permissive))
        .collect();
    for k in 0..3 {
        sim.bridge(clusters[k][0], names[k + 1], &[clusters[k + 1][0]]);
    }
    (sim, clusters)
}

#[test]
fn a_call_from_a_is_served_in_d_along_a_chain_of_clusters() {
    for_seeds(&[11, 12, 13], |seed| {
        let (mut sim, cl) = chain_of_clusters(seed);
        sim.set_handler(Box::new(|node, inv| {
            (
                Duration::from_millis(1),
                Ok(format!("served by {node}: {}", String::from_utf8_lossy(&inv.args)).into()),
            )
        }));
        sim.register(cl[3][2], FunctionSpec::new("deep").resources(["gpu"]));
        let took = within(&mut sim, Duration::from_secs(20), |s| {
            cl[0].iter().all(|i| {
                s.node(*i)
                    .unwrap()
                    .catalog()
                    .providers("deep")
                    .iter()
                    .any(|p| p.body.route.is_some())
            })
        })
        .expect("the route reaches every node of A");
        eprintln!("seed {seed}: route to D known in A after {took:?}");
        let route = sim.node(cl[0][1]).unwrap().catalog().providers("deep")[0]
            .body
            .route
            .clone()
            .unwrap();
        assert_eq!(route.cluster, "d");
        assert_eq!(route.path, vec!["b", "c", "d"]);
        let plain = sim
            .call(cl[0][1], Call::new("deep").locs(["gpu"]).args("x"))
            .unwrap();
        let targeted = sim
            .call(cl[0][2], Call::new("deep").cluster("d").args("y"))
            .unwrap();
        sim.run_for(Duration::from_secs(5));
        let expect = format!("served by {}: x", cl[3][2]);
        assert_eq!(outcome(&sim, plain), Some(Ok(expect.into())));
        assert!(matches!(outcome(&sim, targeted), Some(Ok(_))));
        // Exactly one execution each.
        for id in [plain, targeted] {
            assert_eq!(
                sim.log.invocations.iter().filter(|r| r.call == id).count(),
                1
            );
        }
        // Membership stayed per cluster.
        assert_eq!(sim.node(cl[0][0]).unwrap().live_members(), 3);
        // Typed errors.
        assert!(matches!(
            sim.call(cl[0][1], Call::new("deep").cluster("zz")),
            Err(CallError::NoRoute(_))
        ));
        let tight = sim.call(cl[0][1], Call::new("deep").locs(["tpu"]));
        assert!(tight.is_err(), "{tight:?}");
    });
}
