//! Turns against hostile or unlucky conditions (issue 17), in-process: a `ThreadManager`, the
//! mock model over TCP and a real SQLite store.

mod support;

use quest_core::{EventMsg, Op, ThreadOptions};
use quest_mock_model::{Script, Step};
use serde_json::json;
use support::{Harness, wait_for};

/// Item 1: interrupting a turn while its command runs answers the call with "aborted", so the
/// next request of the thread is well-formed (the mock refuses unanswered calls, as the real
/// API does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_call_is_answered_before_the_next_request() {
    let h = Harness::new(
        Script::new([
            Step::function_call("exec_command", json!({"cmd": "sleep 600"})),
            Step::message("back"),
        ]),
        &[],
    )
    .await;
    let mut t = h
        .manager
        .start_thread(ThreadOptions {
            goal_loop: false,
            headless: true,
        })
        .unwrap();
    t.handle.submit(Op::UserInput {
        text: "run it".into(),
    });
    wait_for(&mut t.events, |e| {
        matches!(e.msg, EventMsg::ExecCommandBegin { .. })
    })
    .await;
    t.handle.submit(Op::Interrupt { pause_goal: false });
    wait_for(&mut t.events, |e| matches!(e.msg, EventMsg::TurnAborted)).await;

    t.handle.submit(Op::UserInput {
        text: "go on".into(),
    });
    let events = wait_for(&mut t.events, |e| {
        matches!(
            e.msg,
            EventMsg::TurnCompleted { .. } | EventMsg::TurnFailed { .. }
        )
    })
    .await;
    assert!(
        matches!(events.last().unwrap().msg, EventMsg::TurnCompleted { .. }),
        "{events:#?}"
    );
    let request = h.mock.request(1).unwrap();
    assert_eq!(request.status, 200);
    assert!(request.unanswered_calls.is_empty(), "{:?}", request.body);
    let call_id = request.items_of_type("function_call")[0]["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        request.function_call_output(&call_id).unwrap()["output"],
        "aborted"
    );
}

/// Item 7: however much text a response streams, at most one item's worth is forwarded as
/// deltas, and the message arrives shortened around a notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_text_is_bounded_and_the_message_shortened() {
    const SIZE: usize = 3 * 1024 * 1024;
    let text: String = (0..SIZE)
        .map(|i| char::from(b'a' + u8::try_from(i % 26).unwrap()))
        .collect();
    let h = Harness::new(
        Script::new([Step::message(text.clone()).with_deltas(300)]),
        &[],
    )
    .await;
    let mut t = h
        .manager
        .start_thread(ThreadOptions {
            goal_loop: false,
            headless: true,
        })
        .unwrap();
    t.handle.submit(Op::UserInput {
        text: "write".into(),
    });
    let events = wait_for(&mut t.events, |e| {
        matches!(
            e.msg,
            EventMsg::TurnCompleted { .. } | EventMsg::TurnFailed { .. }
        )
    })
    .await;
    let streamed: usize = events
        .iter()
        .filter_map(|e| match &e.msg {
            EventMsg::AgentMessageDelta(delta) => Some(delta.len()),
            _ => None,
        })
        .sum();
    assert!(streamed > 0);
    assert!(
        streamed <= quest_core::turn::MAX_STREAMED_TEXT_BYTES,
        "{streamed}"
    );
    let message = events
        .iter()
        .find_map(|e| match &e.msg {
            EventMsg::AgentMessage(text) => Some(text.clone()),
            _ => None,
        })
        .unwrap();
    let half = quest_model::sse::MAX_EVENT_STRING_BYTES / 2;
    assert!(message.starts_with(&text[..half]));
    assert!(message.ends_with(&text[SIZE - half..]));
    assert!(
        message.contains(&format!(
            "[{} bytes omitted by Quest from the middle of this text]",
            SIZE - 2 * half
        )),
        "{}",
        &message[half - 10..half + 100]
    );
}
