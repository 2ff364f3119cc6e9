//! The customer portal in a real browser: `capy serve` + moto + loopback receivers, a portal
//! session minted through the API, then the Playwright suite (portal/tests/portal.spec.mjs)
//! in Debian's headless Chromium. `make test` builds the portal and installs Chromium first
//! (`make portal browser-deps`).
//!
//! `make portal-bench` runs the ignored `portal_bench`: first-load bytes and time to the
//! endpoints list, median of 10 loads (portal/tests/bench.mjs).

use std::path::{Path, PathBuf};
use std::process::Command;

use capy_tests::{Receiver, Reply, Stack, StackOptions, workspace_root};
use serde_json::{Value, json};

fn portal_dir() -> PathBuf {
    workspace_root().join("portal")
}

fn chromium() -> PathBuf {
    std::env::var("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/usr/bin/chromium"))
}

/// What the browser suite needs on the machine, or how to get it.
fn prerequisites() -> Result<(), String> {
    let portal = portal_dir();
    let mut missing = vec![];
    if !portal.join("dist/index.html").is_file() {
        missing.push("the built portal (portal/dist): run `make portal`".to_owned());
    }
    if !portal.join("node_modules/.bin/playwright").exists() {
        missing.push("the portal's npm packages: run `make portal`".to_owned());
    }
    if !chromium().exists() {
        missing.push(format!(
            "Chromium at {}: run `make browser-deps`",
            chromium().display()
        ));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("; "))
    }
}

struct Portal {
    stack: Stack,
    org: String,
    key: String,
    ok: Receiver,
    failing: Receiver,
}

/// A stack serving the built portal, an API key, and two receivers (2xx and 503).
async fn portal_stack(org: &str) -> Portal {
    if let Err(e) = prerequisites() {
        panic!("the portal browser tests need {e}");
    }
    let ok = Receiver::start().await;
    let failing = Receiver::scripted(vec![], Reply::Status(503)).await;
    let dist = portal_dir().join("dist");
    let stack =
        Stack::start_with(StackOptions::default().set("CAPY_PORTAL_DIR", &dist.to_string_lossy()))
            .await;
    let key = stack.mint_key(org, None);
    Portal {
        stack,
        org: org.to_owned(),
        key,
        ok,
        failing,
    }
}

impl Portal {
    /// POST /portal-sessions; `None` when the route is not there yet.
    async fn mint_session(&self, body: Value) -> Value {
        let (status, json) = self
            .stack
            .call(
                "POST",
                &format!("/v1/organizations/{}/portal-sessions", self.org),
                Some(&self.key),
                Some(body),
            )
            .await;
        assert_eq!(status, 201, "{json}");
        json
    }

    fn env(&self, portal_url: &str) -> Vec<(&'static str, String)> {
        vec![
            ("BASE_URL", self.stack.base.clone()),
            ("API_KEY", self.key.clone()),
            ("ORG", self.org.clone()),
            ("PORTAL_URL", portal_url.to_owned()),
            ("RECEIVER_URL", self.ok.url.clone()),
            ("FAILING_RECEIVER_URL", self.failing.url.clone()),
            ("CHROMIUM", chromium().to_string_lossy().into_owned()),
        ]
    }
}

/// Runs a node program in portal/ off the async runtime (the receivers keep answering).
async fn node(program: &Path, args: &[&str], env: Vec<(&'static str, String)>) -> bool {
    let program = program.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(&program)
            .args(&args)
            .envs(env)
            .current_dir(portal_dir())
            .status()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
            .success()
    })
    .await
    .expect("node runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn portal_in_a_real_browser() {
    let p = portal_stack("org_portal").await;

    // The page itself, before any browser: served with its headers, no credential needed.
    let resp = p
        .stack
        .http
        .get(p.stack.url("/portal/"))
        .send()
        .await
        .expect("GET /portal/");
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let html = resp.text().await.expect("body");
    assert!(html.contains("/portal/assets/"), "{html}");

    let playwright = portal_dir().join("node_modules/.bin/playwright");
    let session = p.mint_session(json!({})).await;
    let token = session["token"].as_str().expect("token");
    assert!(token.starts_with("capy_portal_"), "{session}");
    let portal_url = format!("{}/portal/#token={token}", p.stack.base);
    let passed = node(&playwright, &["test"], p.env(&portal_url)).await;
    if !passed {
        let log = p.stack.log();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        eprintln!(
            "capy serve log (last 60 lines):\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    assert!(passed, "the portal's browser suite failed (output above)");
    // The deliveries the browser watched were real requests to the loopback receivers.
    assert!(p.ok.count() > 0, "the 2xx receiver got nothing");
    assert!(p.failing.count() > 0, "the 503 receiver got nothing");
}

/// `make portal-bench`: not a test, a measurement on the local stack.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: make portal-bench"]
async fn portal_bench() {
    let p = portal_stack("org_portal_bench").await;
    for i in 0..10 {
        p.stack
            .create_endpoint(
                &p.org,
                &p.key,
                json!({ "url": p.ok.url, "description": format!("bench endpoint {i}") }),
            )
            .await;
    }
    for i in 0..20 {
        p.stack
            .publish(
                &p.org,
                &p.key,
                json!({ "event_type": "bench.event", "payload": { "n": i } }),
            )
            .await;
    }
    let session = p.mint_session(json!({})).await;
    let url = format!(
        "{}/portal/#token={}",
        p.stack.base,
        session["token"].as_str().expect("token")
    );
    let node_bin = PathBuf::from("node");
    let ok = node(&node_bin, &["tests/bench.mjs"], p.env(&url)).await;
    assert!(ok, "bench failed");
}
