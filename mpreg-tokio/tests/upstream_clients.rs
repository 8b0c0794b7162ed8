//! Upstream MPREG's client protocol on a node's port: a client written
//! here from the reference (`shared/upstream-protocol.md`) — JSON requests
//! built by hand, over a real WebSocket — talks to nodes of this project,
//! beside a native client on the same port.

mod common;

use common::{has_functions, two_nodes};
use futures_util::{SinkExt, StreamExt};
use mpreg_testkit::eventually;
use mpreg_tokio::{Client, Node, Settings};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A connection speaking upstream's wire: one JSON message per request.
struct Upstream(Ws);

impl Upstream {
    async fn connect(node: &Node) -> Upstream {
        let (ws, _) = tokio_tungstenite::connect_async(node.addr().as_str())
            .await
            .expect("the WebSocket opens");
        Upstream(ws)
    }

    async fn send(&mut self, request: &Value, text: bool) {
        let body = request.to_string();
        let msg = if text {
            Message::Text(body.into())
        } else {
            Message::Binary(body.into_bytes().into())
        };
        self.0.send(msg).await.expect("sent");
    }

    async fn recv(&mut self) -> Value {
        let next = tokio::time::timeout(Duration::from_secs(10), self.0.next());
        match next.await.expect("an answer in time") {
            Some(Ok(Message::Binary(b))) => serde_json::from_slice(&b).expect("JSON"),
            Some(Ok(Message::Text(t))) => serde_json::from_str(&t).expect("JSON"),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn rpc(&mut self, u: &str, cmds: Value) -> Value {
        self.send(&request(u, cmds), false).await;
        let answer = self.recv().await;
        assert_eq!(answer["u"], u, "{answer}");
        answer
    }
}

fn request(u: &str, cmds: Value) -> Value {
    json!({"role": "rpc", "u": u, "cmds": cmds,
           "return_intermediate_results": false,
           "intermediate_result_callback_topic": null,
           "include_execution_summary": false, "debug_mode": false})
}

/// A command with every field of the reference.
fn cmd(name: &str, fun: &str, args: Value, locs: &[&str]) -> Value {
    json!({"name": name, "fun": fun, "args": args, "kwargs": {}, "locs": locs,
           "function_id": null, "version_constraint": null,
           "target_cluster": null, "routing_topic": null})
}

#[tokio::test]
async fn an_upstream_client_calls_echo_echos_and_the_three_step_chain() {
    let (a, _b) = two_nodes().await;
    let mut up = Upstream::connect(&a).await;
    let r = up
        .rpc("1", json!([cmd("echo", "echo", json!(["hi"]), &[])]))
        .await;
    assert_eq!(r["r"], json!({"echo": "hi"}), "{r}");
    assert_eq!(r["error"], Value::Null);
    assert_eq!(r["intermediate_results"], json!([]));
    assert!(r.get("execution_summary").is_some() && r.get("role").is_none());
    let r = up
        .rpc(
            "2",
            json!([cmd("echos", "echos", json!(["a", 1, [2]]), &[])]),
        )
        .await;
    assert_eq!(r["r"], json!({"echos": ["a", 1, [2]]}));
    // The reference's chain: only the last level comes back.
    let chain = json!([
        cmd("first", "echo", json!(["hi!"]), &[]),
        cmd("second", "echo", json!(["first"]), &[]),
        cmd("third", "echos", json!(["first", "AND ME TOO"]), &[]),
    ]);
    let r = up.rpc("3", chain.clone()).await;
    assert_eq!(
        r["r"],
        json!({"second": "hi!", "third": ["hi!", "AND ME TOO"]})
    );
    // Text frames are served too, and every level on request.
    let mut req = request("4", chain);
    req["return_intermediate_results"] = json!(true);
    up.send(&req, true).await;
    let r = up.recv().await;
    assert_eq!(r["intermediate_results"][0], json!({"first": "hi!"}), "{r}");
    // A native client on the same port keeps working.
    let native = Client::connect(a.addr().as_str()).await.unwrap();
    let hi: String = native
        .call("echo", &("native",))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(hi, "native");
}

#[tokio::test]
async fn fields_kwargs_and_locs_route_across_two_nodes() {
    let (a, b) = two_nodes().await;
    let mut up = Upstream::connect(&a).await;
    // `profile` runs on a (locs a), `greet` on b with a field of its result.
    let r = up
        .rpc(
            "f",
            json!([
                cmd("p", "profile", json!([7]), &["a"]),
                cmd("g", "greet", json!(["p.user.name"]), &["b"]),
            ]),
        )
        .await;
    assert_eq!(r["r"], json!({"g": "hello ada"}), "{r}");
    let r = up
        .rpc(
            "k",
            json!([{"name": "s", "fun": "scaled", "args": [5], "kwargs": {"scale": 3},
                     "locs": ["b"]}]),
        )
        .await;
    assert_eq!(r["r"], json!({"s": 15}), "{r}");
    // The same through b: routing is each node's own.
    let mut up_b = Upstream::connect(&b).await;
    let r = up_b
        .rpc("pb", json!([cmd("p", "profile", json!([1]), &["a"])]))
        .await;
    assert_eq!(r["r"]["p"]["user"]["id"], 1);
}

#[tokio::test]
async fn fifty_requests_in_flight_on_one_connection_are_answered_by_u() {
    let (a, _b) = two_nodes().await;
    let mut up = Upstream::connect(&a).await;
    for i in 0..50 {
        let req = request(
            &format!("req-{i}"),
            json!([cmd("echo", "echo", json!([i]), &[])]),
        );
        up.send(&req, false).await;
    }
    let mut got: HashMap<String, Value> = HashMap::new();
    for _ in 0..50 {
        let r = up.recv().await;
        got.insert(r["u"].as_str().unwrap().to_string(), r["r"]["echo"].clone());
    }
    for i in 0..50 {
        assert_eq!(got[&format!("req-{i}")], json!(i));
    }
}

#[tokio::test]
async fn errors_come_back_with_upstreams_codes_and_no_internals() {
    let (a, _b) = two_nodes().await;
    let mut up = Upstream::connect(&a).await;
    let code = |r: &Value| r["error"]["code"].as_i64();
    let r = up
        .rpc("nf", json!([cmd("nope", "nope", json!([]), &[])]))
        .await;
    assert_eq!(code(&r), Some(1001), "{r}");
    assert_eq!(r["r"], Value::Null);
    let r = up
        .rpc("nl", json!([cmd("e", "echo", json!([1]), &["gpu"])]))
        .await;
    assert_eq!(code(&r), Some(1001), "{r}");
    let r = up
        .rpc(
            "cy",
            json!([
                cmd("x", "echo", json!(["y"]), &[]),
                cmd("y", "echo", json!(["x"]), &[])
            ]),
        )
        .await;
    assert_eq!(code(&r), Some(1003), "{r}");
    assert_eq!(r["error"]["details"]["kind"], "Cycle");
    let r = up
        .rpc("self", json!([cmd("x", "echo", json!(["x"]), &[])]))
        .await;
    assert_eq!(r["error"]["details"]["kind"], "Cycle", "{r}");
    let r = up
        .rpc(
            "dup",
            json!([
                cmd("x", "echo", json!([1]), &[]),
                cmd("x", "echo", json!([2]), &[])
            ]),
        )
        .await;
    assert_eq!(r["error"]["details"]["kind"], "DuplicateName", "{r}");
    let r = up.rpc("empty", json!([])).await;
    assert_eq!(r["error"]["details"]["kind"], "Empty", "{r}");
    // A handler failing on the other node: 1003, as a local one would.
    let r = up
        .rpc("fl", json!([cmd("f", "fails", json!([]), &["b"])]))
        .await;
    assert_eq!(code(&r), Some(1003), "{r}");
    assert_eq!(
        r["error"]["details"],
        json!({"kind": "HandlerFailed", "command": "f"})
    );
    // An unknown role: 1004, as upstream answers it.
    up.send(&json!({"role": "server", "u": "srv"}), false).await;
    let r = up.recv().await;
    assert_eq!(
        (code(&r), r["u"].clone()),
        (Some(1004), json!("srv")),
        "{r}"
    );
    // The connection still serves.
    let r = up
        .rpc("ok", json!([cmd("echo", "echo", json!(["still"]), &[])]))
        .await;
    assert_eq!(r["r"]["echo"], "still");
}

/// A node named `name` with resource `name`, seeded by `seed`.
async fn stage_node(name: &str, seed: Option<&Node>) -> Node {
    Node::start(Settings {
        name: name.into(),
        resources: vec![name.into()],
        seeds: seed.map(|s| vec![s.addr().clone()]).unwrap_or_default(),
        ..Settings::local()
    })
    .await
    .unwrap()
}

/// ingest → clean → analyze → store across four nodes with different
/// resources, plus a `count` branch beside `clean` joined at `store`: the
/// right result, and each stage ran on its own node (each appends the name
/// of the node it ran on to the path it was given).
#[tokio::test]
async fn a_four_stage_workflow_runs_each_stage_on_its_own_node() {
    let n1 = stage_node("n1", None).await;
    let n2 = stage_node("n2", Some(&n1)).await;
    let n3 = stage_node("n3", Some(&n2)).await;
    let n4 = stage_node("n4", Some(&n3)).await;
    n1.register("ingest", ["n1"], |(src,): (String,)| async move {
        Ok::<_, String>(json!({"rows": [3, 1, 2], "src": src, "path": ["n1"]}))
    })
    .await
    .unwrap();
    n2.register(
        "clean",
        ["n2"],
        |(rows, path): (Vec<i64>, Vec<String>)| async move {
            let mut rows = rows;
            rows.sort_unstable();
            let path = [path, vec!["n2".to_string()]].concat();
            Ok::<_, String>(json!({"rows": rows, "path": path}))
        },
    )
    .await
    .unwrap();
    n3.register("count", ["n3"], |(rows,): (Vec<i64>,)| async move {
        Ok::<_, String>(json!({"n": rows.len(), "at": "n3"}))
    })
    .await
    .unwrap();
    n3.register("analyze", ["n3"], |(c,): (Value,)| async move {
        let sum: i64 = c["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_i64)
            .sum();
        let mut path = c["path"].clone();
        if let Some(p) = path.as_array_mut() {
            p.push(json!("n3"));
        }
        Ok::<_, String>(json!({"sum": sum, "max": c["rows"][2], "path": path}))
    })
    .await
    .unwrap();
    n4.register("store", ["n4"], |(a, n): (Value, i64)| async move {
        let mut path = a["path"].clone();
        if let Some(p) = path.as_array_mut() {
            p.push(json!("n4"));
        }
        Ok::<_, String>(json!({"stored": a["sum"], "rows": n, "path": path}))
    })
    .await
    .unwrap();
    let nodes = [&n1, &n2, &n3, &n4];
    for n in nodes {
        eventually(
            Duration::from_secs(10),
            "every stage in every catalog",
            || async { has_functions(n, &["ingest", "clean", "count", "analyze", "store"]).await },
        )
        .await;
    }
    // The client talks to n1; every stage is routed by its own locs.
    let mut up = Upstream::connect(&n1).await;
    let mut req = request(
        "wf",
        json!([
            cmd("ingest", "ingest", json!(["sensor-7"]), &["n1"]),
            cmd(
                "clean",
                "clean",
                json!(["ingest.rows", "ingest.path"]),
                &["n2"]
            ),
            cmd("count", "count", json!(["ingest.rows"]), &["n3"]),
            cmd("analyze", "analyze", json!(["clean"]), &["n3"]),
            cmd("store", "store", json!(["analyze", "count.n"]), &["n4"]),
        ]),
    );
    req["return_intermediate_results"] = json!(true);
    up.send(&req, false).await;
    let r = up.recv().await;
    assert_eq!(
        r["r"],
        json!({"store": {"stored": 6, "rows": 3, "path": ["n1", "n2", "n3", "n4"]}}),
        "{r}"
    );
    // Levels: ingest; clean and count side by side; analyze; store.
    let levels: Vec<Vec<String>> = r["intermediate_results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let mut names: Vec<String> = l.as_object().unwrap().keys().cloned().collect();
            names.sort();
            names
        })
        .collect();
    assert_eq!(
        levels,
        [
            vec!["ingest"],
            vec!["clean", "count"],
            vec!["analyze"],
            vec!["store"]
        ]
    );
    assert_eq!(r["intermediate_results"][1]["count"]["at"], "n3");
}

/// The request's own budget (this project's `timeout`, in seconds): a
/// handler slower than it is error 1004, in time.
#[tokio::test]
async fn a_request_timeout_bounds_every_command() {
    let n = Node::start(Settings::local()).await.unwrap();
    n.register("slow", Vec::<String>::new(), |(): ()| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, String>(0)
    })
    .await
    .unwrap();
    let mut up = Upstream::connect(&n).await;
    let mut req = request("t", json!([{"name": "s", "fun": "slow"}]));
    req["timeout"] = json!(0.2);
    let start = std::time::Instant::now();
    up.send(&req, false).await;
    let r = up.recv().await;
    assert_eq!(r["error"]["code"], 1004, "{r}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}
