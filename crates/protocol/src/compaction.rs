//! Context compaction records: what replaced a thread's history when it was compacted.
//!
//! A compaction is stored in the thread's rollout as one record that carries the whole
//! replacement history, so loading the rollout yields the compacted history followed by what came
//! after it, and a compaction that never finished leaves no record (the earlier history stays).

use serde::{Deserialize, Serialize};

use crate::ResponseItem;

/// Why a compaction ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompactionTrigger {
    /// The live context crossed `model_auto_compact_token_limit` (before a request or at the end
    /// of a turn).
    Auto,
    /// The provider answered `context_length_exceeded`; the request is retried once afterwards.
    Reactive,
    /// The user asked for it (`quest exec resume <id> --compact`, `thread/compact/start`).
    Manual,
}

impl CompactionTrigger {
    /// `auto` / `reactive` / `manual`, as recorded and exported.
    pub fn as_str(self) -> &'static str {
        match self {
            CompactionTrigger::Auto => "auto",
            CompactionTrigger::Reactive => "reactive",
            CompactionTrigger::Manual => "manual",
        }
    }
}

/// One compaction as persisted in the rollout (`{"type":"compacted", …}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "compacted")]
pub struct CompactedHistory {
    /// The summary the model wrote.
    pub summary: String,
    /// The history that replaces every earlier item of the thread.
    pub replacement_history: Vec<ResponseItem>,
    /// Why it ran.
    pub trigger: CompactionTrigger,
    /// Live-context tokens before the compaction.
    pub tokens_before: i64,
    /// Estimated tokens of the replacement history.
    pub tokens_after: i64,
}

/// A thread's history as loaded from its rollout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadedHistory {
    /// The items to send: the last compaction's replacement history (if any) and every item
    /// recorded after it.
    pub items: Vec<ResponseItem>,
    /// How many compactions the thread has had: the context window number (`x-codex-window-id`
    /// is `<thread>:<compactions>`).
    pub compactions: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compacted_record_is_tagged_and_round_trips() {
        let record = CompactedHistory {
            summary: "did things".into(),
            replacement_history: vec![ResponseItem::text_message("user", "hi")],
            trigger: CompactionTrigger::Reactive,
            tokens_before: 900,
            tokens_after: 40,
        };
        let text = serde_json::to_string(&record).unwrap();
        assert!(text.starts_with(r#"{"type":"compacted","#), "{text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["trigger"], json!("reactive"));
        assert_eq!(
            serde_json::from_str::<CompactedHistory>(&text).unwrap(),
            record
        );
        // An ordinary item is not a compaction record.
        let item = serde_json::to_string(&ResponseItem::text_message("user", "x")).unwrap();
        assert!(serde_json::from_str::<CompactedHistory>(&item).is_err());
    }
}
