//! Three `mpreg` processes in three clusters, bridged A — B — C by flags
//! alone; a client of A calls a function served only in C.

mod common;

use common::{Server, eventually, run};
use mpreg_tokio::Client;
use std::time::Duration;

#[tokio::test]
async fn bridges_from_flags_carry_a_call_from_a_to_c() {
    let c = Server::start(
        &[
            "--port",
            "0",
            "--cluster-id",
            "C",
            "--allow-cluster",
            "B",
            "--resource",
            "gpu",
            "--fn-echo",
            "embed",
        ],
        &[],
    );
    assert_eq!(c.printed["MPREG_POLICY"], "explicit:B");
    let b = Server::start(
        &[
            "--port",
            "0",
            "--cluster-id",
            "B",
            "--policy",
            "permissive",
            "--bridge",
            &format!("C={}", c.url),
        ],
        &[],
    );
    assert_eq!(b.printed["MPREG_BRIDGES"], format!("C={}", c.url));
    let a = Server::start(
        &[
            "--port",
            "0",
            "--cluster-id",
            "A",
            "--bridge",
            &format!("B={}", b.url),
        ],
        &[],
    );
    assert_eq!(a.printed["MPREG_POLICY"], "explicit:B");

    let client = Client::connect(&a.url).await.unwrap();
    eventually(Duration::from_secs(20), "A reaches embed in C", || async {
        client
            .call("embed", &("probe",))
            .locs(["gpu"])
            .cluster("C")
            .timeout(Duration::from_secs(2))
            .await
            .is_ok()
    })
    .await;
    let out = run(
        &[
            "client",
            "--url",
            &a.url,
            "call",
            "embed",
            "hello",
            "--cluster",
            "C",
            "--locs",
            "gpu",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "\"hello\"");
    // A cluster nobody bridges to is a typed error, not a hang.
    let out = run(
        &[
            "client",
            "--url",
            &a.url,
            "call",
            "embed",
            "x",
            "--cluster",
            "Z",
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no route to cluster \"Z\""), "{err}");
}

#[test]
fn bad_federation_flags_fail_with_the_flag_named_and_exit_code_2() {
    for (args, key) in [
        (&["--policy", "open"][..], "--policy"),
        (&["--bridge", "B"][..], "--bridge"),
        (&["--bridge", "B=localhost:1"][..], "--bridge"),
        (&["--allow-cluster", ""][..], "--allow-cluster"),
        (
            &["--policy", "strict", "--bridge", "B=ws://127.0.0.1:9"][..],
            "federation.policy",
        ),
        (
            &["--policy", "permissive", "--import", "x"][..],
            "federation.import",
        ),
        (
            &["--cluster-id", "A", "--bridge", "A=ws://127.0.0.1:9"][..],
            "federation.bridges.cluster",
        ),
    ] {
        let mut full = vec!["server", "start", "--port", "0"];
        full.extend_from_slice(args);
        let out = run(&full, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(key), "{args:?}: {err}");
    }
}
