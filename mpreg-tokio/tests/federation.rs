//! Federated clusters over loopback WebSockets: a chain of three clusters
//! bridged A — B — C, configured from TOML, with a call from A served in C.
//! Every wait polls an observable condition with a deadline.

use mpreg_testkit::eventually;
use mpreg_tokio::config::Layer;
use mpreg_tokio::{CallError, Client, FunctionSpec, MemberState, Node, Settings};
use std::time::Duration;

/// A node on a free loopback port from a TOML document.
async fn start(toml: &str) -> Node {
    let layer = Layer::from_toml(toml, "test.toml").expect("valid TOML");
    let mut free_port = Layer::default();
    free_port.set("port", 0);
    let settings = Settings::resolve([free_port.over(layer)]).expect("valid settings");
    Node::start(settings).await.expect("node starts")
}

async fn members_of(n: &Node) -> Vec<String> {
    let mut v: Vec<String> = n
        .members()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.state == MemberState::Alive)
        .map(|m| m.name.to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_call_from_cluster_a_is_served_in_cluster_c_through_b() {
    // C: c0 accepts bridges from B (an `allow` list implies the explicit
    // policy); only c1 serves `embed`, with {gpu, model-a}.
    let c0 = start("name = \"c0\"\ncluster_id = \"C\"\n[federation]\nallow = [\"B\"]").await;
    let c1 = start(&format!(
        "name = \"c1\"\ncluster_id = \"C\"\nseeds = [\"{}\"]",
        c0.addr()
    ))
    .await;
    for name in ["embed", "other"] {
        c1.register_spec(
            FunctionSpec::new(name).resources(["gpu", "model-a"]),
            |(x,): (String,)| async move { Ok::<_, String>(format!("c1:{x}")) },
        )
        .await
        .unwrap();
    }
    // B: the transit tier, accepting any cluster and bridged to C.
    let b0 = start(&format!(
        "name = \"b0\"\ncluster_id = \"B\"\n\
         [federation]\npolicy = \"permissive\"\n\
         [[federation.bridges]]\ncluster = \"C\"\nseeds = [\"{}\"]",
        c0.addr()
    ))
    .await;
    // A: a0 bridges to B and imports only `embed*`; a1 is a plain member.
    let a0 = start(&format!(
        "name = \"a0\"\ncluster_id = \"A\"\n\
         [federation]\npolicy = \"explicit\"\nallow = [\"B\"]\nimport = [\"embed*\"]\n\
         [[federation.bridges]]\ncluster = \"B\"\nseeds = [\"{}\"]",
        b0.addr()
    ))
    .await;
    let a1 = start(&format!(
        "name = \"a1\"\ncluster_id = \"A\"\nseeds = [\"{}\"]",
        a0.addr()
    ))
    .await;

    // The route reaches a1's catalog as a route entry (not C's members).
    eventually(
        Duration::from_secs(20),
        "a1 has a route to embed",
        || async {
            a1.call("embed", &("probe",))
                .locs(["gpu", "model-a"])
                .timeout(Duration::from_secs(2))
                .await
                .is_ok()
        },
    )
    .await;
    let r: String = a1
        .call("embed", &("x",))
        .locs(["gpu", "model-a"])
        .cluster("C")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r, "c1:x");
    // A client of a1 is routed the same way.
    let client = Client::connect(a1.addr().as_str()).await.unwrap();
    let r: String = client
        .call("embed", &("y",))
        .cluster("C")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r, "c1:y");

    // a1's catalog shows the route: served in C, via B, through a0, with
    // the resource set one node there has.
    let routes: Vec<_> = a1
        .catalog()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.name == "embed")
        .collect();
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0].cluster.as_deref(), Some("C"));
    assert_eq!(routes[0].via, ["B", "C"]);
    assert_eq!(routes[0].node, a0.id());
    assert_eq!(routes[0].resources, ["gpu", "model-a"]);
    // Membership never crossed a cluster.
    assert_eq!(members_of(&a1).await, ["a0", "a1"]);
    assert_eq!(members_of(&b0).await, ["b0"]);
    assert_eq!(members_of(&c0).await, ["c0", "c1"]);
    // A imports only `embed*`; nothing routes to a cluster never heard of.
    let e = a1.call("other", &("z",)).await.unwrap_err();
    assert!(
        matches!(e, CallError::NotFound(_) | CallError::NoRoute(_)),
        "{e}"
    );
    let e = a1.call("embed", &("z",)).cluster("Z").await.unwrap_err();
    assert!(matches!(e, CallError::NoRoute(ref c) if c == "Z"), "{e}");
    for n in [a1, a0, b0, c1, c0] {
        n.leave().await;
    }
}

#[tokio::test]
async fn strict_clusters_share_nothing() {
    let a = start("name = \"a\"\ncluster_id = \"A\"").await;
    a.register("only-a", Vec::<String>::new(), |(): ()| async {
        Ok::<_, String>(1)
    })
    .await
    .unwrap();
    // b names a's address as a seed and as nothing else: under the default
    // (strict) policy a rejects it and neither side learns of the other.
    let b = start(&format!(
        "name = \"b\"\ncluster_id = \"B\"\nseeds = [\"{}\"]",
        a.addr()
    ))
    .await;
    eventually(Duration::from_secs(10), "a rejects b's frames", || async {
        a.stats().await.unwrap().frames_rejected > 0
    })
    .await;
    assert_eq!(members_of(&a).await, ["a"]);
    assert_eq!(members_of(&b).await, ["b"]);
    let e = b.call("only-a", &()).await.unwrap_err();
    assert!(matches!(e, CallError::NotFound(_)), "{e}");
    assert!(
        b.catalog()
            .await
            .unwrap()
            .iter()
            .all(|e| e.name != "only-a")
    );
    b.leave().await;
    a.leave().await;
}
