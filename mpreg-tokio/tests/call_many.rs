//! Multi-step calls from the Rust API (`Node::call_many`,
//! `Client::call_many`) over real WebSockets: references to results and
//! their fields, each step routed by its own `locs`, typed refusals and
//! failures, and the request's own budget.

mod common;

use common::two_nodes;
use mpreg_tokio::{CallError, Client, Command, ManyError, RequestError};
use serde_json::json;
use std::time::{Duration, Instant};

fn workflow() -> Vec<Command> {
    vec![
        Command::new("p", "profile").arg(7).locs(["a"]),
        Command::new("g", "greet").arg("p.user.name").locs(["b"]),
        Command::new("s", "scaled")
            .arg(3)
            .kwarg("scale", "p.user.id")
            .locs(["b"]),
    ]
}

fn check_workflow(r: &mpreg_tokio::Results) {
    assert_eq!(r["p"]["at"], "a", "{r:?}");
    assert_eq!(r["g"], "hello ada");
    assert_eq!(r["s"], 21);
    assert_eq!(r.len(), 3, "every command's result");
}

#[tokio::test]
async fn a_node_and_a_client_run_a_multi_step_call_across_two_nodes() {
    let (a, b) = two_nodes().await;
    check_workflow(&a.call_many(workflow()).await.unwrap());
    // From a client of b: the same steps, run by b.
    let client = Client::connect(b.addr().as_str()).await.unwrap();
    check_workflow(&client.call_many(workflow()).await.unwrap());
    // Explicit references: "p" stays a string, {"$ref"} refers.
    let r = client
        .call_many([
            Command::new("p", "profile").arg(1).locs(["a"]),
            Command::new("g", "greet")
                .arg(json!({"$ref": "p.user.name"}))
                .locs(["b"]),
            Command::new("h", "greet").arg("p").locs(["b"]),
        ])
        .explicit_references()
        .await
        .unwrap();
    assert_eq!((&r["g"], &r["h"]), (&json!("hello ada"), &json!("hello p")));
}

#[tokio::test]
async fn refusals_and_failures_are_typed() {
    let (a, b) = two_nodes().await;
    let client = Client::connect(a.addr().as_str()).await.unwrap();
    let cycle = || {
        [
            Command::new("x", "greet").arg("y"),
            Command::new("y", "greet").arg("x"),
        ]
    };
    for e in [
        a.call_many(cycle()).await.unwrap_err(),
        client.call_many(cycle()).await.unwrap_err(),
    ] {
        assert!(
            matches!(&e, ManyError::Invalid(RequestError::Cycle(p)) if p.len() == 3),
            "{e:?}"
        );
    }
    assert_eq!(
        b.call_many([]).await.unwrap_err(),
        ManyError::Invalid(RequestError::Empty)
    );
    let failing = || {
        [
            Command::new("p", "profile").arg(7).locs(["a"]),
            Command::new("f", "fails").arg("p").locs(["b"]),
            Command::new("after", "greet").arg("f"),
        ]
    };
    for e in [
        a.call_many(failing()).await.unwrap_err(),
        client.call_many(failing()).await.unwrap_err(),
    ] {
        assert_eq!(
            e,
            ManyError::Failed {
                command: "f".into(),
                error: CallError::HandlerFailed("no luck".into())
            }
        );
    }
    let e = a
        .call_many([Command::new("n", "greet").arg("x").locs(["gpu"])])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ManyError::Failed { command, error: CallError::NoProvider { .. } } if command == "n"),
        "{e:?}"
    );
}

#[tokio::test]
async fn the_request_budget_bounds_every_step() {
    let (a, _b) = two_nodes().await;
    let client = Client::connect(a.addr().as_str()).await.unwrap();
    let budget = Duration::from_millis(300);
    let slow = || [Command::new("s", "slow")];
    let start = Instant::now();
    let node = a.call_many(slow()).timeout(budget).await.unwrap_err();
    let by_client = client.call_many(slow()).timeout(budget).await.unwrap_err();
    let took = start.elapsed();
    let timeout = ManyError::Failed {
        command: "s".into(),
        error: CallError::Timeout,
    };
    assert_eq!((node, by_client), (timeout.clone(), timeout));
    assert!(took < Duration::from_secs(3), "{took:?}");
}
