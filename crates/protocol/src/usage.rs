//! Token usage as reported by `response.completed`, and the goal charge derived from it.

use serde::{Deserialize, Serialize};

/// Token counts of one model response, or a sum of several.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// `input_tokens`.
    pub input_tokens: i64,
    /// `input_tokens_details.cached_tokens`.
    pub cached_input_tokens: i64,
    /// `output_tokens` (reasoning tokens included).
    pub output_tokens: i64,
    /// `output_tokens_details.reasoning_tokens`.
    pub reasoning_output_tokens: i64,
    /// `total_tokens`.
    pub total_tokens: i64,
}

impl TokenUsage {
    /// Tokens a goal is charged for this usage: `(input − cached) + output`, never negative.
    pub fn goal_charge(&self) -> i64 {
        let uncached = self.input_tokens.saturating_sub(self.cached_input_tokens).max(0);
        uncached.saturating_add(self.output_tokens.max(0))
    }

    /// Adds `other` field by field (saturating).
    pub fn add(&mut self, other: &TokenUsage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(other.cached_input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.reasoning_output_tokens = self
            .reasoning_output_tokens
            .saturating_add(other.reasoning_output_tokens);
        self.total_tokens = self.total_tokens.saturating_add(other.total_tokens);
    }

    /// True when every count is zero.
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goal_charge_matches_spec_examples() {
        let a = TokenUsage {
            input_tokens: 20,
            cached_input_tokens: 5,
            output_tokens: 8,
            ..Default::default()
        };
        assert_eq!(a.goal_charge(), 23);
        let b = TokenUsage {
            input_tokens: 1100,
            cached_input_tokens: 900,
            output_tokens: 12,
            ..Default::default()
        };
        assert_eq!(b.goal_charge(), 212);
        let weird = TokenUsage {
            input_tokens: 5,
            cached_input_tokens: 50,
            output_tokens: 1,
            ..Default::default()
        };
        assert_eq!(weird.goal_charge(), 1);
    }

    #[test]
    fn add_sums_every_field() {
        let mut total = TokenUsage::default();
        total.add(&TokenUsage {
            input_tokens: 1000,
            total_tokens: 1000,
            ..Default::default()
        });
        total.add(&TokenUsage {
            input_tokens: 1100,
            cached_input_tokens: 1000,
            output_tokens: 29,
            reasoning_output_tokens: 3,
            total_tokens: 1129,
        });
        assert_eq!(total.input_tokens, 2100);
        assert_eq!(total.cached_input_tokens, 1000);
        assert_eq!(total.output_tokens, 29);
        assert_eq!(total.reasoning_output_tokens, 3);
        assert_eq!(total.total_tokens, 2129);
    }
}
