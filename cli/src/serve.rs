//! `capy serve`: every route in-process on one port, plus the delivery queue, the DLQ and the
//! sweeper polled the way Lambda's event source mapping and schedule would run them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use base64::Engine;
use bytes::Bytes;
use capy_shared::adapters::sqs::SqsQueue;
use capy_shared::api::{
    self, ApiRequest, ApiResponse, RouteMiss, error::ApiError, input::MAX_BODY_BYTES,
};
use capy_shared::auth::{mint_api_key, mint_portal_session};
use capy_shared::config::{self, SecretsKey, Settings};
use capy_shared::consumers;
use capy_shared::domain::portal_session::{Capability, DEFAULT_EXPIRES_IN_SECS};
use capy_shared::ports::ApiKeyStore;
use capy_shared::services::Deps;
use capy_shared::wiring::{self, Requires};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

fn env_duration(name: &str, default: &str) -> Result<Duration, String> {
    let v = std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.into());
    capy_shared::domain::time::parse_duration(&v).map_err(|e| format!("{name}: {e}"))
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.into())
}

/// The local secrets key: `SECRETS_LOCAL_KEY`, else one kept in `.local/secrets.key`.
fn local_secrets_key(settings: &mut Settings) -> Result<(), String> {
    if settings.secrets.is_some() {
        return Ok(());
    }
    let path = PathBuf::from(env_or("CAPY_LOCAL_KEY_FILE", ".local/secrets.key"));
    let key = match std::fs::read_to_string(&path) {
        Ok(k) => k.trim().to_owned(),
        Err(_) => {
            use rand_key::fill;
            let k = base64::engine::general_purpose::STANDARD.encode(fill());
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            std::fs::write(&path, &k).map_err(|e| format!("{}: {e}", path.display()))?;
            k
        }
    };
    settings.secrets = Some(SecretsKey::Local(key));
    Ok(())
}

mod rand_key {
    /// 32 random bytes from the OS, via the secret generator's source.
    pub fn fill() -> Vec<u8> {
        capy_shared::domain::signing::SigningSecret::generate()
            .as_bytes()
            .to_vec()
    }
}

/// A queue and its dead-letter queue.
struct QueuePair {
    main: SqsQueue,
    dead_letters: SqsQueue,
}

/// Creates a queue and its DLQ (redrive after MAX_RECEIVE_COUNT) unless they exist.
async fn ensure_queue_pair(client: &aws_sdk_sqs::Client, name: &str) -> Result<QueuePair, String> {
    let visibility = env_duration("QUEUE_VISIBILITY_TIMEOUT", "60s")?;
    let max_receives: u32 = env_or("MAX_RECEIVE_COUNT", "20")
        .parse()
        .map_err(|_| "MAX_RECEIVE_COUNT must be a number")?;
    let sqs_err = |e: aws_sdk_sqs::error::SdkError<_, _>| {
        aws_sdk_sqs::error::DisplayErrorContext(e).to_string()
    };
    let dlq = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .map_err(sqs_err)?
        .queue_url
        .ok_or("no DLQ url")?;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or("no DLQ arn")?;
    let redrive =
        serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives })
            .to_string();
    let url = client
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility.as_secs().to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?
        .queue_url
        .ok_or("no queue url")?;
    Ok(QueuePair {
        main: SqsQueue::new(client.clone(), url),
        dead_letters: SqsQueue::new(client.clone(), dlq),
    })
}

/// The queue pair named by a URL setting, or one created under `name`.
async fn queue_pair(
    sqs: &aws_sdk_sqs::Client,
    url: &Option<String>,
    dlq_setting: &str,
    name: &str,
) -> Result<QueuePair, String> {
    match url {
        Some(url) => Ok(QueuePair {
            main: SqsQueue::new(sqs.clone(), url.clone()),
            dead_letters: SqsQueue::new(sqs.clone(), env_or(dlq_setting, &format!("{url}-dlq"))),
        }),
        None => ensure_queue_pair(sqs, name).await,
    }
}

pub async fn run(addr: SocketAddr, dev_key_org: Option<String>) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();

    let mut settings = Settings::from_env(true)?;
    local_secrets_key(&mut settings)?;
    let sdk = config::aws_config().await;
    let table = config::table(&settings, &sdk);
    table
        .ensure()
        .await
        .map_err(|e| format!("table {}: {e}", settings.table_name))?;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let name = env_or("CAPY_QUEUE_NAME", "capy-deliveries");
    let deliveries = queue_pair(
        &sqs,
        &settings.delivery_queue_url,
        "DEAD_LETTER_QUEUE_URL",
        &name,
    )
    .await?;
    let fan_outs = queue_pair(
        &sqs,
        &settings.fan_out_queue_url,
        "FAN_OUT_DEAD_LETTER_QUEUE_URL",
        &format!("{name}-fanout"),
    )
    .await?;
    settings.delivery_queue_url = Some(deliveries.main.url.clone());
    settings.fan_out_queue_url = Some(fan_outs.main.url.clone());
    let jobs = queue_pair(
        &sqs,
        &settings.jobs_queue_url,
        "JOBS_DEAD_LETTER_QUEUE_URL",
        &format!("{name}-jobs"),
    )
    .await?;
    settings.jobs_queue_url = Some(jobs.main.url.clone());
    let pacing = consumers::jobs::pacing_from_env()?;
    let deps = Arc::new(
        wiring::aws(
            &settings,
            Requires {
                delivery_queue: true,
                fan_out_queue: true,
                operator_bus: Some(wiring::eventbridge_bus),
                sdk: Some(wiring::any_environment),
            },
        )
        .await?,
    );

    if let Some(org) = dev_key_org {
        let minted = mint_api_key(&org, None);
        table.put(&minted.record).await.map_err(|e| e.to_string())?;
        println!(
            "\nDevelopment API key for organization {org}:\n  {}\n",
            minted.key
        );
        println!(
            "Try:\n  curl -s -X POST http://{addr}/v1/organizations/{org}/webhook-endpoints \\\n    -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' \\\n    -d '{{\"url\": \"https://example.com/webhooks\"}}'\n",
            minted.key
        );
        // A fresh portal session for the same organization, every capability, one day.
        let portal = mint_portal_session(
            &org,
            Capability::ALL.to_vec(),
            Duration::from_secs(DEFAULT_EXPIRES_IN_SECS),
            capy_shared::domain::time::now(),
        );
        deps.portal_sessions
            .create(&portal.record)
            .await
            .map_err(|e| e.to_string())?;
        let base = settings
            .portal_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        println!(
            "Customer portal for organization {org} (session {}, valid 24 h):\n  {base}/portal/#token={}\n",
            portal.record.id, portal.token
        );
    }

    let pollers: usize = env_or("CAPY_POLLERS", "4")
        .parse()
        .map_err(|_| "CAPY_POLLERS must be a number")?;
    let wait = env_duration("CAPY_POLL_WAIT", "2s")?;
    for _ in 0..pollers {
        let d = deps.clone();
        tokio::spawn(poll(deliveries.main.clone(), wait, move |e| {
            let d = d.clone();
            async move { consumers::deliver::deliver_batch(&d, e).await }
        }));
    }
    let d = deps.clone();
    tokio::spawn(poll(fan_outs.main.clone(), wait, move |e| {
        let d = d.clone();
        async move { consumers::fan_out::fan_out_batch(&d, e).await }
    }));
    let d = deps.clone();
    tokio::spawn(poll(jobs.main.clone(), wait, move |e| {
        let d = d.clone();
        async move { consumers::jobs::jobs_batch(&d, e, pacing).await }
    }));
    for dlq in [
        deliveries.dead_letters.clone(),
        fan_outs.dead_letters.clone(),
        jobs.dead_letters.clone(),
    ] {
        let d = deps.clone();
        tokio::spawn(poll(dlq, wait, move |e| {
            let d = d.clone();
            async move { consumers::dead_letter::dead_letter_batch(&d, e).await }
        }));
    }
    let sweep_every = env_duration("SWEEP_INTERVAL", "60s")?;
    let d = deps.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(sweep_every);
        loop {
            tick.tick().await;
            if let Err(e) = consumers::sweeper::sweep(&d).await {
                tracing::warn!(error = %e, "sweep failed");
            }
        }
    });

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))?;
    tracing::info!(%addr, table = %settings.table_name, queue = %deliveries.main.url, "capy serve listening");
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted.map_err(|e| e.to_string())?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let deps = deps.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let deps = deps.clone();
                async move { Ok::<_, Infallible>(serve_http(&deps, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn to_http(r: ApiResponse) -> hyper::Response<Full<Bytes>> {
    let mut builder = hyper::Response::builder()
        .status(r.status)
        .header(http::header::CONTENT_TYPE, "application/json");
    for (name, value) in &r.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
        .body(Full::new(Bytes::from(r.body.to_string())))
        .unwrap_or_else(|_| {
            hyper::Response::new(Full::new(Bytes::from_static(
                b"{\"error\":\"internal error\"}",
            )))
        })
}

/// What API Gateway does in front of a Lambda: route, cap the body, pass path parameters.
async fn serve_http(deps: &Deps, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let path = req.uri().path();
    if path == "/portal" || path.starts_with("/portal/") {
        return crate::portal::serve(req.method(), path);
    }
    let (route, params) = match api::match_route(req.method(), req.uri().path()) {
        Ok(m) => m,
        Err(RouteMiss::NotFound) => {
            return to_http(ApiError::NotFound("no such route".into()).into_response());
        }
        Err(RouteMiss::MethodNotAllowed) => {
            return to_http(
                ApiError::MethodNotAllowed("method not allowed on this route".into())
                    .into_response(),
            );
        }
    };
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return to_http(
                ApiError::PayloadTooLarge(format!("request body exceeds {MAX_BODY_BYTES} bytes"))
                    .into_response(),
            );
        }
        Err(_) => {
            return to_http(
                ApiError::BadRequest("could not read the request body".into()).into_response(),
            );
        }
    };
    let api_req = ApiRequest {
        headers: parts.headers,
        query: parts.uri.query().map(str::to_owned),
        body,
        params,
    };
    let started = std::time::Instant::now();
    let resp = api::handle(deps, route, api_req).await;
    // What API Gateway's access log would hold: no query, no body, no credential.
    tracing::info!(
        route = route.function(),
        status = resp.status,
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    to_http(resp)
}

/// One event-source-mapping worker: long poll, batches of 10, delete what succeeded, leave
/// the reported failures for their visibility timeout.
async fn poll<F, Fut>(queue: SqsQueue, wait: Duration, handler: F)
where
    F: Fn(SqsEvent) -> Fut,
    Fut: std::future::Future<Output = aws_lambda_events::sqs::SqsBatchResponse>,
{
    loop {
        let received = queue
            .client
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait.as_secs().max(1) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await;
        let messages = match received {
            Ok(r) => r.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "receive failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let mut event = SqsEvent::default();
        let mut receipts = HashMap::new();
        for m in messages {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id.clone();
            record.receipt_handle = m.receipt_handle.clone();
            record.body = m.body.clone();
            record.attributes = m
                .attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.as_str().to_owned(), v))
                .collect();
            if let (Some(id), Some(rh)) = (m.message_id, m.receipt_handle) {
                receipts.insert(id, rh);
            }
            event.records.push(record);
        }
        let response = handler(event).await;
        for failure in &response.batch_item_failures {
            receipts.remove(&failure.item_identifier);
        }
        let entries: Vec<_> = receipts
            .into_iter()
            .enumerate()
            .filter_map(|(i, (_, rh))| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(rh)
                    .build()
                    .ok()
            })
            .collect();
        if entries.is_empty() {
            continue;
        }
        if let Err(e) = queue
            .client
            .delete_message_batch()
            .queue_url(&queue.url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            // Undeleted messages come back after their visibility timeout: a duplicate, not a loss.
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "delete failed");
        }
    }
}
