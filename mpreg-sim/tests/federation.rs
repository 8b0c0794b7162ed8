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

#[test]
fn resources_split_across_nodes_never_match_a_call_needing_both() {
    let mut sim = Sim::new(3);
    let a = cluster(&mut sim, "a", 2, Policy::Permissive);
    let b = cluster(&mut sim, "b", 3, Policy::Permissive);
    let c = cluster(&mut sim, "c", 2, Policy::Permissive);
    // In B one node has gpu, another model-a; in C one node has both.
    sim.register(b[1], FunctionSpec::new("embed").resources(["gpu"]));
    sim.register(b[2], FunctionSpec::new("embed").resources(["model-a"]));
    within(&mut sim, Duration::from_secs(5), |s| {
        s.node(b[0]).unwrap().live_providers("embed").count() == 2
    })
    .expect("both providers known in B before it is bridged");
    sim.bridge(a[0], "b", &[b[0]]);
    within(&mut sim, Duration::from_secs(10), |s| {
        a.iter()
            .all(|i| !s.node(*i).unwrap().catalog().providers("embed").is_empty())
    })
    .expect("B's summary reached A");
    let sets = &sim.node(a[1]).unwrap().catalog().providers("embed")[0]
        .body
        .route
        .as_ref()
        .unwrap()
        .sets;
    assert_eq!(
        sets.len(),
        2,
        "two maximal sets, never their union: {sets:?}"
    );
    let r = sim.call(a[1], Call::new("embed").locs(["gpu", "model-a"]));
    assert!(r.is_err(), "not routed to B: {r:?}");
    // Once C (one node with both) is reachable, that is where it goes.
    sim.register(
        c[1],
        FunctionSpec::new("embed").resources(["gpu", "model-a"]),
    );
    sim.bridge(a[0], "c", &[c[0]]);
    within(&mut sim, Duration::from_secs(10), |s| {
        s.node(a[1])
            .unwrap()
            .catalog()
            .providers("embed")
            .iter()
            .any(|p| p.body.route.as_ref().is_some_and(|r| r.cluster == "c"))
    })
    .expect("C's summary reached A");
    let id = sim
        .call(a[1], Call::new("embed").locs(["gpu", "model-a"]))
        .unwrap();
    sim.run_for(Duration::from_secs(3));
    assert!(matches!(outcome(&sim, id), Some(Ok(_))));
    let ran: Vec<usize> = sim
        .log
        .invocations
        .iter()
        .filter(|r| r.call == id)
        .map(|r| r.node)
        .collect();
    assert_eq!(ran, vec![c[1]]);
}

#[test]
fn a_call_survives_the_death_of_a_bridge_midway_and_runs_once() {
    // A–B–C and A–D–C; B's bridge node dies while C runs the handler.
    for_seeds(&[21, 22], |seed| {
        let mut sim = Sim::new(seed);
        let a = cluster(&mut sim, "a", 2, Policy::Permissive);
        let b = cluster(&mut sim, "b", 2, Policy::Permissive);
        let d = cluster(&mut sim, "d", 2, Policy::Permissive);
        let c = cluster(&mut sim, "c", 3, Policy::Permissive);
        sim.bridge(a[0], "b", &[b[0]]);
        sim.bridge(a[0], "d", &[d[0]]);
        sim.bridge(b[0], "c", &[c[0]]);
        sim.bridge(d[0], "c", &[c[0]]);
        sim.set_handler(Box::new(|_, _| (Duration::from_secs(6), Ok("done".into()))));
        sim.register(c[2], FunctionSpec::new("slow"));
        within(&mut sim, Duration::from_secs(10), |s| {
            s.node(a[1])
                .unwrap()
                .catalog()
                .providers("slow")
                .iter()
                .any(|p| p.body.route.is_some())
        })
        .expect("route to C");
        sim.run_for(Duration::from_secs(2));
        let id = sim.call(a[1], Call::new("slow").cluster("c")).unwrap();
        within(&mut sim, Duration::from_secs(2), |s| {
            s.log.invocations.iter().any(|r| r.call == id)
        })
        .expect("started in C");
        // Which middle cluster carried it? Kill that bridge node.
        let via_b = sim.node(b[0]).unwrap().metrics().calls_relayed > 0;
        let victim = if via_b { b[0] } else { d[0] };
        sim.crash(victim);
        sim.run_for(Duration::from_secs(20));
        assert_eq!(outcome(&sim, id), Some(Ok("done".into())), "seed {seed}");
        let runs = sim.log.invocations.iter().filter(|r| r.call == id).count();
        assert_eq!(runs, 1, "executed once");
        let other = if via_b { d[0] } else { b[0] };
        assert!(
            sim.node(other).unwrap().metrics().calls_relayed > 0,
            "re-routed through the other cluster"
        );
    });
}

#[test]
fn hop_budget_and_unknown_targets_give_typed_errors() {
    let (mut sim, cl) = chain_of_clusters(31);
    sim.register(cl[3][1], FunctionSpec::new("deep"));
    within(&mut sim, Duration::from_secs(10), |s| {
        s.node(cl[0][1])
            .unwrap()
            .catalog()
            .providers("deep")
            .iter()
            .any(|p| p.body.route.is_some())
    })
    .expect("route");
    // Node 0 of A is a bridge; its config's hop budget of 2 cannot reach D (3 hops).
    let mut tight = cfg("a", Policy::Permissive);
    tight.calls.hop_budget = 2;
    let x = sim.add_node(tight);
    sim.join(x, &[cl[0][0]]);
    within(&mut sim, Duration::from_secs(10), |s| {
        s.node(x)
            .unwrap()
            .catalog()
            .providers("deep")
            .iter()
            .any(|p| p.body.route.is_some())
    })
    .expect("x learns the route");
    let id = sim.call(x, Call::new("deep")).unwrap();
    sim.run_for(Duration::from_secs(3));
    assert_eq!(outcome(&sim, id), Some(Err(CallError::HopBudgetExhausted)));
}

/// Hierarchical tiers as clusters: locals bridge to their regional
/// cluster, regionals to the global one.
fn tiers(
    sim: &mut Sim,
    locals: &[(&str, usize, &str)],
    regionals: &[(&str, usize)],
    global: usize,
) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let g = cluster(sim, "global", global, Policy::Permissive);
    for (name, n) in regionals {
        let r = cluster(sim, name, *n, Policy::Permissive);
        sim.bridge(r[0], "global", &[g[0]]);
        out.push((name.to_string(), r));
    }
    for (name, n, region) in locals {
        let l = cluster(sim, name, *n, Policy::Permissive);
        let r0 = out
            .iter()
            .find(|(rn, _)| rn == region)
            .map(|(_, r)| r[0])
            .unwrap();
        sim.bridge(l[0], region, &[r0]);
        out.push((name.to_string(), l));
    }
    out.push(("global".into(), g));
    out
}

#[test]
fn a_local_node_calls_a_function_served_only_in_another_region() {
    for (layout, locals, regionals, global) in [
        (
            "4+2+1",
            vec![("l0", 2, "r0"), ("l1", 2, "r1")],
            vec![("r0", 1), ("r1", 1)],
            1,
        ),
        (
            "16+6+2",
            vec![
                ("l0", 4, "r0"),
                ("l1", 4, "r0"),
                ("l2", 4, "r1"),
                ("l3", 4, "r1"),
            ],
            vec![("r0", 3), ("r1", 3)],
            2,
        ),
    ] {
        let mut sim = Sim::new(41);
        let t = tiers(&mut sim, &locals, &regionals, global);
        let get = |n: &str| t.iter().find(|(c, _)| c == n).unwrap().1.clone();
        let (first, last) = (get("l0"), get(locals.last().unwrap().0));
        sim.register(
            *last.last().unwrap(),
            FunctionSpec::new("regional-only").resources(["ssd"]),
        );
        let took = within(&mut sim, Duration::from_secs(20), |s| {
            first.iter().all(|i| {
                s.node(*i)
                    .unwrap()
                    .catalog()
                    .providers("regional-only")
                    .iter()
                    .any(|p| p.body.route.is_some())
            })
        })
        .expect("the route climbs the tiers");
        let route = sim
            .node(first[0])
            .unwrap()
            .catalog()
            .providers("regional-only")[0]
            .body
            .route
            .clone()
            .unwrap();
        eprintln!("{layout}: route {:?} known after {took:?}", route.path);
        assert_eq!(route.path.first().map(|c| c.as_str()), Some("r0"));
        assert!(route.path.iter().any(|c| c == "global"));
        let id = sim
            .call(
                *first.last().unwrap(),
                Call::new("regional-only").locs(["ssd"]),
            )
            .unwrap();
        sim.run_for(Duration::from_secs(3));
        assert!(matches!(outcome(&sim, id), Some(Ok(_))), "{layout}");
    }
}

#[test]
fn a_global_tier_catalog_grows_with_clusters_not_nodes() {
    fn global_entries(clusters: usize, nodes: usize) -> usize {
        let mut sim = Sim::new(51);
        sim.record_events = false;
        let g = cluster(&mut sim, "global", 3, Policy::Permissive);
        for k in 0..clusters {
            let name = format!("c{k}");
            let c = cluster(&mut sim, &name, nodes, Policy::Permissive);
            for (i, n) in c.iter().enumerate() {
                sim.register(
                    *n,
                    FunctionSpec::new("work").resources([format!("r{}", i % 3)]),
                );
            }
            sim.bridge(c[0], "global", &[g[0]]);
        }
        sim.run_for(Duration::from_secs(20));
        let n = sim.node(g[2]).unwrap();
        assert_eq!(
            n.catalog().providers("work").len(),
            clusters,
            "one route entry per cluster"
        );
        n.catalog().total_entries()
    }
    let (small, wide, deep) = (
        global_entries(10, 5),
        global_entries(10, 20),
        global_entries(5, 20),
    );
    eprintln!("global-tier catalog entries: 10×5 → {small}, 10×20 → {wide}, 5×20 → {deep}");
    assert_eq!(small, wide, "4× the nodes per cluster, same catalog");
    assert!(deep < wide, "more clusters, more entries");
}

#[test]
fn explicit_policies_filter_clusters_and_functions() {
    let explicit = |allow: &[&str], export: &[&str], import: &[&str]| Policy::Explicit {
        allow: allow.iter().map(|s| s.to_string()).collect(),
        export: export.iter().map(|s| s.to_string()).collect(),
        import: import.iter().map(|s| s.to_string()).collect(),
    };
    let mut sim = Sim::new(61);
    // A imports only `public-*`; B exports `public-*` and `shared`; C is
    // not on A's allow-list.
    let a = cluster(&mut sim, "a", 2, explicit(&["b"], &["*"], &["public-*"]));
    let b = cluster(
        &mut sim,
        "b",
        2,
        explicit(&["a", "c"], &["public-*", "shared"], &["*"]),
    );
    let c = cluster(&mut sim, "c", 2, Policy::Permissive);
    sim.register(b[1], FunctionSpec::new("public-api"));
    sim.register(b[1], FunctionSpec::new("shared"));
    sim.register(b[1], FunctionSpec::new("internal"));
    sim.bridge(a[0], "b", &[b[0]]);
    sim.bridge(c[0], "a", &[a[0]]);
    sim.run_for(Duration::from_secs(10));
    let n = sim.node(a[1]).unwrap();
    assert!(
        !n.catalog().providers("public-api").is_empty(),
        "exported and imported"
    );
    assert!(
        n.catalog().providers("shared").is_empty(),
        "exported, but A does not import it"
    );
    assert!(
        n.catalog().providers("internal").is_empty(),
        "never exported"
    );
    assert!(
        sim.node(c[0])
            .unwrap()
            .bridges()
            .iter()
            .all(|(_, _, up)| !up),
        "A refuses C"
    );
    let id = sim.call(a[1], Call::new("public-api")).unwrap();
    sim.run_for(Duration::from_secs(2));
    assert!(matches!(outcome(&sim, id), Some(Ok(_))));
}

#[test]
fn routes_are_withdrawn_when_a_bridge_fails_and_relearned_on_heal() {
    let mut sim = Sim::new(71);
    let a = cluster(&mut sim, "a", 3, Policy::Permissive);
    let b = cluster(&mut sim, "b", 3, Policy::Permissive);
    sim.register(b[2], FunctionSpec::new("remote"));
    sim.bridge(a[0], "b", &[b[0]]);
    let has = |s: &Sim| {
        a.iter()
            .all(|i| !s.node(*i).unwrap().catalog().providers("remote").is_empty())
    };
    within(&mut sim, Duration::from_secs(10), has).expect("learned");
    let mut all: Vec<usize> = a.clone();
    sim.partition(&[&a, &b]);
    let gone = within(&mut sim, Duration::from_secs(15), |s| {
        all.iter()
            .all(|i| s.node(*i).unwrap().live_providers("remote").count() == 0)
    });
    eprintln!("withdrawn after {gone:?}");
    assert!(gone.is_some(), "routes withdrawn when the bridge fails");
    assert!(sim.call(a[1], Call::new("remote")).is_err());
    sim.heal();
    all.extend(&b);
    let back = within(&mut sim, Duration::from_secs(30), has);
    eprintln!("re-learned {back:?} after the heal");
    assert!(back.is_some());
    let id = sim.call(a[1], Call::new("remote")).unwrap();
    sim.run_for(Duration::from_secs(2));
    assert!(matches!(outcome(&sim, id), Some(Ok(_))));
}
