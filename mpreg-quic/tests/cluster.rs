//! Three nodes and a client over QUIC: membership, catalog, calls (a 4 MiB
//! one included), pinned and CA-verified certificates, a refused pin.

use mpreg_quic::{QuicConfig, QuicTransport};
use mpreg_testkit::alive_count as alive;
use mpreg_tokio::{Client, Settings};
use std::time::Duration;

/// The quic tests name what they wait for first.
async fn eventually<F, Fut>(what: &str, limit: Duration, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    mpreg_testkit::eventually(limit, what, f).await;
}

#[tokio::test]
async fn three_nodes_and_a_client_over_quic() {
    let a = mpreg_quic::start(Settings::local()).await.unwrap();
    let url = a.addr().as_str().to_string();
    assert!(url.starts_with("quic://127.0.0.1:"), "{url}");
    assert!(
        url.contains("/sha256="),
        "a self-signed node pins its certificate: {url}"
    );
    let b = mpreg_quic::start(Settings {
        seeds: vec![a.addr().clone()],
        ..Settings::local()
    })
    .await
    .unwrap();
    let c = mpreg_quic::start(Settings {
        seeds: vec![b.addr().clone()],
        ..Settings::local()
    })
    .await
    .unwrap();
    c.register("triple", ["c"], |(x,): (i64,)| async move {
        Ok::<_, String>(3 * x)
    })
    .await
    .unwrap();
    let nodes = [&a, &b, &c];
    eventually(
        "membership and catalog",
        Duration::from_secs(15),
        || async {
            for n in nodes {
                if alive(n).await != 3 {
                    return false;
                }
                if !n
                    .catalog()
                    .await
                    .unwrap()
                    .iter()
                    .any(|e| e.name == "triple")
                {
                    return false;
                }
            }
            true
        },
    )
    .await;
    for n in nodes {
        let r: i64 = n
            .call("triple", &(7,))
            .locs(["c"])
            .await
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(r, 21);
    }
    // A 4 MiB argument crosses on the call stream.
    let big = vec![b'x'; 4 << 20];
    let r = a
        .call_raw("echo", big.clone())
        .locs(Vec::<String>::new())
        .await;
    assert_eq!(r.unwrap().0.len(), big.len());
    let client = mpreg_quic::connect(&url).await.unwrap();
    let r: i64 = client
        .call("triple", &(5,))
        .locs(["c"])
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r, 15);
    // A wrong pin is refused by TLS verification.
    let other = QuicTransport::self_signed().unwrap();
    let wrong = url.replace(
        url.rsplit_once('=').unwrap().1,
        other.fingerprint().unwrap(),
    );
    let e = Client::connect_with(other, &wrong, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(e, mpreg_tokio::ClientError::Connect { .. }), "{e}");
    // Without a pin and without a CA, nothing is trusted.
    let bare = url.split("/sha256=").next().unwrap();
    assert!(mpreg_quic::connect(bare).await.is_err());
    c.leave().await;
    eventually("c left", Duration::from_secs(10), || async {
        alive(&a).await == 2 && alive(&b).await == 2
    })
    .await;
    b.leave().await;
    a.leave().await;
}

#[tokio::test]
async fn nodes_with_certificates_from_pem_files_verify_each_other_by_ca() {
    let (cert, key, der) = mpreg_quic::self_signed_pem(&["127.0.0.1", "localhost"]).unwrap();
    let dir = std::env::temp_dir().join(format!("mpreg-quic-pem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cp, kp) = (dir.join("node.pem"), dir.join("node.key"));
    std::fs::write(&cp, &cert).unwrap();
    std::fs::write(&kp, &key).unwrap();
    // A self-signed certificate for IP 127.0.0.1 serves as its own CA.
    let cfg = QuicConfig::from_pem(&cp, &kp).with_ca(&cp);
    let a = mpreg_quic::start_with(&cfg, Settings::local())
        .await
        .unwrap();
    assert!(!a.addr().as_str().contains("sha256"), "{}", a.addr());
    let b = mpreg_quic::start_with(
        &cfg,
        Settings {
            seeds: vec![a.addr().clone()],
            ..Settings::local()
        },
    )
    .await
    .unwrap();
    eventually("two members", Duration::from_secs(15), || async {
        alive(&a).await == 2 && alive(&b).await == 2
    })
    .await;
    // A client that trusts exactly this certificate (the test-only helper).
    let t = QuicTransport::new(&QuicConfig::default().trust_this_cert_for_tests(&der)).unwrap();
    let client = Client::connect_with(t, a.addr().as_str(), Duration::from_secs(5))
        .await
        .unwrap();
    let r: String = client.call("echo", &("hi",)).await.unwrap().json().unwrap();
    assert_eq!(r, "hi");
    b.leave().await;
    a.leave().await;
    let _ = std::fs::remove_dir_all(dir);
}
