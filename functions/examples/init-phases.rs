//! Where a cold start's init time goes: each step a function's `main` takes before its first
//! Runtime API request, timed once in this fresh process (first-use costs, such as the SDK's
//! lazily parsed endpoint tables, show only once per process). Prints `phase=µs` pairs on
//! one line; `coldstart --phases` (`make coldstart-phases`) runs it many times with the
//! cloud's environment and prints the medians.
//!
//!   init-phases [--current-thread]

use std::time::Instant;

fn main() {
    let current_thread = std::env::args().any(|a| a == "--current-thread");
    let mut marks: Vec<(&str, u128)> = Vec::with_capacity(9);
    let mut at = Instant::now();
    let mut lap = |marks: &mut Vec<(&'static str, u128)>, name: &'static str| {
        marks.push((name, at.elapsed().as_micros()));
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
    lap(&mut marks, "tokio-runtime");
    capy_functions::init_tracing();
    lap(&mut marks, "tracing");
    let settings = capy_shared::config::Settings::from_env(false).expect("settings");
    lap(&mut marks, "settings");
    let sdk = rt.block_on(capy_shared::config::aws_config());
    lap(&mut marks, "sdk-config");
    let table = capy_shared::config::table(&settings, &sdk);
    lap(&mut marks, "dynamodb-client");
    let queue = capy_shared::config::queue(&settings, &sdk).expect("queue");
    lap(&mut marks, "sqs-client");
    let cipher = capy_shared::config::cipher(&settings, &sdk).expect("cipher");
    lap(&mut marks, "kms-client");
    let sender = capy_shared::config::sender(&settings);
    lap(&mut marks, "sender");
    let auth = capy_shared::config::authenticator(&settings, &table).expect("authenticator");
    lap(&mut marks, "authenticator");
    drop((queue, cipher, sender, auth));
    let line: Vec<String> = marks.iter().map(|(n, us)| format!("{n}={us}")).collect();
    println!("{}", line.join(" "));
}
