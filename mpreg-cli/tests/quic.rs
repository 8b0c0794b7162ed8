//! `mpreg` over QUIC: `--listen quic://…` selects the transport, seeds and
//! the client follow the URL scheme, and the pinned URL a node prints is
//! all a client needs.

mod common;

use common::{Server, run};
use std::time::{Duration, Instant};

#[test]
fn processes_form_a_cluster_over_quic_and_a_client_calls_by_the_printed_url() {
    let s0 = Server::start(
        &[
            "--listen",
            "quic://127.0.0.1:0",
            "--name",
            "q0",
            "--fn-echo",
            "zero",
        ],
        &[],
    );
    assert!(s0.url.starts_with("quic://127.0.0.1:"), "{}", s0.url);
    assert!(s0.url.contains("/sha256="), "{}", s0.url);
    // No --listen: the seed's scheme picks QUIC.
    let s1 = Server::start(
        &[
            "--port",
            "0",
            "--name",
            "q1",
            "--seed",
            &s0.url,
            "--resource",
            "one",
            "--fn-echo",
            "one",
        ],
        &[],
    );
    assert!(s1.url.starts_with("quic://"), "{}", s1.url);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = run(
            &[
                "client", "--url", &s0.url, "call", "one", "7", "--locs", "one",
            ],
            &[],
        );
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");
            break;
        }
        assert!(Instant::now() < deadline, "no call over QUIC: {out:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A URL without its pin is refused: nothing verifies the node.
    let bare = s0.url.split("/sha256=").next().unwrap_or_default();
    let out = run(&["client", "--url", bare, "members"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pins no certificate"));
    // A bad --listen is a configuration error naming the flag.
    let out = run(&["server", "start", "--listen", "tcp://127.0.0.1:0"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
}
