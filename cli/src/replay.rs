//! `capy replay` and `capy jobs list|show|cancel`: API clients for recovery after an outage.
//! They call the HTTP API (`--api-url`, default `capy serve`'s address) with an API key
//! (`--key` or `CAPY_API_KEY`). Without one, an operator with access to the table (the same
//! environment `capy api-keys create` needs) gets a key minted for the command and revoked
//! when it ends, so every request still goes through the API's validation and authorization.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

#[derive(Args, Clone)]
pub struct Api {
    /// The API's base URL.
    #[arg(long, env = "CAPY_API_URL", default_value = "http://127.0.0.1:3000")]
    api_url: String,
    /// An API key of the organization. Without one, a key is minted in TABLE_NAME for this
    /// command and revoked when it ends (needs the table's AWS access, like `capy api-keys`).
    #[arg(long, env = "CAPY_API_KEY", hide_env_values = true)]
    key: Option<String>,
    #[arg(long)]
    org: String,
}

#[derive(Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    api: Api,
    #[arg(long)]
    endpoint: String,
    /// Start of the window: RFC 3339, or a duration meaning that long ago (`2h`, `3d`).
    #[arg(long)]
    since: String,
    /// End of the window (default now): RFC 3339, or a duration ago.
    #[arg(long)]
    until: Option<String>,
    /// `failed` (default) or `delivered`; repeat for both.
    #[arg(long = "state")]
    states: Vec<String>,
    /// An event type or prefix wildcard (`invoice.*`); repeat for several (default all).
    #[arg(long = "event-type")]
    event_types: Vec<String>,
    /// Print the match count and change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Subcommand)]
pub enum JobsCommand {
    /// The organization's jobs, newest first.
    List {
        #[command(flatten)]
        api: Api,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Start after this page (the `next_cursor` a previous list printed).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One job as JSON.
    Show {
        #[command(flatten)]
        api: Api,
        job_id: String,
    },
    /// Cancel a queued or running job: it stops before its next page (an ended job is shown
    /// as it is).
    Cancel {
        #[command(flatten)]
        api: Api,
        job_id: String,
    },
}

struct Http {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    api: Api,
    key: String,
    /// A key minted for this command, revoked by [`Http::close`].
    minted: Option<crate::TemporaryKey>,
}

impl Http {
    async fn connect(api: Api) -> Result<Self, String> {
        let (key, minted) = match &api.key {
            Some(k) => (k.clone(), None),
            None => {
                let t = crate::TemporaryKey::mint(&api.org).await.map_err(|e| {
                    format!("no --key or CAPY_API_KEY, and no key could be minted: {e}")
                })?;
                (t.key().to_owned(), Some(t))
            }
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::aws_lc_rs::default_provider())
            .expect("the aws-lc-rs provider supports the default protocol versions")
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            api,
            key,
            minted,
        })
    }

    /// Revokes the key minted for this command, if any; a failure is said, never hidden.
    async fn close(self) {
        if let Some(t) = self.minted
            && let Err(e) = t.revoke().await
        {
            eprintln!("capy: could not revoke the temporary API key: {e}");
        }
    }

    /// One call under the organization: the JSON body of a 2xx, else its error sentence.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!(
            "{}/v1/organizations/{}{path}",
            self.api.api_url.trim_end_matches('/'),
            self.api.org
        );
        let mut req = http::Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::AUTHORIZATION, format!("Bearer {}", self.key));
        let bytes = match body {
            Some(b) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(bytes)).map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(35), self.client.request(req))
            .await
            .map_err(|_| format!("{method} {url}: timed out"))?
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let json: Value = serde_json::from_slice(&body)
            .map_err(|_| format!("{method} {url}: HTTP {status}, not JSON"))?;
        if (200..300).contains(&status) {
            Ok(json)
        } else {
            Err(format!(
                "HTTP {status}: {}",
                json["error"].as_str().unwrap_or("no error message")
            ))
        }
    }
}

/// RFC 3339 as given, or a duration before now.
fn when(v: &str) -> Result<String, String> {
    if chrono::DateTime::parse_from_rfc3339(v).is_ok() {
        return Ok(v.to_owned());
    }
    let ago = capy_shared::domain::time::parse_duration(v)
        .map_err(|_| format!("{v:?} is neither an RFC 3339 time nor a duration like 2h"))?;
    let t = capy_shared::domain::time::now()
        - chrono::TimeDelta::from_std(ago).map_err(|e| e.to_string())?;
    Ok(capy_shared::domain::time::format(&t))
}

fn bar(processed: u64, matched: u64) -> String {
    const WIDTH: u64 = 30;
    let filled = (processed.min(matched) * WIDTH)
        .checked_div(matched)
        .unwrap_or(WIDTH);
    format!(
        "[{}{}] {processed}/{matched}",
        "#".repeat(filled as usize),
        ".".repeat((WIDTH - filled) as usize)
    )
}

pub async fn replay(args: ReplayArgs) -> Result<(), String> {
    let http = Http::connect(args.api.clone()).await?;
    let result = run_replay(&http, &args).await;
    http.close().await;
    result
}

async fn run_replay(http: &Http, args: &ReplayArgs) -> Result<(), String> {
    let mut body = json!({ "since": when(&args.since)? });
    if let Some(u) = &args.until {
        body["until"] = json!(when(u)?);
    }
    if !args.states.is_empty() {
        body["states"] = json!(args.states);
    }
    if !args.event_types.is_empty() {
        body["event_types"] = json!(args.event_types);
    }
    let path = format!("/webhook-endpoints/{}/replay", args.endpoint);
    let mut dry = body.clone();
    dry["dry_run"] = json!(true);
    let counted = http.call("POST", &path, Some(dry)).await?;
    let matched = counted["matched"].as_u64().unwrap_or(0);
    println!("matched: {matched}");
    if args.dry_run {
        return Ok(());
    }
    let started = http.call("POST", &path, Some(body)).await?;
    let id = started["job"]["id"]
        .as_str()
        .ok_or("the API answered without a job id")?
        .to_owned();
    println!("job: {id}");
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last = String::new();
    loop {
        let job = http.call("GET", &format!("/jobs/{id}"), None).await?;
        let job = &job["job"];
        let line = bar(
            job["processed"].as_u64().unwrap_or(0),
            job["matched"].as_u64().unwrap_or(0),
        );
        if line != last {
            if tty {
                eprint!("\r{line}");
            } else {
                eprintln!("{line}");
            }
            let _ = std::io::stderr().flush();
            last = line;
        }
        match job["state"].as_str().unwrap_or("") {
            "queued" | "running" => tokio::time::sleep(Duration::from_millis(500)).await,
            "succeeded" => {
                if tty {
                    eprintln!();
                }
                println!("succeeded: {} processed", job["processed"]);
                return Ok(());
            }
            other => {
                if tty {
                    eprintln!();
                }
                return Err(format!(
                    "job {id} {other}{}",
                    job["error"]
                        .as_str()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ));
            }
        }
    }
}

pub async fn jobs(command: JobsCommand) -> Result<(), String> {
    let api = match &command {
        JobsCommand::List { api, .. }
        | JobsCommand::Show { api, .. }
        | JobsCommand::Cancel { api, .. } => api.clone(),
    };
    let http = Http::connect(api).await?;
    let result = run_jobs(&http, command).await;
    http.close().await;
    result
}

async fn run_jobs(http: &Http, command: JobsCommand) -> Result<(), String> {
    match command {
        JobsCommand::List { limit, cursor, .. } => {
            let mut path = format!("/jobs?limit={limit}");
            if let Some(c) = &cursor {
                path.push_str(&format!(
                    "&cursor={}",
                    url::form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()
                ));
            }
            let out = http.call("GET", &path, None).await?;
            for j in out["jobs"].as_array().into_iter().flatten() {
                println!(
                    "{}  {:<9}  {}/{}  {}  {}",
                    j["id"].as_str().unwrap_or(""),
                    j["state"].as_str().unwrap_or(""),
                    j["processed"],
                    j["matched"],
                    j["endpoint_id"].as_str().unwrap_or(""),
                    j["created_at"].as_str().unwrap_or(""),
                );
            }
            if let Some(next) = out["next_cursor"].as_str() {
                eprintln!("more: capy jobs list --limit {limit} --cursor {next}");
            }
            Ok(())
        }
        JobsCommand::Show { job_id, .. } => {
            let out = http.call("GET", &format!("/jobs/{job_id}"), None).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&out["job"]).map_err(|e| e.to_string())?
            );
            Ok(())
        }
        JobsCommand::Cancel { job_id, .. } => {
            let out = http
                .call("POST", &format!("/jobs/{job_id}/cancel"), None)
                .await?;
            println!("{} {}", job_id, out["job"]["state"].as_str().unwrap_or(""));
            Ok(())
        }
    }
}
