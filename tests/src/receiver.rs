//! A real HTTP receiver on loopback that records what arrives and answers from a script.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HashMap<String, String>,
    pub body: String,
    pub path: String,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

/// How to answer one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// Status after a delay.
    Slow(u16, Duration),
    /// Close the connection without answering.
    Reset,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    script: VecDeque<Reply>,
    otherwise: Option<Reply>,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    /// Answers 200 to everything.
    pub async fn start() -> Self {
        Self::scripted(vec![], Reply::Status(200)).await
    }

    /// Answers from `script` in order, then `otherwise` forever.
    pub async fn scripted(script: Vec<Reply>, otherwise: Reply) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            received: vec![],
            script: script.into(),
            otherwise: Some(otherwise),
        }));
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let st = st.clone();
                            async move {
                                let headers = req
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                                    })
                                    .collect();
                                let path = req.uri().path().to_owned();
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let reply = {
                                    let mut s = st.lock().expect("state");
                                    s.received.push(Received {
                                        headers,
                                        body: String::from_utf8_lossy(&body).into_owned(),
                                        path,
                                    });
                                    s.script
                                        .pop_front()
                                        .or_else(|| s.otherwise.clone())
                                        .unwrap_or(Reply::Status(200))
                                };
                                let status = match reply {
                                    Reply::Status(s) => s,
                                    Reply::Slow(s, d) => {
                                        tokio::time::sleep(d).await;
                                        s
                                    }
                                    Reply::Reset => return Err("reset"),
                                };
                                Ok::<_, &'static str>(
                                    hyper::Response::builder()
                                        .status(status)
                                        .body(Full::new(Bytes::from(format!("answer {status}"))))
                                        .expect("response"),
                                )
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url: format!("http://{addr}/hook"),
            state,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().expect("state").received.clone()
    }

    pub fn count(&self) -> usize {
        self.state.lock().expect("state").received.len()
    }

    /// Replaces what it answers from now on.
    pub fn answer(&self, otherwise: Reply) {
        let mut s = self.state.lock().expect("state");
        s.script.clear();
        s.otherwise = Some(otherwise);
    }
}
