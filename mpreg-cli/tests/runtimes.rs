//! `mpreg server start --runtime tokio|async-std` (or `MPREG_RUNTIME`, or
//! `runtime` in TOML): processes of both executors form one cluster.

mod common;

use common::{Server, alive, eventually, run, state_of};
use mpreg_tokio::{Client, MemberState, Settings};
use std::time::Duration;

#[tokio::test]
async fn processes_on_tokio_and_async_std_form_one_cluster() {
    let dir = std::env::temp_dir().join(format!("mpreg-runtimes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("astd.toml");
    std::fs::write(&toml, "runtime = \"async-std\"\n").unwrap();
    let toml = toml.to_str().unwrap();
    let t0 = Server::start(&["--port", "0", "--name", "t0", "--fn-echo", "on_t0"], &[]);
    let a1 = Server::start(
        &["--port", "0", "--name", "a1", "--runtime", "async-std"],
        &[("MPREG_SEEDS", &t0.url)],
    );
    let a2 = Server::start(
        &["--port", "0", "--seed", &a1.url, "--fn-echo", "on_a2"],
        &[("MPREG_RUNTIME", "async-std")],
    );
    // The flag overrides the file.
    let t3 = Server::start(
        &[
            "--port",
            "0",
            "--seed",
            &a2.url,
            "--config",
            toml,
            "--runtime",
            "tokio",
        ],
        &[],
    );
    let a4 = Server::start(&["--port", "0", "--seed", &t3.url, "--config", toml], &[]);
    let mut servers = [t0, a1, a2, t3, a4];
    let kinds: Vec<&str> = servers
        .iter()
        .map(|s| &*s.printed["MPREG_RUNTIME"])
        .collect();
    assert_eq!(
        kinds,
        ["tokio", "async-std", "async-std", "tokio", "async-std"]
    );

    let mut clients = Vec::new();
    for s in &servers {
        clients.push(Client::connect(&s.url).await.expect("client connects"));
    }
    for c in &clients {
        eventually(
            Duration::from_secs(15),
            "5 members alive everywhere",
            || async { alive(c).await == 5 },
        )
        .await;
        eventually(
            Duration::from_secs(10),
            "both functions everywhere",
            || async {
                let cat = c.catalog().await.unwrap_or_default();
                ["on_t0", "on_a2"]
                    .iter()
                    .all(|f| cat.iter().any(|e| e.name == *f))
            },
        )
        .await;
    }
    // A tokio process's function called through an async-std one, and back.
    for (via, function) in [(2, "on_t0"), (0, "on_a2")] {
        let out = run(
            &["client", "--url", &servers[via].url, "call", function, "hi"],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "\"hi\"");
    }
    // kill -9 of an async-std process: Dead everywhere within the bound.
    let bound = Settings::default().protocol.detection_bound(5) + Duration::from_millis(100);
    let dead = servers[1].id;
    servers[1].kill9();
    let others = [0, 2, 3, 4];
    let took = eventually(bound, "the killed process Dead everywhere", || async {
        for &i in &others {
            if state_of(&clients[i], dead).await != Some(MemberState::Dead) {
                return false;
            }
        }
        true
    })
    .await;
    eprintln!("kill -9 of an async-std process seen Dead everywhere in {took:?} (bound {bound:?})");
    // SIGTERM of another: a graceful leave, seen everywhere.
    let left = servers[4].id;
    let status = servers[4].terminate(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    eventually(
        Duration::from_secs(5),
        "the leave seen everywhere",
        || async {
            for &i in &others[..3] {
                if state_of(&clients[i], left).await != Some(MemberState::Left) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_runtime_fails_with_the_key_named_and_exit_code_2() {
    for (args, env, named) in [
        (vec!["--runtime", "smol"], vec![], "--runtime"),
        (vec![], vec![("MPREG_RUNTIME", "smol")], "MPREG_RUNTIME"),
        (
            vec!["--runtime", "async-std", "--listen", "quic://127.0.0.1:0"],
            vec![],
            "QUIC runs on tokio only",
        ),
    ] {
        let mut all = vec!["server", "start", "--port", "0"];
        all.extend(args);
        let out = run(&all, &env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{all:?}: {err}");
        assert!(err.contains(named), "{all:?}: {err}");
    }
}
