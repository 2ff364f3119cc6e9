use super::*;

#[test]
fn the_embedded_roots_are_mozillas_amazon_trust_services_roots() {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let mut embedded: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(AMAZON_TRUST_SERVICES_ROOTS)
        .map(|c| c.expect("PEM").as_ref().to_vec())
        .collect();
    let names: [&[u8]; 2] = [
        b"Amazon Root CA ",
        b"Starfield Services Root Certificate Authority - G2",
    ];
    let mut mozilla: Vec<Vec<u8>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|c| c.as_ref().to_vec())
        .filter(|der| names.iter().any(|n| der.windows(n.len()).any(|w| w == *n)))
        .collect();
    embedded.sort();
    mozilla.sort();
    assert_eq!(embedded.len(), 5);
    assert!(
        embedded == mozilla,
        "shared/src/amazon-trust-services-roots.pem differs from webpki-root-certs' roots"
    );
}

/// Constructing a client builds no connector any more (`ConnectorOnFirstRequest`); the
/// first request does, and that is where the trust store is parsed (rustls panics on a
/// certificate it cannot take). So: one real request per trust setting, through an SDK
/// client, to a loopback listener answering as DynamoDB would.
#[tokio::test]
async fn each_trust_setting_builds_its_connector_and_sends_on_first_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = tokio::spawn(async move {
        let mut targets = vec![];
        for _ in 0..2 {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.expect("read");
                assert!(n > 0, "the client closed before sending its headers");
                request.extend_from_slice(&buf[..n]);
            }
            let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
            targets.push(
                head.lines()
                    .find_map(|l| l.strip_prefix("x-amz-target: "))
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            );
            let body = br#"{"TableNames":[]}"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await.expect("write");
            stream.write_all(body).await.expect("write");
        }
        targets
    });
    for trust in [SdkTrust::Aws, SdkTrust::System] {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .endpoint_url(&endpoint)
            .http_client(sdk_http_client(trust))
            .build();
        let out = aws_sdk_dynamodb::Client::from_conf(conf)
            .list_tables()
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{trust:?}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
                )
            });
        assert_eq!(out.table_names(), &[] as &[String], "{trust:?}");
    }
    assert_eq!(
        seen.await.expect("listener"),
        ["dynamodb_20120810.listtables"; 2]
    );
}

#[test]
fn an_attempt_lease_lasts_at_least_a_deliver_invocation() {
    use std::time::Duration;
    assert_eq!(super::attempt_lease("60s"), Ok(Duration::from_secs(60)));
    assert_eq!(super::attempt_lease("2m"), Ok(Duration::from_secs(120)));
    for short in ["59s", "10s", "0s", "soon"] {
        let err = super::attempt_lease(short).expect_err(short);
        assert!(err.contains("at least 60s"), "{err}");
    }
}
