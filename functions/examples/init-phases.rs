//! Where a cold start's init time goes: each step a function's `main` takes before its first
//! Runtime API request, timed in a fresh process (first-use costs such as lazily parsed
//! tables only show once per process), median of N processes.
//!
//!   cargo run --release -p capy-functions --example init-phases -- [--runs N] [--current-thread]
//!
//! Children run with the environment a function sees in the cloud (KMS secrets, an SQS
//! URL, role credentials, no endpoint override), like `make coldstart`'s.

use std::time::Instant;

const CLOUD_ENV: [(&str, &str); 13] = [
    ("PATH", "/usr/bin:/bin"),
    ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9"),
    ("AWS_LAMBDA_FUNCTION_NAME", "init-phases"),
    ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
    ("AWS_REGION", "us-east-1"),
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
        "SECRETS_KMS_KEY_ID",
        "arn:aws:kms:us-east-1:123456789012:key/0f7c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f",
    ),
    ("RETRY_SCHEDULE", "0s,5s,5m,30m,2h,5h,10h,10h"),
    ("RUST_LOG", "info"),
];

const PHASES: [&str; 9] = [
    "tokio runtime",
    "tracing",
    "settings",
    "sdk config",
    "dynamodb client",
    "sqs client",
    "kms client",
    "sender",
    "authenticator",
];

fn child(current_thread: bool) {
    let mut marks = Vec::with_capacity(PHASES.len());
    let mut at = Instant::now();
    let mut lap = |marks: &mut Vec<u128>| {
        marks.push(at.elapsed().as_micros());
        at = Instant::now();
    };
    let rt = if current_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    }
    .expect("runtime");
    lap(&mut marks);
    capy_functions::init_tracing();
    lap(&mut marks);
    let settings = capy_shared::config::Settings::from_env(false).expect("settings");
    lap(&mut marks);
    let sdk = rt.block_on(capy_shared::config::aws_config());
    lap(&mut marks);
    let table = capy_shared::config::table(&settings, &sdk);
    lap(&mut marks);
    let queue = capy_shared::config::queue(&settings, &sdk).expect("queue");
    lap(&mut marks);
    let cipher = capy_shared::config::cipher(&settings, &sdk).expect("cipher");
    lap(&mut marks);
    let sender = capy_shared::config::sender(&settings);
    lap(&mut marks);
    let auth = capy_shared::config::authenticator(&settings, &table).expect("auth");
    lap(&mut marks);
    drop((queue, cipher, sender, auth));
    println!(
        "{}",
        marks
            .iter()
            .map(u128::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--child") {
        return child(args.iter().any(|a| a == "--current-thread"));
    }
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(31);
    let mut samples: Vec<Vec<u128>> = vec![Vec::new(); PHASES.len()];
    for _ in 0..runs {
        let out = std::process::Command::new(&args[0])
            .args(&args[1..])
            .arg("--child")
            .env_clear()
            .envs(CLOUD_ENV)
            .stderr(std::process::Stdio::null())
            .output()
            .expect("run a child");
        let line = String::from_utf8_lossy(&out.stdout);
        let Some(line) = line.lines().last() else {
            eprintln!("child failed: {}", out.status);
            std::process::exit(1);
        };
        for (i, v) in line.split(' ').enumerate() {
            samples[i].push(v.parse().expect("a number"));
        }
    }
    println!("init phases, median of {runs} processes (µs)");
    let mut total = 0;
    for (name, mut s) in PHASES.iter().zip(samples) {
        s.sort_unstable();
        let median = s[s.len() / 2];
        total += median;
        println!("{name:<18} {median:>7}");
    }
    println!("{:<18} {total:>7}", "sum");
}
