//! The two-node cluster the multi-step tests share.
#![allow(dead_code, unreachable_pub)]

use mpreg_testkit::eventually;
use mpreg_tokio::{Node, Settings};
use serde_json::{Value, json};
use std::time::Duration;

/// Whether `n`'s catalog lists every function of `names`.
pub async fn has_functions(n: &Node, names: &[&str]) -> bool {
    let cat = n.catalog().await.unwrap_or_default();
    names.iter().all(|f| cat.iter().any(|e| e.name == *f))
}

/// Two nodes: `a` with resource "a" serves `profile`; `b` with "b" serves
/// `greet`, `scaled` (keyword arguments), `fails` and `slow` (5 s).
pub async fn two_nodes() -> (Node, Node) {
    let a = Node::start(Settings {
        resources: vec!["a".into()],
        ..Settings::local()
    })
    .await
    .unwrap();
    a.register("profile", ["a"], |(id,): (i64,)| async move {
        Ok::<_, String>(json!({"user": {"id": id, "name": "ada"}, "at": "a"}))
    })
    .await
    .unwrap();
    let b = Node::start(Settings {
        resources: vec!["b".into()],
        seeds: vec![a.addr().clone()],
        ..Settings::local()
    })
    .await
    .unwrap();
    b.register("greet", ["b"], |(name,): (String,)| async move {
        Ok::<_, String>(format!("hello {name}"))
    })
    .await
    .unwrap();
    b.register("scaled", ["b"], |(x, kw): (i64, Value)| async move {
        Ok::<_, String>(x * kw["scale"].as_i64().unwrap_or(1))
    })
    .await
    .unwrap();
    b.register("fails", ["b"], |_: Vec<Value>| async move {
        Err::<(), _>("no luck")
    })
    .await
    .unwrap();
    b.register("slow", ["b"], |(): ()| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, String>(0)
    })
    .await
    .unwrap();
    let all = ["profile", "greet", "scaled", "fails", "slow"];
    for n in [&a, &b] {
        eventually(
            Duration::from_secs(10),
            "both catalogs complete",
            || async { has_functions(n, &all).await },
        )
        .await;
    }
    (a, b)
}
