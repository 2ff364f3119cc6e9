//! Where a cold start's init time goes: each step a function's `main` takes before its first
//! Runtime API request, timed in a fresh process (first-use costs such as lazily parsed
//! tables only show once per process), median of N processes.
//!
//!   cargo run --release -p capy-functions --example init-phases -- [--runs N] [--current-thread]
//!
//! Set the environment a function would see (`make coldstart-phases` does).

use std::time::Instant;

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
