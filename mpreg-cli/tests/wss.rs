//! `mpreg` over `wss://`: `--listen wss://…` with a self-signed certificate
//! (the printed URL pins it; seeds and clients follow it), nodes with PEM
//! files signed by a CA (`--tls-*` flags and `MPREG_TLS_*` variables, the
//! client trusting `--tls-ca`), and the refusals: no pin without a CA, and
//! wss:// on async-std.

mod common;

use common::{Server, run};
use std::time::{Duration, Instant};

/// Calls `fun 7` through `url` until it answers 7 or the deadline passes.
fn call_until_answered(url: &str, fun: &str, locs: &str, extra: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut args = vec!["client", "--url", url];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["call", fun, "7", "--locs", locs]);
        let out = run(&args, &[]);
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");
            return;
        }
        assert!(Instant::now() < deadline, "no call over wss: {out:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn processes_form_a_pinned_wss_cluster_and_a_client_calls_by_the_printed_url() {
    let s0 = Server::start(
        &[
            "--listen",
            "wss://127.0.0.1:0",
            "--name",
            "w0",
            "--fn-echo",
            "zero",
        ],
        &[],
    );
    assert!(s0.url.starts_with("wss://127.0.0.1:"), "{}", s0.url);
    assert!(s0.url.contains("/sha256="), "{}", s0.url);
    // No --listen: the seed's scheme picks wss.
    let s1 = Server::start(
        &[
            "--port",
            "0",
            "--name",
            "w1",
            "--seed",
            &s0.url,
            "--resource",
            "one",
            "--fn-echo",
            "one",
        ],
        &[],
    );
    assert!(s1.url.starts_with("wss://"), "{}", s1.url);
    let s2 = Server::start(
        &[
            "--listen",
            "wss://127.0.0.1:0",
            "--name",
            "w2",
            "--seed",
            &s1.url,
            "--resource",
            "two",
            "--fn-echo",
            "two",
        ],
        &[],
    );
    // A function of w2 called through w0, which reaches w2 only by gossip.
    call_until_answered(&s0.url, "two", "two", &[]);
    call_until_answered(&s2.url, "one", "one", &[]);
    let out = run(&["client", "--url", &s1.url, "members", "--json"], &[]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{v}");
    assert!(
        members
            .iter()
            .all(|m| m["addr"].as_str().unwrap().starts_with("wss://")),
        "{v}"
    );
    // A URL without its pin is refused: nothing verifies the node.
    let bare = s0.url.split("/sha256=").next().unwrap_or_default();
    let out = run(&["client", "--url", bare, "members"], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("pins no certificate"));
    // wss:// on async-std is a configuration error that says why.
    let out = run(
        &[
            "server",
            "start",
            "--listen",
            "wss://127.0.0.1:0",
            "--runtime",
            "async-std",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokio only"));
}

#[test]
fn nodes_with_ca_signed_pem_files_verify_by_the_ca_from_flags_and_environment() {
    let pki = mpreg_tls::ca_signed_pem(&["127.0.0.1", "localhost"]).unwrap();
    let dir = std::env::temp_dir().join(format!("mpreg-cli-wss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("node.pem"),
        dir.join("node.key"),
    );
    std::fs::write(&ca, &pki.ca).unwrap();
    std::fs::write(&cert, &pki.cert).unwrap();
    std::fs::write(&key, &pki.key).unwrap();
    let (ca, cert, key) = (
        ca.to_str().unwrap(),
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    );
    // Flags on one node...
    let s0 = Server::start(
        &[
            "--listen",
            "wss://127.0.0.1:0",
            "--name",
            "c0",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "--tls-ca",
            ca,
            "--resource",
            "zero",
            "--fn-echo",
            "zero",
        ],
        &[],
    );
    assert!(
        !s0.url.contains("sha256"),
        "a CA-verified node pins nothing: {}",
        s0.url
    );
    // ...the environment on the other (and the old --quic-* name of a flag).
    let s1 = Server::start(
        &[
            "--listen",
            "wss://127.0.0.1:0",
            "--name",
            "c1",
            "--seed",
            &s0.url,
            "--quic-ca",
            ca,
            "--resource",
            "one",
            "--fn-echo",
            "one",
        ],
        &[("MPREG_TLS_CERT", cert), ("MPREG_TLS_KEY", key)],
    );
    assert!(!s1.url.contains("sha256"), "{}", s1.url);
    call_until_answered(&s0.url, "one", "one", &["--tls-ca", ca]);
    // The client's trust from the environment works the same.
    let out = run(
        &[
            "client", "--url", &s1.url, "call", "zero", "7", "--locs", "zero",
        ],
        &[("MPREG_TLS_CA", ca)],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");
    // Without the CA, the client has nothing to verify the node with.
    let out = run(&["client", "--url", &s1.url, "members"], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // A certificate without its key is a configuration error.
    let out = run(
        &[
            "server",
            "start",
            "--listen",
            "wss://127.0.0.1:0",
            "--tls-cert",
            cert,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("both or neither"));
    drop((s0, s1));
    let _ = std::fs::remove_dir_all(dir);
}
