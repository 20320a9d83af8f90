//! A thread's transcript as readers see it: every item in the order it was recorded, with the turn
//! that recorded it and the points where the history was compacted. (The model is sent
//! [`crate::LoadedHistory`] instead, where a compaction hides what came before it.)

use crate::{CompactedHistory, ResponseItem};

/// One recorded row of a thread's transcript.
#[derive(Clone, Debug, PartialEq)]
pub struct TranscriptEntry {
    /// The turn that appended it (`None` for items written outside a turn).
    pub turn_id: Option<String>,
    /// The item, or the compaction that happened at this point.
    pub item: TranscriptItem,
}

/// What a transcript row holds.
#[derive(Clone, Debug, PartialEq)]
pub enum TranscriptItem {
    /// An item as it was exchanged.
    Item(ResponseItem),
    /// A compaction: the model's history was replaced here (the earlier rows stay for readers).
    Compaction(CompactedHistory),
}
