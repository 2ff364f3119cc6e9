//! Cold-start benchmark (issue 4): for each function's release binary, the time from exec to
//! its first Lambda Runtime API `GET .../invocation/next`, median of N runs, beside a bare
//! `lambda_runtime` hello-world built the same way, with the ratio and the binary's stripped
//! and zipped sizes. The target (≤ 1.5×) is against the hello-world as `lambda_runtime`
//! documents it (`#[tokio::main]`); a second column compares with the same hello-world on
//! the current-thread runtime the functions use. `make coldstart` builds the binaries and runs this.
//!
//!   coldstart [--runs N] [--dir target/release] [--hello target/release/examples/hello]
//!   coldstart --phases [--runs N] [--dir target/release]
//!
//! `--phases` runs `examples/init-phases` (each step of a function's init timed inside one
//! process) N times on each runtime flavor, with the same environment, and prints medians.
//!
//! The environment is the cloud's (no AWS_ENDPOINT_URL, KMS secrets, an SQS URL), so init does
//! what it does on AWS; nothing is reachable, so anything that touched the network at init
//! would show as a hang or a failure here.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const FUNCTIONS: [&str; 14] = [
    "list-endpoints",
    "create-endpoint",
    "update-endpoint",
    "delete-endpoint",
    "rotate-secret",
    "list-deliveries",
    "get-delivery",
    "retry-delivery",
    "publish-event",
    "deliver",
    "fan-out",
    "dead-letter",
    "jobs",
    "sweeper",
];

fn env_for(function: &str, port: u16) -> Vec<(String, String)> {
    [
        ("PATH", "/usr/bin:/bin"),
        ("AWS_LAMBDA_FUNCTION_NAME", function),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/capy/bench"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        ("AWS_SESSION_TOKEN", "bench"),
        ("TABLE_NAME", "capy-webhooks-Table-BENCH"),
        (
            "DELIVERY_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/capy-webhooks-DeliveryQueue-BENCH",
        ),
        (
            "FAN_OUT_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/capy-webhooks-FanOutQueue-BENCH",
        ),
        (
            "JOBS_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/capy-webhooks-JobsQueue-BENCH",
        ),
        (
            "SECRETS_KMS_KEY_ID",
            "arn:aws:kms:us-east-1:123456789012:key/0f7c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f",
        ),
        ("SECRETS_LOCAL_KEY", ""),
        ("RETRY_SCHEDULE", "0s,5s,5m,30m,2h,5h,10h,10h"),
        ("ROTATION_GRACE", "24h"),
        ("ALLOW_PRIVATE_DESTINATIONS", "false"),
        ("ALLOW_INSECURE_URLS", "false"),
        ("RUST_LOG", "info"),
        // Read by the `api` binary only.
        ("CAPY_ROUTE", function),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([(
        "AWS_LAMBDA_RUNTIME_API".to_owned(),
        format!("127.0.0.1:{port}"),
    )])
    .collect()
}

/// One cold start: exec → the first `next` request on the Runtime API socket.
fn one_run(bin: &Path, function: &str) -> Result<Duration, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    let mut child = Command::new(bin)
        .env_clear()
        .envs(env_for(function, port))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                let at = start.elapsed();
                let ok = head.starts_with(b"GET /2018-06-01/runtime/invocation/next ");
                let _ = tx.send(
                    ok.then_some(at)
                        .ok_or_else(|| String::from_utf8_lossy(&head).into_owned()),
                );
                break;
            }
        }
    });
    let got = rx.recv_timeout(Duration::from_secs(10));
    let _ = child.kill();
    let status = child.wait().ok();
    match got {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(head)) => Err(format!(
            "{function}: first request was not `next`: {head:?}"
        )),
        Err(_) => Err(format!(
            "{function}: no `next` within 10 s (exit {status:?})"
        )),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// A strip that reads any ELF architecture (llvm-strip), else the host's `strip`.
fn strip_tool() -> Option<&'static str> {
    ["llvm-strip", "strip"].into_iter().find(|t| {
        Command::new(t)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// (stripped, zipped) bytes of a binary.
fn sizes(bin: &Path) -> Option<(u64, u64)> {
    let dir = std::env::temp_dir().join(format!("capy-coldstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let stripped = dir.join("bootstrap");
    match strip_tool() {
        Some(tool) => {
            Command::new(tool)
                .arg("-o")
                .arg(&stripped)
                .arg(bin)
                .status()
                .ok()?
                .success()
                .then_some(())?;
        }
        None => {
            std::fs::copy(bin, &stripped).ok()?;
        }
    }
    let zip = dir.join("a.zip");
    let py = "import sys,zipfile\nwith zipfile.ZipFile(sys.argv[2],'w',zipfile.ZIP_DEFLATED) as z: z.write(sys.argv[1],'bootstrap')";
    Command::new("python3")
        .args(["-c", py])
        .arg(&stripped)
        .arg(&zip)
        .status()
        .ok()?
        .success()
        .then_some(())?;
    let out = (
        std::fs::metadata(&stripped).ok()?.len(),
        std::fs::metadata(&zip).ok()?.len(),
    );
    let _ = std::fs::remove_dir_all(&dir);
    Some(out)
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn mb(b: u64) -> String {
    format!("{:.2}", b as f64 / 1e6)
}

/// `--phases`: medians of `init-phases`' per-step timings over `runs` fresh processes per
/// runtime flavor, the flavors alternating so that drift hits both alike.
fn phases(bin: &Path, runs: usize) {
    let flavors = [None, Some("--current-thread")];
    let mut names: Vec<String> = Vec::new();
    let mut samples: Vec<Vec<Vec<u64>>> = vec![Vec::new(); flavors.len()];
    for _ in 0..runs {
        for (f, flavor) in flavors.iter().enumerate() {
            let out = Command::new(bin)
                .args(flavor)
                .env_clear()
                .envs(env_for("init-phases", 9))
                .stderr(Stdio::null())
                .output()
                .unwrap_or_else(|e| {
                    panic!("{}: {e} (make coldstart-phases builds it)", bin.display())
                });
            let line = String::from_utf8_lossy(&out.stdout);
            let pairs: Vec<(&str, u64)> = line
                .split_whitespace()
                .filter_map(|p| p.split_once('='))
                .filter_map(|(n, v)| Some((n, v.parse().ok()?)))
                .collect();
            assert!(!pairs.is_empty(), "init-phases failed: {}", out.status);
            if names.is_empty() {
                names = pairs.iter().map(|(n, _)| (*n).to_owned()).collect();
            }
            if samples[f].is_empty() {
                samples[f] = vec![Vec::with_capacity(runs); names.len()];
            }
            for (i, (_, v)) in pairs.into_iter().enumerate() {
                samples[f][i].push(v);
            }
        }
    }
    println!("init phases, median of {runs} processes each (µs)");
    println!(
        "  {:<18} {:>13} {:>15}",
        "phase", "multi-thread", "current-thread"
    );
    let mut totals = [0u64; 2];
    for (i, name) in names.iter().enumerate() {
        let mut row = [0u64; 2];
        for (f, cell) in row.iter_mut().enumerate() {
            let mut s = samples[f][i].clone();
            s.sort_unstable();
            *cell = s[s.len() / 2];
            totals[f] += *cell;
        }
        println!("  {name:<18} {:>13} {:>15}", row[0], row[1]);
    }
    println!("  {:<18} {:>13} {:>15}", "sum", totals[0], totals[1]);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf();
    let mut runs = 25usize;
    let mut dir = root.join("target/release");
    let mut hello = root.join("target/release/examples/hello");
    let mut only_phases = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--phases" => only_phases = true,
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--dir" => dir = PathBuf::from(args.next().expect("--dir DIR")),
            "--hello" => hello = PathBuf::from(args.next().expect("--hello BIN")),
            other => panic!("unknown argument {other}"),
        }
    }
    if only_phases {
        return phases(&dir.join("examples/init-phases"), runs);
    }
    // The second baseline: the same hello-world on the current-thread runtime the functions
    // use, so what our own init costs shows apart from the runtime flavor.
    let hello_ct = hello.with_file_name("hello-current-thread");
    let mut bins: Vec<(String, PathBuf)> = vec![
        ("hello (baseline)".into(), hello),
        ("hello current-thr".into(), hello_ct),
    ];
    for f in FUNCTIONS {
        // Every route function runs the one `api` binary (its CAPY_ROUTE picks the route).
        let bin = if capy_shared::api::Route::from_function(f).is_some() {
            "api"
        } else {
            f
        };
        let nested = dir.join(bin).join("bootstrap");
        bins.push((
            f.to_owned(),
            if nested.exists() {
                nested
            } else {
                dir.join(bin)
            },
        ));
    }
    for (name, bin) in &bins {
        assert!(
            bin.exists(),
            "{name}: {} missing (make coldstart builds it)",
            bin.display()
        );
    }

    // One warm-up each (page cache), then N rounds, interleaved so drift hits all alike.
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); bins.len()];
    let mut failed = false;
    for (name, bin) in &bins {
        if let Err(e) = one_run(bin, name) {
            eprintln!("{e}");
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
    for _ in 0..runs {
        for (i, (name, bin)) in bins.iter().enumerate() {
            match one_run(bin, name) {
                Ok(t) => samples[i].push(t),
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
        }
    }

    let medians: Vec<Duration> = samples
        .iter_mut()
        .map(|s| {
            s.sort();
            percentile(s, 0.5)
        })
        .collect();
    let base = medians[0];
    let base_ct = medians[1];
    println!(
        "cold start: exec → first Runtime API `next`, {runs} runs each (x86_64 host, {})",
        dir.display()
    );
    println!(
        "{:<18} {:>10} {:>9} {:>9} {:>8} {:>9} {:>10} {:>8}",
        "function", "median ms", "p10 ms", "p90 ms", "× hello", "× hello-ct", "strip MB", "zip MB"
    );
    let mut over = false;
    for (i, (name, bin)) in bins.iter().enumerate() {
        let ratio = medians[i].as_secs_f64() / base.as_secs_f64();
        let (s, z) = sizes(bin)
            .map(|(s, z)| (mb(s), mb(z)))
            .unwrap_or(("?".into(), "?".into()));
        let ratio_ct = medians[i].as_secs_f64() / base_ct.as_secs_f64();
        let flag = if i > 1 && ratio > 1.5 {
            over = true;
            "  > 1.5×"
        } else {
            ""
        };
        println!(
            "{:<18} {:>10} {:>9} {:>9} {:>8.2} {:>10.2} {:>10} {:>8}{flag}",
            name,
            ms(medians[i]),
            ms(percentile(&samples[i], 0.1)),
            ms(percentile(&samples[i], 0.9)),
            ratio,
            ratio_ct,
            s,
            z
        );
    }
    if over {
        println!("target missed: a function's median is over 1.5× the hello-world's");
    }
}
