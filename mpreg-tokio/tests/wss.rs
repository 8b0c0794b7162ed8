//! Nodes and clients over `wss://` on loopback: self-signed certificates
//! pinned by the fingerprint in the URL, certificates from PEM files signed
//! by a CA, and every way a dial must fail — a wrong pin, no pin and no CA,
//! a plain `ws://` client at a TLS listener. Every wait polls an observable
//! condition with a deadline.

use mpreg_testkit::{alive_count as alive, eventually};
use mpreg_tokio::{
    Client, ClientError, Node, Settings, TlsConfig, TlsError, WsTransport, WssTransport, wss,
};
use std::time::{Duration, Instant};

/// The typed TLS error inside a client's connect error, if any.
fn tls_error(e: &ClientError) -> Option<&TlsError> {
    match e {
        ClientError::Connect { error, .. } => error.get_ref()?.downcast_ref::<TlsError>(),
        _ => None,
    }
}

#[tokio::test]
async fn three_pinned_nodes_form_a_cluster_and_serve_a_client() {
    let a = wss::start(Settings::local()).await.unwrap();
    let url = a.addr().as_str().to_string();
    assert!(url.starts_with("wss://127.0.0.1:"), "{url}");
    assert!(url.contains("/sha256="), "self-signed, so pinned: {url}");
    let b = wss::start(Settings {
        seeds: vec![a.addr().clone()],
        ..Settings::local()
    })
    .await
    .unwrap();
    let c = wss::start(Settings {
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
        Duration::from_secs(15),
        "membership and catalog",
        || async {
            for n in nodes {
                if alive(n).await != 3 {
                    return false;
                }
                let catalog = n.catalog().await.unwrap();
                if !catalog.iter().any(|e| e.name == "triple") {
                    return false;
                }
            }
            true
        },
    )
    .await;
    // Every member's URL is a pinned wss:// URL, learnt by gossip.
    for m in a.members().await.unwrap() {
        assert!(
            m.addr.as_str().starts_with("wss://") && m.addr.as_str().contains("/sha256="),
            "{}",
            m.addr
        );
    }
    let r: i64 = a
        .call("triple", &(7,))
        .locs(["c"])
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r, 21);
    // A 1 MiB argument crosses in chunks over TLS.
    let big = vec![b'x'; 1 << 20];
    let r = b
        .call_raw("echo", big.clone())
        .locs(Vec::<String>::new())
        .await;
    assert_eq!(r.unwrap().0.len(), big.len());
    let client = wss::connect(&url).await.unwrap();
    let r: i64 = client
        .call("triple", &(5,))
        .locs(["c"])
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r, 15);
    c.leave().await;
    eventually(Duration::from_secs(10), "c left", || async {
        alive(&a).await == 2 && alive(&b).await == 2
    })
    .await;
    b.leave().await;
    a.leave().await;
}

#[tokio::test]
async fn wrong_pins_missing_trust_and_plain_clients_are_refused_quickly() {
    let a = wss::start(Settings::local()).await.unwrap();
    let url = a.addr().as_str().to_string();
    let (bare, pin) = url.split_once("/sha256=").unwrap();
    let other = WssTransport::self_signed().unwrap();
    let wrong = format!("{bare}/sha256={}", other.fingerprint().unwrap());
    assert_ne!(pin, other.fingerprint().unwrap());

    // A client with the wrong pin: TLS verification refuses the certificate.
    let e = Client::connect_with(other.clone(), &wrong, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(
            tls_error(&e),
            Some(TlsError::Handshake(
                mpreg_tls::rustls::Error::InvalidCertificate(_)
            ))
        ),
        "{e}"
    );
    // No pin and no CA: refused before any byte is sent.
    let e = wss::connect(bare).await.unwrap_err();
    let mpreg_tokio::WssError::Client(e) = e else {
        panic!("not a client error: {e}")
    };
    assert!(matches!(tls_error(&e), Some(TlsError::NoTrust)), "{e}");
    assert!(e.to_string().contains("pins no certificate"), "{e}");
    // A plain WebSocket client at the TLS listener fails, and fast: the
    // listener drops what is not a TLS handshake.
    let plain = bare.replacen("wss://", "ws://", 1);
    let started = Instant::now();
    let e = Client::connect_with(WsTransport, &plain, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The listener still serves a correct client afterwards.
    let client = wss::connect(&url).await.unwrap();
    let r: String = client.call("echo", &("ok",)).await.unwrap().json().unwrap();
    assert_eq!(r, "ok");

    // A node seeded with the wrong pin never joins: for two seconds,
    // neither side sees the other.
    let b = Node::start_with(
        other,
        Settings {
            seeds: vec![mpreg_tokio::Addr::new(wrong.clone())],
            ..Settings::local()
        },
    )
    .await
    .unwrap();
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert_eq!(alive(&a).await, 1, "a let a wrongly pinned node in");
        assert_eq!(alive(&b).await, 1, "b reached a through a wrong pin");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.leave().await;
    a.leave().await;
}

#[tokio::test]
async fn nodes_with_ca_signed_certificates_verify_each_other_by_the_ca() {
    let pki = mpreg_tls::ca_signed_pem(&["127.0.0.1", "localhost"]).unwrap();
    let dir = std::env::temp_dir().join(format!("mpreg-tokio-wss-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("node.pem"),
        dir.join("node.key"),
    );
    std::fs::write(&ca, &pki.ca).unwrap();
    std::fs::write(&cert, &pki.cert).unwrap();
    std::fs::write(&key, &pki.key).unwrap();
    let cfg = TlsConfig::from_pem(&cert, &key).with_ca(&ca);
    let a = wss::start_with(&cfg, Settings::local()).await.unwrap();
    assert!(!a.addr().as_str().contains("sha256"), "{}", a.addr());
    let b = wss::start_with(
        &cfg,
        Settings {
            seeds: vec![a.addr().clone()],
            ..Settings::local()
        },
    )
    .await
    .unwrap();
    let c = wss::start_with(
        &cfg,
        Settings {
            seeds: vec![b.addr().clone()],
            ..Settings::local()
        },
    )
    .await
    .unwrap();
    a.register("add", ["a"], |(x, y): (i64, i64)| async move {
        Ok::<_, String>(x + y)
    })
    .await
    .unwrap();
    eventually(
        Duration::from_secs(15),
        "three members, add known",
        || async {
            for n in [&a, &b, &c] {
                if alive(n).await != 3 {
                    return false;
                }
                if !n.catalog().await.unwrap().iter().any(|e| e.name == "add") {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let r: i64 = c
        .call("add", &(2, 3))
        .locs(["a"])
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r, 5);
    // A client that trusts the CA only (no certificate of its own needed).
    let client = wss::connect_with(&TlsConfig::default().with_ca(&ca), c.addr().as_str())
        .await
        .unwrap();
    let r: i64 = client
        .call("add", &(4, 5))
        .locs(["a"])
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r, 9);
    // A client with another CA refuses the chain.
    let stranger = mpreg_tls::ca_signed_pem(&["127.0.0.1"]).unwrap();
    let other_ca = dir.join("other-ca.pem");
    std::fs::write(&other_ca, &stranger.ca).unwrap();
    let e = wss::connect_with(&TlsConfig::default().with_ca(&other_ca), a.addr().as_str())
        .await
        .unwrap_err();
    let mpreg_tokio::WssError::Client(e) = e else {
        panic!("not a client error: {e}")
    };
    assert!(matches!(tls_error(&e), Some(TlsError::Handshake(_))), "{e}");
    for n in [c, b, a] {
        n.leave().await;
    }
    let _ = std::fs::remove_dir_all(dir);
}
