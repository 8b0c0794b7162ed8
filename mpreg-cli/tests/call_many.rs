//! `mpreg client call-many FILE`: a JSON list of commands run as one
//! multi-step call by two server processes; one JSON object of every
//! result printed, refusals and failures as typed errors and exit codes.

mod common;

use common::{Server, eventually, mpreg, run};
use mpreg_tokio::Client;
use serde_json::{Value, json};
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

#[tokio::test]
async fn call_many_prints_every_result_and_fails_typed() {
    let s0 = Server::start(
        &["--port", "0", "--resource", "zero", "--fn-echo", "e0"],
        &[],
    );
    let s1 = Server::start(
        &[
            "--port",
            "0",
            "--seed",
            &s0.url,
            "--resource",
            "one",
            "--fn-echo",
            "e1",
        ],
        &[],
    );
    let c = Client::connect(&s0.url).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "both functions seen by s0",
        || async {
            let cat = c.catalog().await.unwrap_or_default();
            ["e0", "e1"]
                .iter()
                .all(|f| cat.iter().any(|e| e.name == *f))
        },
    )
    .await;
    let dir = std::env::temp_dir().join(format!("mpreg-call-many-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, v: Value| {
        let p = dir.join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p.to_string_lossy().into_owned()
    };
    // echo returns its one argument (else the list): b takes a field of
    // a's result, c both results and a field as a keyword argument.
    let cmds = json!([
        {"name": "a", "fun": "e0", "args": [{"x": ["hi"]}], "locs": ["zero"]},
        {"name": "b", "fun": "e1", "args": ["a.x.0"], "locs": ["one"]},
        {"name": "c", "fun": "e0", "args": ["a", "b"], "kwargs": {"k": "a.x"}}
    ]);
    let want = json!({
        "a": {"x": ["hi"]},
        "b": "hi",
        "c": [{"x": ["hi"]}, "hi", {"k": ["hi"]}]
    });
    let file = write("ok.json", cmds.clone());
    let out = run(&["client", "--url", &s1.url, "call-many", &file], &[]);
    assert!(out.status.success(), "{out:?}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, want);

    // The same from standard input.
    let mut child = mpreg()
        .args([
            "client",
            "--url",
            &s0.url,
            "call-many",
            "-",
            "--timeout",
            "5s",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(cmds.to_string().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), want);

    // Refused before anything runs: exit 2, the kind named.
    for (name, body, kind) in [
        (
            "cycle.json",
            json!([{"name": "x", "fun": "e0", "args": ["x"]}]),
            "Cycle",
        ),
        (
            "dup.json",
            json!([{"name": "x", "fun": "e0"}, {"name": "x", "fun": "e1"}]),
            "DuplicateName",
        ),
        ("empty.json", json!([]), "Empty"),
        ("bad.json", json!({"not": "a list"}), "Malformed"),
    ] {
        let out = run(
            &["client", "--url", &s0.url, "call-many", &write(name, body)],
            &[],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains(&format!("request refused ({kind})")),
            "{name}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
    // A command nobody serves: exit 1, the command named.
    let missing = write(
        "missing.json",
        json!([{"name": "a", "fun": "e0"}, {"name": "m", "fun": "nowhere", "args": ["a"]}]),
    );
    let out = run(&["client", "--url", &s0.url, "call-many", &missing], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("command \"m\" failed"), "{err}");
    let out = run(
        &[
            "client",
            "--url",
            &s0.url,
            "call-many",
            "/nonexistent/x.json",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
