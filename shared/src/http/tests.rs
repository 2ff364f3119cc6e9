use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A loopback listener that answers `204` to every connection and counts them.
async fn listener() -> (u16, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    (port, accepted)
}

fn strict() -> Sender {
    Sender::new(DestinationPolicy {
        allow_http: true,
        ..Default::default()
    })
}

/// The connector connects to a literal host without resolving it: the sender checks
/// literals itself, in every spelling, before connecting.
#[tokio::test]
async fn literal_private_hosts_are_refused_before_connecting() {
    let (port, accepted) = listener().await;
    let sender = strict();
    for (host, ip) in [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("10.0.0.1", "10.0.0.1"),
        ("169.254.169.254", "169.254.169.254"),
    ] {
        let url = format!("http://{host}:{port}/hook");
        let out = sender.post(&url, &[], Bytes::from_static(b"{}")).await;
        let error = out.error.as_deref().unwrap_or_default();
        assert!(
            error.starts_with(&format!("destination {ip} is a "))
                && error.ends_with("; only public addresses are allowed"),
            "{url}: {out:?}"
        );
        assert_eq!(out.status, None, "{url}");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "nothing was connected to"
    );
}

/// Names go through the guarded resolver, and the sentence names the address.
#[tokio::test]
async fn names_resolving_to_private_addresses_are_refused_before_connecting() {
    let (port, accepted) = listener().await;
    let out = strict()
        .post(
            &format!("http://localhost:{port}/hook"),
            &[],
            Bytes::from_static(b"{}"),
        )
        .await;
    let error = out.error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("localhost resolves to a refused address: destination ")
            && error.contains("is a loopback address"),
        "{out:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
}

/// What the policy opens is sent to: local development, and an allowlisted subnet.
#[tokio::test]
async fn opened_destinations_are_sent_to() {
    let (port, accepted) = listener().await;
    let open = Sender::new(DestinationPolicy {
        allow_private: true,
        allow_http: true,
        ..Default::default()
    });
    let peered = Sender::new(DestinationPolicy {
        allow_http: true,
        allowlist: crate::ssrf::parse_allowlist("127.0.0.0/8").expect("cidr"),
        ..Default::default()
    });
    for (sender, host) in [
        (&open, "127.0.0.1"),
        (&open, "localhost"),
        (&peered, "127.0.0.1"),
    ] {
        let url = format!("http://{host}:{port}/hook");
        let out = sender.post(&url, &[], Bytes::from_static(b"{}")).await;
        assert_eq!(out.status, Some(204), "{url}: {out:?}");
        assert!(out.succeeded(), "{url}: {out:?}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

/// A peer that answers plain HTTP where TLS is expected: the handshake fails, and the
/// history says so from rustls' own error (never from matching an error's text).
#[tokio::test]
async fn a_failed_tls_handshake_is_named() {
    let (port, accepted) = listener().await;
    let open = Sender::new(DestinationPolicy {
        allow_private: true,
        ..Default::default()
    });
    let url = format!("https://127.0.0.1:{port}/hook");
    let out = open.post(&url, &[], Bytes::from_static(b"{}")).await;
    let error = out.error.as_deref().unwrap_or_default();
    assert!(error.starts_with("TLS handshake failed: "), "{out:?}");
    assert_eq!(out.status, None);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}
