//! The HTTP server: binds, records every request, picks the answer and streams it.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::capture::{CapturedRequest, RequestView, unanswered_calls, unpaired_outputs};
use crate::error::MockError;
use crate::events::{GARBAGE_FRAME, frame_text, step_events};
use crate::script::{ContextModel, Script, Step, Usage};

/// Largest request body accepted.
const MAX_BODY: usize = 256 * 1024 * 1024;

/// A running scripted Responses API server. Stops (gracefully) when dropped.
pub struct MockModel {
    inner: Arc<Inner>,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// Options for starting a [`MockModel`].
#[derive(Debug, Clone)]
pub struct MockModelBuilder {
    script: Script,
    port: u16,
    log: Option<PathBuf>,
}

struct Inner {
    script: Script,
    state: Mutex<Shared>,
    arrived: Condvar,
    count: watch::Sender<usize>,
    log: Option<Mutex<std::fs::File>>,
    started: Instant,
    shutdown: watch::Receiver<bool>,
}

#[derive(Default)]
struct Shared {
    next_step: usize,
    rule_matches: Vec<usize>,
    extra_steps: std::collections::VecDeque<Step>,
    requests: Vec<CapturedRequest>,
    model_list_requests: Vec<CapturedRequest>,
}

impl MockModelBuilder {
    /// Listens on this port instead of an ephemeral one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Appends every request as one JSON line to this file.
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log = Some(path.into());
        self
    }

    /// Binds and serves on the current tokio runtime.
    pub async fn start(self) -> Result<MockModel, MockError> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| MockError::Bind { addr, source })?;
        let (model, serve) = self.into_server(listener)?;
        tokio::spawn(serve);
        Ok(model)
    }

    /// Binds and serves on a dedicated thread with its own runtime, so that it keeps answering
    /// while the caller blocks (e.g. waiting for a child process).
    pub fn start_blocking(self) -> Result<MockModel, MockError> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("mock-model".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = tx.send(Err(MockError::Thread(e.to_string())));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
                    let listener = match tokio::net::TcpListener::bind(addr).await {
                        Ok(listener) => listener,
                        Err(source) => {
                            let _ = tx.send(Err(MockError::Bind { addr, source }));
                            return;
                        }
                    };
                    match self.into_server(listener) {
                        Ok((model, serve)) => {
                            let _ = tx.send(Ok(model));
                            serve.await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(|e| MockError::Thread(e.to_string()))?;
        rx.recv()
            .map_err(|_| MockError::Thread("the server thread exited before binding".into()))?
    }

    fn into_server(
        self,
        listener: tokio::net::TcpListener,
    ) -> Result<
        (
            MockModel,
            impl std::future::Future<Output = ()> + Send + 'static,
        ),
        MockError,
    > {
        self.script.validate("script")?;
        let addr = listener.local_addr().map_err(|source| MockError::Bind {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            source,
        })?;
        let log = match &self.log {
            Some(path) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| MockError::Log {
                        path: path.clone(),
                        source,
                    })?,
            )),
            None => None,
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let rule_matches = vec![0; self.script.rules.len()];
        let inner = Arc::new(Inner {
            script: self.script,
            state: Mutex::new(Shared {
                rule_matches,
                ..Shared::default()
            }),
            arrived: Condvar::new(),
            count: watch::Sender::new(0),
            log,
            started: Instant::now(),
            shutdown: shutdown_rx.clone(),
        });
        let router = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let mut signal = shutdown_rx;
        let serve = async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = signal.wait_for(|stop| *stop).await;
                })
                .await;
            let _ = done_tx.send(());
        };
        Ok((
            MockModel {
                inner,
                addr,
                shutdown,
                done: Some(done_rx),
            },
            serve,
        ))
    }
}

impl MockModel {
    /// Options for a server playing `script`.
    pub fn builder(script: Script) -> MockModelBuilder {
        MockModelBuilder {
            script,
            port: 0,
            log: None,
        }
    }

    /// Starts a server on `127.0.0.1:0` on the current tokio runtime. On a current-thread
    /// runtime the server only answers while the test awaits; a test that blocks its thread
    /// (e.g. `std::process::Command::output`) should use [`MockModel::start_blocking`].
    ///
    /// # Panics
    /// When no loopback port can be bound (test support: use [`MockModel::builder`] to get the
    /// error instead).
    pub async fn start(script: Script) -> MockModel {
        match Self::builder(script).start().await {
            Ok(model) => model,
            Err(e) => panic!("mock model server failed to start: {e}"),
        }
    }

    /// Starts a server on `127.0.0.1:0` on its own thread (for tests that block).
    ///
    /// # Panics
    /// When no loopback port can be bound.
    #[track_caller]
    pub fn start_blocking(script: Script) -> MockModel {
        match Self::builder(script).start_blocking() {
            Ok(model) => model,
            Err(e) => panic!("mock model server failed to start: {e}"),
        }
    }

    /// The provider base URL, `http://127.0.0.1:PORT/v1`.
    pub fn uri(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Same as [`MockModel::uri`].
    pub fn base_url(&self) -> String {
        self.uri()
    }

    /// `http://127.0.0.1:PORT/v1/responses`.
    pub fn responses_url(&self) -> String {
        format!("http://{}/v1/responses", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Queues a step to be served (verbatim) before the rules and the default, after the
    /// script's steps.
    pub fn push_step(&self, step: Step) {
        self.inner.lock().extra_steps.push_back(step);
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<CapturedRequest> {
        self.inner.lock().requests.clone()
    }

    /// Number of requests received so far.
    pub fn request_count(&self) -> usize {
        self.inner.lock().requests.len()
    }

    /// Request `index` (0-based).
    pub fn request(&self, index: usize) -> Option<CapturedRequest> {
        self.inner.lock().requests.get(index).cloned()
    }

    /// The only request received.
    ///
    /// # Panics
    /// Unless exactly one request arrived.
    #[track_caller]
    pub fn single_request(&self) -> CapturedRequest {
        let requests = self.requests();
        match <[CapturedRequest; 1]>::try_from(requests) {
            Ok([request]) => request,
            Err(requests) => panic!("expected exactly one request, got {}", requests.len()),
        }
    }

    /// Every `GET /v1/models` received so far (kept apart from [`MockModel::requests`]).
    pub fn model_list_requests(&self) -> Vec<CapturedRequest> {
        self.inner.lock().model_list_requests.clone()
    }

    /// Time between consecutive request arrivals.
    pub fn gaps(&self) -> Vec<Duration> {
        let state = self.inner.lock();
        state
            .requests
            .windows(2)
            .map(|w| w[1].received_at.duration_since(w[0].received_at))
            .collect()
    }

    /// The `input` items of request `index` (0-based).
    ///
    /// # Panics
    /// When that request has not arrived.
    #[track_caller]
    pub fn input_items(&self, index: usize) -> Vec<Value> {
        let state = self.inner.lock();
        match state.requests.get(index) {
            Some(request) => request.input().to_vec(),
            None => panic!(
                "request {index} has not arrived ({} received)",
                state.requests.len()
            ),
        }
    }

    /// The latest tool output item with this `call_id` in any request.
    pub fn function_call_output(&self, call_id: &str) -> Option<Value> {
        let state = self.inner.lock();
        state
            .requests
            .iter()
            .rev()
            .find_map(|r| r.function_call_output(call_id).cloned())
    }

    /// `(request index, call_id)` of every tool output without an earlier matching call.
    pub fn pairing_violations(&self) -> Vec<(usize, String)> {
        let state = self.inner.lock();
        state
            .requests
            .iter()
            .flat_map(|r| r.unpaired_outputs.iter().map(|id| (r.index, id.clone())))
            .collect()
    }

    /// Waits until at least `n` requests arrived; returns them all.
    pub async fn wait_for_requests(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<CapturedRequest>, MockError> {
        let mut count = self.inner.count.subscribe();
        match tokio::time::timeout(timeout, count.wait_for(|c| *c >= n)).await {
            Ok(Ok(_)) => Ok(self.requests()),
            Ok(Err(_)) | Err(_) => Err(MockError::WaitTimeout {
                wanted: n,
                got: self.request_count(),
                timeout,
            }),
        }
    }

    /// Blocking form of [`MockModel::wait_for_requests`] (for servers from
    /// [`MockModel::start_blocking`]).
    pub fn wait_for_requests_blocking(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<CapturedRequest>, MockError> {
        let state = self.inner.lock();
        let (state, _) = self
            .inner
            .arrived
            .wait_timeout_while(state, timeout, |s| s.requests.len() < n)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.requests.len() >= n {
            Ok(state.requests.clone())
        } else {
            Err(MockError::WaitTimeout {
                wanted: n,
                got: state.requests.len(),
                timeout,
            })
        }
    }

    /// Stops accepting, ends stalled streams and waits for open connections to finish.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

impl Drop for MockModel {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

impl std::fmt::Debug for MockModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockModel")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the request and decides the answer, atomically.
    fn accept(&self, mut request: CapturedRequest, route_ok: bool, json_ok: bool) -> Answer {
        let mut state = self.lock();
        request.index = state.requests.len();
        let number = request.index + 1;
        let answer = if !route_ok {
            Answer::NotFound
        } else if !json_ok {
            Answer::InvalidJson
        } else if self.script.check_pairing && !request.unpaired_outputs.is_empty() {
            Answer::Unpaired(request.unpaired_outputs.clone())
        } else if self.script.check_pairing && !request.unanswered_calls.is_empty() {
            Answer::Unanswered(request.unanswered_calls.clone())
        } else if let Some(context) = &self.script.context {
            let tokens = context.input_tokens(&request.body);
            request.input_tokens = Some(tokens);
            if context.window.is_some_and(|window| tokens > window) {
                // Refused before the model "reads" it: no step or rule is used up.
                request.answered_by = "context_window".into();
                let step = Step::failed("context_length_exceeded", ContextModel::EXCEEDED_MESSAGE);
                Answer::Stream(Box::new(step), number)
            } else {
                let (label, mut step) = self.pick(&mut state, &request, number);
                request.answered_by = label;
                if step.http_error.is_none() && step.events.is_none() {
                    let output_tokens = step
                        .usage
                        .map_or(context.output_tokens, |usage| usage.output_tokens);
                    step.usage = Some(Usage::new(tokens, 0, output_tokens, 0));
                }
                Answer::Stream(Box::new(step), number)
            }
        } else {
            let (label, step) = self.pick(&mut state, &request, number);
            request.answered_by = label;
            Answer::Stream(Box::new(step), number)
        };
        match &answer {
            Answer::NotFound => {
                request.answered_by = "not_found".into();
                request.status = 404;
            }
            Answer::InvalidJson => {
                request.answered_by = "invalid_json".into();
                request.status = 400;
            }
            Answer::Unpaired(_) | Answer::Unanswered(_) => {
                request.answered_by = "pairing".into();
                request.status = 400;
            }
            Answer::Stream(step, _) => {
                request.status = step.http_error.as_ref().map_or(200, |e| e.status);
            }
        }
        if let Some(log) = &self.log
            && let Ok(line) = serde_json::to_string(&request)
        {
            let mut file = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let _ = writeln!(file, "{line}");
            let _ = file.flush();
        }
        state.requests.push(request);
        let count = state.requests.len();
        drop(state);
        self.arrived.notify_all();
        self.count.send_replace(count);
        answer
    }

    fn pick(&self, state: &mut Shared, request: &CapturedRequest, number: usize) -> (String, Step) {
        let view = RequestView {
            number,
            body: &request.body,
            headers: &request.headers,
        };
        if let Some(step) = self.script.steps.get(state.next_step) {
            let label = format!("steps[{}]", state.next_step);
            state.next_step += 1;
            return (label, step.clone());
        }
        if let Some(step) = state.extra_steps.pop_front() {
            return ("pushed".into(), step);
        }
        for (i, rule) in self.script.rules.iter().enumerate() {
            let used = state.rule_matches[i];
            if rule.max_matches.is_some_and(|max| used >= max) || !view.matches(&rule.when) {
                continue;
            }
            state.rule_matches[i] = used + 1;
            let label = rule.name.clone().unwrap_or_else(|| format!("rules[{i}]"));
            let step = if rule.verbatim {
                rule.then.clone()
            } else {
                view.render(&rule.then, used + 1)
            };
            return (label, step);
        }
        match &self.script.default {
            Some(step) => ("default".into(), view.render(step, 1)),
            None => (
                "default".into(),
                Step::message("mock-model: script exhausted"),
            ),
        }
    }
}

enum Answer {
    NotFound,
    InvalidJson,
    Unpaired(Vec<String>),
    Unanswered(Vec<String>),
    Stream(Box<Step>, usize),
}

async fn handle(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let received_at = Instant::now();
    let wall = SystemTime::now();
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
    let json_ok = parsed.is_ok();
    let body = parsed.unwrap_or(Value::Null);
    let path = parts.uri.path().to_owned();
    let model_list = parts.method == Method::GET && (path == "/v1/models" || path == "/models");
    let route_ok =
        parts.method == Method::POST && (path == "/v1/responses" || path == "/responses");
    let mut headers = std::collections::BTreeMap::<String, String>::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let captured = CapturedRequest {
        index: 0,
        method: parts.method.to_string(),
        path,
        query: parts.uri.query().map(str::to_owned),
        headers,
        unpaired_outputs: unpaired_outputs(&body),
        unanswered_calls: unanswered_calls(&body),
        body,
        body_len: bytes.len(),
        received_at,
        received_at_unix_ms: wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or_default(),
        elapsed_ms: received_at.duration_since(inner.started).as_secs_f64() * 1000.0,
        answered_by: String::new(),
        status: 0,
        input_tokens: None,
    };
    if model_list {
        return answer_model_list(&inner, captured).await;
    }
    match inner.accept(captured, route_ok, json_ok) {
        Answer::NotFound => json_error(
            StatusCode::NOT_FOUND,
            "mock-model serves only POST /v1/responses and GET /v1/models",
            "invalid_request_error",
        ),
        Answer::InvalidJson => json_error(
            StatusCode::BAD_REQUEST,
            "request body is not valid JSON",
            "invalid_request_error",
        ),
        Answer::Unpaired(ids) => {
            let message = format!(
                "No tool call found for function call output with call_id {}.",
                ids.join(", ")
            );
            json_error(StatusCode::BAD_REQUEST, &message, "invalid_request_error")
        }
        Answer::Unanswered(ids) => {
            let message = format!("No tool output found for function call {}.", ids.join(", "));
            json_error(StatusCode::BAD_REQUEST, &message, "invalid_request_error")
        }
        Answer::Stream(step, number) => respond(&inner, *step, number).await,
    }
}

/// Records a model-list request and answers it from the script's `models`.
async fn answer_model_list(inner: &Arc<Inner>, mut request: CapturedRequest) -> Response {
    let models = inner.script.models.clone().unwrap_or_default();
    request.answered_by = "models".into();
    request.status = models.status.unwrap_or(200);
    {
        let mut state = inner.lock();
        request.index = state.model_list_requests.len();
        if let Some(log) = &inner.log
            && let Ok(line) = serde_json::to_string(&request)
        {
            let mut file = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let _ = writeln!(file, "{line}");
            let _ = file.flush();
        }
        state.model_list_requests.push(request);
    }
    if models.delay_ms > 0 && !sleep_unless_shutdown(inner, models.delay_ms).await {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "mock-model is shutting down",
            "server_error",
        );
    }
    let status = models
        .status
        .and_then(|status| StatusCode::from_u16(status).ok())
        .unwrap_or(StatusCode::OK);
    if let Some(raw) = models.raw_body {
        let mut response = Response::new(Body::from(raw));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return response;
    }
    if !status.is_success() {
        return json_error(
            status,
            "mock-model: model list unavailable",
            "invalid_request_error",
        );
    }
    let body = json!({"object": "list", "data": models.data});
    let mut response = Response::new(Body::from(body.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn json_error(status: StatusCode, message: &str, error_type: &str) -> Response {
    let body =
        json!({"error": {"message": message, "type": error_type, "param": null, "code": null}});
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn sleep_unless_shutdown(inner: &Inner, ms: u64) -> bool {
    if ms == 0 {
        return true;
    }
    let mut shutdown = inner.shutdown.clone();
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(ms)) => true,
        _ = shutdown.wait_for(|stop| *stop) => false,
    }
}

async fn respond(inner: &Arc<Inner>, step: Step, number: usize) -> Response {
    if !sleep_unless_shutdown(inner, step.delay_ms).await {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "mock-model is shutting down",
            "server_error",
        );
    }
    let mut response = match &step.http_error {
        Some(error) => {
            let (body, default_type) = match (&error.raw_body, &error.body) {
                (Some(raw), _) => (raw.clone(), "text/plain"),
                (None, Some(json)) => (json.to_string(), "application/json"),
                (None, None) => (String::new(), "text/plain"),
            };
            let mut response = Response::new(Body::from(body));
            *response.status_mut() =
                StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let content_type = error.content_type.as_deref().unwrap_or(default_type);
            if let Ok(value) = HeaderValue::from_str(content_type) {
                response.headers_mut().insert(header::CONTENT_TYPE, value);
            }
            if let Some(offset) = error.retry_after_date_offset_s {
                let now = SystemTime::now();
                let at = if offset >= 0 {
                    now + Duration::from_secs(offset.unsigned_abs())
                } else {
                    now.checked_sub(Duration::from_secs(offset.unsigned_abs()))
                        .unwrap_or(SystemTime::UNIX_EPOCH)
                };
                if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(at)) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
            }
            response
        }
        None => stream_response(inner, &step, number),
    };
    for (name, value) in &step.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn stream_response(inner: &Arc<Inner>, step: &Step, number: usize) -> Response {
    let events = step_events(step, number);
    let limit = step
        .cut_after
        .or(step.stall_after)
        .unwrap_or(events.len())
        .min(events.len());
    let mut frames: Vec<Bytes> = events[..limit]
        .iter()
        .map(|f| Bytes::from(frame_text(f, step.data_only)))
        .collect();
    if let Some(at) = step.garbage_at {
        frames.insert(
            at.min(frames.len()),
            Bytes::from_static(GARBAGE_FRAME.as_bytes()),
        );
    }
    let streaming = step.event_delay_ms > 0
        || step.stall_after.is_some()
        || step.keep_open_ms > 0
        || step.abort;
    let body = if streaming {
        let (tx, rx) = mpsc::channel(8);
        let plan = Plan {
            event_delay_ms: step.event_delay_ms,
            stall: step.stall_after.is_some(),
            abort: step.abort,
            keep_open_ms: step.keep_open_ms,
        };
        tokio::spawn(pump(Arc::clone(inner), frames, plan, tx));
        Body::new(ChannelBody {
            rx,
            pending_error: None,
        })
    } else {
        Body::from(frames.concat())
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if step.cut_after.is_some() {
        // A cut stream also closes its connection, as a dropped upstream would.
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

struct Plan {
    event_delay_ms: u64,
    stall: bool,
    abort: bool,
    keep_open_ms: u64,
}

type Chunk = Result<Bytes, std::io::Error>;

async fn pump(inner: Arc<Inner>, frames: Vec<Bytes>, plan: Plan, tx: mpsc::Sender<Chunk>) {
    let mut shutdown = inner.shutdown.clone();
    for (i, frame) in frames.into_iter().enumerate() {
        if i > 0 && plan.event_delay_ms > 0 {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(plan.event_delay_ms)) => {}
                () = tx.closed() => return,
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
        if tx.send(Ok(frame)).await.is_err() {
            return;
        }
    }
    if plan.abort {
        let _ = tx
            .send(Err(std::io::Error::other("mock-model: connection cut")))
            .await;
        return;
    }
    if plan.stall {
        tokio::select! {
            () = tx.closed() => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
        return;
    }
    if plan.keep_open_ms > 0 {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(plan.keep_open_ms)) => {}
            () = tx.closed() => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }
}

/// A response body fed by a channel; an `Err` item aborts the connection.
struct ChannelBody {
    rx: mpsc::Receiver<Chunk>,
    pending_error: Option<std::io::Error>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        if let Some(error) = self.pending_error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Err(error))) => {
                // Give the connection one turn to flush the frames already written before the
                // error aborts it.
                self.pending_error = Some(error);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            other => other.map(|chunk| chunk.map(|chunk| chunk.map(http_body::Frame::data))),
        }
    }
}
