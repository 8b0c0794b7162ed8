//! Every `MPREG_*` environment variable changes what a started node does;
//! a bad value fails with the variable named and exit code 2.

mod common;

use common::{Server, alive, eventually, free_port, run};
use mpreg_tokio::Client;
use std::time::Duration;

fn members_json(url: &str) -> serde_json::Value {
    let out = run(&["client", "--url", url, "members", "--json"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("members --json prints JSON")
}

#[test]
fn mpreg_host_and_port_choose_where_the_node_listens() {
    let port = free_port();
    let s = Server::start(
        &[],
        &[
            ("MPREG_HOST", "127.0.0.2"),
            ("MPREG_PORT", &port.to_string()),
        ],
    );
    assert_eq!(s.url, format!("ws://127.0.0.2:{port}"));
    let m = members_json(&s.url);
    assert_eq!(m["members"][0]["addr"], s.url.as_str());
    // A flag beats the environment.
    let s2 = Server::start(&["--port", "0"], &[("MPREG_PORT", &port.to_string())]);
    assert_ne!(s2.url, format!("ws://127.0.0.1:{port}"));
}

#[test]
fn mpreg_name_and_cluster_id_are_what_members_show() {
    let s = Server::start(
        &["--port", "0"],
        &[
            ("MPREG_NAME", "env-named"),
            ("MPREG_CLUSTER_ID", "env-cluster"),
        ],
    );
    let m = members_json(&s.url);
    assert_eq!(m["cluster_id"], "env-cluster");
    assert_eq!(m["members"][0]["name"], "env-named");
}

#[tokio::test]
async fn mpreg_seeds_joins_and_mpreg_resources_tags_functions() {
    let a = Server::start(&["--port", "0", "--name", "a"], &[]);
    let b = Server::start(
        &["--port", "0", "--name", "b", "--fn-echo", "tagged"],
        &[("MPREG_SEEDS", &a.url), ("MPREG_RESOURCES", "gpu, model-a")],
    );
    let ca = Client::connect(&a.url).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "a sees b through MPREG_SEEDS",
        || async { alive(&ca).await == 2 },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "b's functions carry its resources",
        || async {
            ca.catalog()
                .await
                .unwrap_or_default()
                .iter()
                .any(|e| e.name == "tagged" && e.node == b.id && e.resources == ["gpu", "model-a"])
        },
    )
    .await;
    let out = run(
        &[
            "client",
            "--url",
            &a.url,
            "call",
            "tagged",
            "[1,2]",
            "--locs",
            "gpu,model-a",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[1,2]");
}

#[test]
fn mpreg_gossip_interval_and_topology_set_the_protocol_period() {
    let s = Server::start(&["--port", "0"], &[("MPREG_GOSSIP_INTERVAL", "250ms")]);
    assert_eq!(s.printed["MPREG_GOSSIP_INTERVAL"], "250ms");
    let s = Server::start(&["--port", "0"], &[("MPREG_GOSSIP_INTERVAL", "0.4")]);
    assert_eq!(s.printed["MPREG_GOSSIP_INTERVAL"], "400ms");
    let s = Server::start(&["--port", "0"], &[("MPREG_TOPOLOGY", "edge-computing")]);
    assert_eq!(s.printed["MPREG_TOPOLOGY"], "edge-computing");
    assert_eq!(s.printed["MPREG_GOSSIP_INTERVAL"], "300ms");
    assert_eq!(s.printed["MPREG_DETECTION_BOUND_10"], "1.825s");
    // The guide's names work too, and the environment beats the template.
    let s = Server::start(
        &["--port", "0"],
        &[
            ("MPREG_TOPOLOGY", "hierarchical"),
            ("MPREG_GOSSIP_INTERVAL", "2s"),
        ],
    );
    assert_eq!(s.printed["MPREG_TOPOLOGY"], "enterprise");
    assert_eq!(s.printed["MPREG_GOSSIP_INTERVAL"], "2s");
}

#[test]
fn bad_values_fail_with_the_key_named_and_exit_code_2() {
    let long = "x".repeat(300);
    let cases: &[(&str, &str)] = &[
        ("MPREG_HOST", "   "),
        ("MPREG_PORT", "eighty"),
        ("MPREG_PORT", "65536"),
        ("MPREG_NAME", &long),
        ("MPREG_CLUSTER_ID", &long),
        ("MPREG_SEEDS", "localhost:7000"),
        ("MPREG_RESOURCES", "gpu,,cpu"),
        ("MPREG_GOSSIP_INTERVAL", "soon"),
        ("MPREG_GOSSIP_INTERVAL", "-1"),
        ("MPREG_TOPOLOGY", "ring"),
    ];
    for (k, v) in cases {
        let out = run(&["server", "start", "--port", "0"], &[(k, v)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{k}={v}: {err}");
        assert!(err.contains(k), "{k}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // Flags and config files too.
    let out = run(&["server", "start", "--seed", "nope"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seed"));
    let dir = std::env::temp_dir().join(format!("mpreg-env-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "port = 1\n[membership]\nprobe_period = \"often\"\n").unwrap();
    let out = run(
        &["server", "start", "--config", file.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("membership.probe_period") && err.contains("often"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
