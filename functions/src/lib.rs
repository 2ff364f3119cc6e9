//! Lambda wiring shared by the thin binaries in `src/bin/` (`api` for every route, one per
//! consumer): tracing, configuration, clients
//! built once per container, and the conversion between API Gateway and the library's API.
//!
//! The binaries run on tokio's current-thread runtime: Lambda gives a container one event at
//! a time and, at the template's memory sizes, less than one vCPU, so worker threads would
//! only add their start-up (~130 µs, `make coldstart-phases`) to every cold start. Work
//! inside an event (a batch's records) still runs concurrently on that one thread.

use aws_lambda_events::sqs::SqsEvent;
use capy_shared::api::{self, ApiRequest, ApiResponse, Route};
use capy_shared::config::Settings;
use capy_shared::consumers;
use capy_shared::services::Deps;
use capy_shared::wiring::{self, Requires};
use lambda_http::{Body, RequestExt};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// JSON logs when Lambda asks for them (the template sets JSON); RUST_LOG picks the levels.
///
/// RUST_LOG is read as `Targets` (`info`, `info,capy_shared=debug`: levels per target), not
/// as an `EnvFilter`: EnvFilter's span and field matching links a regex engine, about half a
/// megabyte of every binary, for syntax no function needs. A value that does not parse
/// falls back to `info`.
pub fn init_tracing() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_target(false).without_time();
    if json {
        builder
            .json()
            .flatten_event(true)
            .finish()
            .with(filter)
            .init();
    } else {
        builder.with_ansi(false).finish().with(filter).init();
    }
}

fn settings() -> Result<Settings, Error> {
    Settings::from_env(false).map_err(|e| format!("configuration: {e}").into())
}

/// What a route cannot start without: the delivery queue for the routes that send
/// deliveries, the fan-out queue for publish. No route puts events on the operator bus.
fn requires(route: Route) -> Requires {
    Requires {
        delivery_queue: route.enqueues(),
        fan_out_queue: route == Route::PublishEvent,
        operator_bus: None,
        sdk: None,
    }
}

async fn deps(requires: Requires) -> Result<Deps, Error> {
    Ok(wiring::aws(&settings()?, requires).await?)
}

/// API Gateway (HTTP API, payload 2.0) request → the library's request.
pub fn to_api_request(req: lambda_http::Request) -> ApiRequest {
    let params = req
        .path_parameters()
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let query = req.uri().query().map(str::to_owned);
    let (parts, body) = req.into_parts();
    let body = match body {
        Body::Empty => bytes::Bytes::new(),
        Body::Text(t) => bytes::Bytes::from(t),
        Body::Binary(b) => bytes::Bytes::from(b),
        _ => bytes::Bytes::new(),
    };
    ApiRequest {
        headers: parts.headers,
        query,
        body,
        params,
    }
}

pub fn to_lambda_response(r: ApiResponse) -> lambda_http::Response<Body> {
    let mut builder = lambda_http::Response::builder()
        .status(r.status)
        .header(http::header::CONTENT_TYPE, "application/json");
    for (name, value) in &r.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
        .body(Body::Text(r.body.to_string()))
        .unwrap_or_else(|_| {
            lambda_http::Response::new(Body::Text(r#"{"error":"internal error"}"#.into()))
        })
}

/// The route a function serves: `CAPY_ROUTE`, one of `Route::function`'s names. Missing or
/// unknown, the function does not start (one binary serves every route, so a typo in the
/// template must not fall back to some route).
fn route_from_env() -> Result<Route, Error> {
    let name = std::env::var("CAPY_ROUTE").map_err(|_| "configuration: CAPY_ROUTE is not set")?;
    Route::from_function(&name).ok_or_else(|| {
        let known: Vec<&str> = Route::ALL.iter().map(|r| r.function()).collect();
        format!(
            "configuration: CAPY_ROUTE={name} is none of {}",
            known.join(", ")
        )
        .into()
    })
}

/// The whole of the `api` binary's `main`.
pub async fn run_api() -> Result<(), Error> {
    init_tracing();
    let route = route_from_env()?;
    let deps = deps(requires(route)).await?;
    let deps = &deps;
    lambda_http::run(lambda_http::service_fn(
        move |req: lambda_http::Request| async move {
            let resp = api::handle(deps, route, to_api_request(req)).await;
            Ok::<_, std::convert::Infallible>(to_lambda_response(resp))
        },
    ))
    .await
}

#[derive(Clone, Copy)]
enum SqsConsumer {
    Deliver,
    FanOut,
    DeadLetter,
}

/// The whole of an SQS consumer's `main`.
async fn run_sqs(consumer: SqsConsumer) -> Result<(), Error> {
    init_tracing();
    let requires = match consumer {
        SqsConsumer::Deliver => Requires {
            delivery_queue: true,
            fan_out_queue: false,
            operator_bus: Some(wiring::eventbridge_bus),
            sdk: None,
        },
        SqsConsumer::FanOut => Requires {
            delivery_queue: true,
            fan_out_queue: true,
            operator_bus: Some(wiring::eventbridge_bus),
            sdk: None,
        },
        SqsConsumer::DeadLetter => Requires {
            operator_bus: Some(wiring::eventbridge_bus),
            ..Requires::default()
        },
    };
    let deps = deps(requires).await?;
    let deps = &deps;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<SqsEvent>| async move {
            let batch = event.payload;
            Ok::<_, Error>(match consumer {
                SqsConsumer::Deliver => consumers::deliver::deliver_batch(deps, batch).await,
                SqsConsumer::FanOut => consumers::fan_out::fan_out_batch(deps, batch).await,
                SqsConsumer::DeadLetter => {
                    consumers::dead_letter::dead_letter_batch(deps, batch).await
                }
            })
        },
    ))
    .await
}

pub async fn run_deliver() -> Result<(), Error> {
    run_sqs(SqsConsumer::Deliver).await
}

pub async fn run_fan_out() -> Result<(), Error> {
    run_sqs(SqsConsumer::FanOut).await
}

pub async fn run_dead_letter() -> Result<(), Error> {
    run_sqs(SqsConsumer::DeadLetter).await
}

/// The jobs worker (replays): sends deliveries again, page by page; continues a long job
/// on a fresh jobs-queue message.
pub async fn run_jobs() -> Result<(), Error> {
    init_tracing();
    let pacing = consumers::jobs::pacing_from_env().map_err(|e| format!("configuration: {e}"))?;
    // The fan-out queue: `capy.replay.finished` may go to more endpoints than publish
    // fans out inline.
    let deps = deps(Requires {
        delivery_queue: true,
        fan_out_queue: true,
        ..Requires::default()
    })
    .await?;
    let deps = &deps;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<SqsEvent>| async move {
            Ok::<_, Error>(consumers::jobs::jobs_batch(deps, event.payload, pacing).await)
        },
    ))
    .await
}

pub async fn run_sweeper() -> Result<(), Error> {
    init_tracing();
    let deps = deps(Requires {
        delivery_queue: true,
        ..Requires::default()
    })
    .await?;
    let deps = &deps;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |_: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            let n = consumers::sweeper::sweep(deps).await?;
            Ok::<_, Error>(serde_json::json!({ "sent": n }))
        },
    ))
    .await
}

/// The portal's build as `functions/build.rs` embeds it: (path relative to `portal/dist`,
/// bytes), or `None` when the artifact was built without one.
pub type PortalFiles = Option<&'static [(&'static str, &'static [u8])]>;

/// The `portal` function's answer to one request: `capy_shared::portal_assets`'s rules over
/// the embedded files, text bodies as text and the rest base64-encoded (`Body::Binary`).
pub fn portal_response(
    files: PortalFiles,
    frame_ancestors: &str,
    req: &lambda_http::Request,
) -> lambda_http::Response<Body> {
    use capy_shared::portal_assets::{self, Reply};
    let lookup = |rel: &str| {
        files?
            .iter()
            .find(|(name, _)| *name == rel)
            .map(|(_, bytes)| bytes::Bytes::from_static(bytes))
    };
    let reply = portal_assets::serve(
        req.method(),
        req.uri().path(),
        frame_ancestors,
        lookup,
        || {
            Reply::json_error(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "the portal was not built into this artifact: run make portal before make lambda / sam build",
            )
        },
    );
    let text = reply
        .header(&http::header::CONTENT_TYPE)
        .is_some_and(portal_assets::is_text);
    let mut builder = lambda_http::Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        builder = builder.header(name, value.as_str());
    }
    let body = if reply.body.is_empty() {
        Body::Empty
    } else if text && let Ok(s) = std::str::from_utf8(&reply.body) {
        Body::Text(s.to_owned())
    } else {
        Body::Binary(reply.body.to_vec())
    };
    builder.body(body).unwrap_or_else(|_| {
        lambda_http::Response::new(Body::Text(r#"{"error":"internal error"}"#.into()))
    })
}

/// The whole of the `portal` function's `main`: the customer portal's files under
/// `/portal/`, from the binary itself (no AWS client, no table).
pub async fn run_portal(files: PortalFiles) -> Result<(), Error> {
    init_tracing();
    if files.is_none() {
        tracing::warn!("this artifact holds no portal build: every page answers 503");
    }
    let frame_ancestors = capy_shared::portal_assets::frame_ancestors_from_env();
    let frame_ancestors = frame_ancestors.as_str();
    lambda_http::run(lambda_http::service_fn(
        move |req: lambda_http::Request| async move {
            Ok::<_, std::convert::Infallible>(portal_response(files, frame_ancestors, &req))
        },
    ))
    .await
}
