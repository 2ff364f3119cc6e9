use super::*;

const HOSTILE: &[(&str, &str)] = &[
    ("https://127.0.0.1/", "loopback"),
    ("https://127.1.2.3:8443/x", "loopback"),
    ("https://2130706433/", "loopback"),
    ("https://0x7f000001/", "loopback"),
    ("https://017700000001/", "loopback"),
    ("https://0x7f.1/", "loopback"),
    ("https://localhost/", "loopback name"),
    ("https://api.localhost/", "loopback name"),
    ("https://10.0.0.1/", "private"),
    ("https://172.16.5.4/", "private"),
    ("https://172.31.255.255/", "private"),
    ("https://192.168.1.1/", "private"),
    ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ("https://[fd00:ec2::254]/", "unique-local"),
    ("https://100.64.0.1/", "carrier-grade NAT"),
    ("https://100.127.255.254/", "carrier-grade NAT"),
    ("https://[fc00::1]/", "unique-local"),
    ("https://[::1]/", "loopback"),
    ("https://[::ffff:127.0.0.1]/", "IPv4-mapped"),
    ("https://[::ffff:8.8.8.8]/", "IPv4-mapped"),
    ("https://[::127.0.0.1]/", "IPv4-compatible"),
    ("https://0.0.0.0/", "unspecified"),
    ("https://0/", "unspecified"),
    ("https://224.0.0.1/", "multicast"),
    ("https://[ff02::1]/", "multicast"),
    ("https://255.255.255.255/", "broadcast"),
    ("https://192.0.2.10/", "documentation"),
    ("https://198.51.100.7/", "documentation"),
    ("https://203.0.113.9/", "documentation"),
    ("https://[2001:db8::1]/", "documentation"),
    ("https://240.0.0.1/", "reserved"),
    ("https://198.18.0.1/", "benchmarking"),
    ("https://[fe80::1]/", "link-local"),
    ("https://[64:ff9b::a00:1]/", "NAT64"),
];

#[test]
fn hostile_targets_are_refused_for_the_right_reason() {
    assert!(HOSTILE.len() >= 25);
    let policy = DestinationPolicy::default();
    for (url, why) in HOSTILE {
        let err = policy.check_url(url).expect_err(url).to_string();
        assert!(err.contains(why), "{url}: {err}");
    }
}

#[test]
fn public_targets_pass_and_local_development_opens_private_ones() {
    let cloud = DestinationPolicy::default();
    for ok in [
        "https://8.8.8.8/hook",
        "https://93.184.215.14:8443/",
        "https://[2606:4700::1111]/",
        "https://hooks.example.com/x?y=1",
    ] {
        assert!(cloud.check_url(ok).is_ok(), "{ok}");
    }
    assert_eq!(
        cloud.check_url("http://example.com/").expect_err("http"),
        DestinationError::NotHttps
    );
    assert_eq!(
        cloud
            .check_url("https://user:pw@example.com/")
            .expect_err("creds"),
        DestinationError::Credentials
    );
    assert!(cloud.check_url("/relative").is_err());
    assert!(cloud.check_url("ftp://example.com/").is_err());
    assert!(
        cloud
            .check_url(&format!("https://example.com/{}", "a".repeat(MAX_URL_LEN)))
            .is_err()
    );

    let local = DestinationPolicy {
        allow_private: true,
        allow_http: true,
        ..Default::default()
    };
    assert!(local.check_url("http://127.0.0.1:9000/hook").is_ok());
    assert!(local.check_url("http://localhost:9000/hook").is_ok());

    let peered = DestinationPolicy {
        allowlist: parse_allowlist("10.1.0.0/16").expect("cidr"),
        ..Default::default()
    };
    assert!(peered.check_url("https://10.1.2.3/").is_ok());
    assert!(peered.check_url("https://10.2.0.1/").is_err());
    assert!(parse_allowlist("10.0.0.0/33").is_err());
}

#[tokio::test]
async fn names_resolving_to_refused_ranges_are_refused_at_send() {
    let policy = DestinationPolicy::default();
    let err = policy
        .resolve("localhost", 443)
        .await
        .expect_err("loopback");
    assert!(
        matches!(&err, DestinationError::ResolvesToRefused { host, reason: "loopback address", .. } if host == "localhost"),
        "{err:?}"
    );
    let err = policy
        .resolve("127.0.0.1", 443)
        .await
        .expect_err("loopback");
    assert!(err.to_string().contains("loopback"), "{err}");
    let open = DestinationPolicy {
        allow_private: true,
        ..Default::default()
    };
    assert_eq!(
        open.resolve("127.0.0.1", 80).await.expect("allowed"),
        vec!["127.0.0.1:80".parse().expect("addr")]
    );
}

/// The sentences are what owners read (API 400s, `last_error`): the same words as when
/// they were built as strings.
#[test]
fn refusals_read_as_sentences() {
    let cases: [(DestinationError, &str); 6] = [
        (
            DestinationError::Refused {
                ip: "10.0.0.1".parse().expect("ip"),
                reason: "private address",
            },
            "destination 10.0.0.1 is a private address; only public addresses are allowed",
        ),
        (
            DestinationError::ResolvesToRefused {
                host: "localhost".into(),
                ip: "127.0.0.1".parse().expect("ip"),
                reason: "loopback address",
            },
            "localhost resolves to a refused address: destination 127.0.0.1 is a \
             loopback address; only public addresses are allowed",
        ),
        (
            DestinationError::LoopbackName("api.localhost".into()),
            "destination api.localhost is a loopback name; only public addresses are allowed",
        ),
        (
            DestinationError::Scheme("ftp".into()),
            "url scheme \"ftp\" is not supported; use https",
        ),
        (
            DestinationError::Unresolved("nowhere.invalid".into()),
            "could not resolve host nowhere.invalid",
        ),
        (
            DestinationError::TooLong,
            "url must be at most 2048 characters",
        ),
    ];
    for (e, sentence) in cases {
        assert_eq!(e.to_string(), sentence);
    }
    let e = DestinationPolicy::default()
        .check_url("https://exa mple.com/")
        .expect_err("space");
    assert!(
        e.to_string()
            .starts_with("url is not a valid absolute URL ("),
        "{e}"
    );
}

/// The send-time check of literal hosts refuses every spelling the save-time check does,
/// and passes names (the resolver checks those) and what the policy opens.
#[test]
fn literal_hosts_are_checked_in_every_spelling() {
    let strict = DestinationPolicy {
        allow_http: true,
        ..Default::default()
    };
    for (raw, why) in HOSTILE.iter().filter(|(_, why)| *why != "loopback name") {
        let url = Url::parse(raw).expect("url");
        let err = strict.check_literal(&url).expect_err(raw).to_string();
        assert!(err.contains(why), "{raw}: {err}");
    }
    for ok in [
        "https://8.8.8.8/",
        "https://[2606:4700::1111]/",
        "https://localhost/",
        "https://hooks.example.com/",
    ] {
        assert_eq!(
            strict.check_literal(&Url::parse(ok).expect("url")),
            Ok(()),
            "{ok}"
        );
    }
    let peered = DestinationPolicy {
        allowlist: parse_allowlist("10.1.0.0/16").expect("cidr"),
        ..Default::default()
    };
    let url = |s: &str| Url::parse(s).expect("url");
    assert_eq!(peered.check_literal(&url("https://10.1.2.3/")), Ok(()));
    assert!(peered.check_literal(&url("https://10.2.0.1/")).is_err());
    let open = DestinationPolicy {
        allow_private: true,
        ..Default::default()
    };
    assert_eq!(open.check_literal(&url("http://127.0.0.1:9/")), Ok(()));
}
