//! What front-ends send to a thread ([`Op`]) and what it sends back ([`Event`]). The types live
//! in `quest-protocol`; this module re-exports them and maps model-client errors onto
//! [`TurnError`].

use quest_model::ModelError;
pub use quest_protocol::ops::{Event, EventMsg, Op, TurnError, TurnErrorKind, TurnTrigger};

/// The turn error a model-client failure ends a turn with.
pub fn turn_error_from_model(err: &ModelError) -> TurnError {
    let kind = match err {
        ModelError::MissingEnvVar { .. } => TurnErrorKind::MissingEnvVar,
        ModelError::InvalidConfig { .. } => TurnErrorKind::InvalidConfig,
        ModelError::UsageLimit { .. } => TurnErrorKind::UsageLimitReached,
        ModelError::UsageNotIncluded => TurnErrorKind::UsageNotIncluded,
        ModelError::QuotaExceeded => TurnErrorKind::InsufficientQuota,
        ModelError::ContextWindowExceeded => TurnErrorKind::ContextLengthExceeded,
        ModelError::ServerOverloaded => TurnErrorKind::ServerOverloaded,
        ModelError::InvalidRequest { .. } => TurnErrorKind::InvalidRequest,
        ModelError::Incomplete { .. } => TurnErrorKind::Incomplete,
        ModelError::InternalServerError => TurnErrorKind::InternalServerError,
        ModelError::RetryLimit { .. } => TurnErrorKind::RetryLimit,
        ModelError::UnexpectedStatus { .. } => TurnErrorKind::UnexpectedStatus,
        ModelError::RateLimited { .. } => TurnErrorKind::RateLimited,
        ModelError::Stream { .. } => TurnErrorKind::StreamDisconnected,
        ModelError::ConnectionFailed { .. } => TurnErrorKind::ConnectionFailed,
        ModelError::MalformedEvent { .. } => TurnErrorKind::MalformedEvent,
        ModelError::NotEventStream { .. } => TurnErrorKind::NotEventStream,
    };
    TurnError {
        message: err.user_message(),
        kind,
        resets_at: err.usage_limit_resets_at(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_errors_keep_their_class_and_reset_time() {
        let err = ModelError::UsageLimit {
            plan_type: Some("plus".to_string()),
            resets_at: Some(1_900_000_000),
        };
        let turn = turn_error_from_model(&err);
        assert_eq!(turn.kind.as_str(), err.error_type());
        assert!(turn.is_usage_limit());
        assert_eq!(turn.resets_at, Some(1_900_000_000));
        let overloaded = turn_error_from_model(&ModelError::ServerOverloaded);
        assert_eq!(overloaded.kind, TurnErrorKind::ServerOverloaded);
        assert_eq!(overloaded.kind.as_str(), "server_overloaded");
    }
}
