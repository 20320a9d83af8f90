//! Shared fixtures: a client pointed at a mock server with short backoffs, and a runner that
//! collects every event.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use quest_mock_model::{MockModel, Script, Step};
use quest_model::{
    ClientOptions, ModelClient, ModelError, ModelProviderInfo, Prompt, ResponseEvent,
    ResponseOutcome,
};
use quest_protocol::ResponseItem;

/// Backoff base used by the tests (production: 200 ms).
pub const BASE: Duration = Duration::from_millis(10);

pub fn provider(mock: &MockModel) -> ModelProviderInfo {
    ModelProviderInfo {
        name: "mock".into(),
        base_url: Some(mock.uri()),
        env_key: Some("QUEST_MODEL_TEST_KEY_NEVER_SET".into()),
        ..ModelProviderInfo::default()
    }
}

pub fn options() -> ClientOptions {
    ClientOptions {
        originator: "quest_exec".into(),
        api_key_override: Some("sk-test".into()),
        backoff_base: BASE,
        max_retry_delay: Duration::from_secs(120),
        user_agent_suffix: None,
        propagate_trace_context: true,
        ..ClientOptions::default()
    }
}

pub fn prompt() -> Prompt {
    Prompt {
        model: "gpt-5.5".into(),
        input: vec![ResponseItem::text_message("user", "hello")],
        parallel_tool_calls: true,
        prompt_cache_key: Some("thread-1".into()),
        ..Prompt::default()
    }
}

pub struct Run {
    pub result: Result<ResponseOutcome, ModelError>,
    pub events: Vec<ResponseEvent>,
    pub elapsed: Duration,
}

impl Run {
    pub fn retries(&self) -> Vec<(u32, u32, Duration, String)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ResponseEvent::Retrying {
                    attempt,
                    max_attempts,
                    delay,
                    reason,
                } => Some((*attempt, *max_attempts, *delay, reason.clone())),
                _ => None,
            })
            .collect()
    }

    /// The events without the per-attempt and per-SSE-event telemetry reports.
    pub fn stream_events(&self) -> Vec<&ResponseEvent> {
        self.events
            .iter()
            .filter(|e| {
                !matches!(
                    e,
                    ResponseEvent::RequestAttempt(_) | ResponseEvent::SseEvent { .. }
                )
            })
            .collect()
    }

    /// Every HTTP attempt reported, in order.
    pub fn attempts(&self) -> Vec<&quest_model::RequestAttempt> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ResponseEvent::RequestAttempt(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    #[track_caller]
    pub fn err(&self) -> &ModelError {
        match &self.result {
            Err(e) => e,
            Ok(o) => panic!("expected an error, got {o:?}\nevents: {:?}", self.events),
        }
    }

    #[track_caller]
    pub fn ok(&self) -> &ResponseOutcome {
        match &self.result {
            Ok(o) => o,
            Err(e) => panic!("expected success, got {e:?}\nevents: {:?}", self.events),
        }
    }
}

pub async fn run_with(client: &ModelClient, prompt: &Prompt) -> Run {
    let mut events = Vec::new();
    let start = Instant::now();
    let result = client.stream(prompt, &mut |e| events.push(e)).await;
    Run {
        result,
        events,
        elapsed: start.elapsed(),
    }
}

/// Starts `script`, builds a client with `tweak` applied to the provider, runs one call.
pub async fn run_script(
    script: Script,
    tweak: impl FnOnce(&mut ModelProviderInfo),
) -> (MockModel, Run) {
    let mock = MockModel::start(script).await;
    let mut p = provider(&mock);
    tweak(&mut p);
    let client = ModelClient::new(p, options()).unwrap();
    let run = run_with(&client, &prompt()).await;
    (mock, run)
}

/// A script that answers every request with `step`.
pub fn always(step: Step) -> Script {
    Script::new([]).with_default(step)
}

/// Asserts each gap is at least `0.9 × expected − 2 ms` and at most `1.1 × expected + slack`.
#[track_caller]
pub fn assert_gaps(gaps: &[Duration], expected: &[Duration]) {
    assert_eq!(
        gaps.len(),
        expected.len(),
        "gaps {gaps:?} vs expected {expected:?}"
    );
    let slack = Duration::from_millis(250);
    for (i, (gap, want)) in gaps.iter().zip(expected).enumerate() {
        let low = want.mul_f64(0.9).saturating_sub(Duration::from_millis(2));
        let high = want.mul_f64(1.1) + slack;
        assert!(
            *gap >= low && *gap <= high,
            "gap {i} = {gap:?}, expected {want:?} (allowed {low:?}..={high:?}); all gaps {gaps:?}"
        );
    }
}

/// The nominal layer-2 backoff before retry `n` (1-based).
pub fn turn_backoff(n: u32) -> Duration {
    BASE * 2u32.pow(n - 1)
}
