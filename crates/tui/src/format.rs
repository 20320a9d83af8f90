//! Number, duration and goal-status text shared by the footer, the `/goal` summary and the panel.

use quest_protocol::goal::{GoalStatus, ThreadGoal};

/// Compact token counts: `950`, `12.5K`, `50K`, `1.2M`.
pub fn tokens(n: i64) -> String {
    let n = n.max(0);
    if n < 1000 {
        return n.to_string();
    }
    let (value, unit) = if n < 1_000_000 {
        (n as f64 / 1000.0, "K")
    } else {
        (n as f64 / 1_000_000.0, "M")
    };
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text}{unit}")
}

/// Elapsed time: `59s`, `1m`, `1h 30m`, `2h`, `1d 0h 0m`.
pub fn elapsed(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 60 {
        return format!("{s}s");
    }
    if s < 3600 {
        return format!("{}m", s / 60);
    }
    if s < 86_400 {
        let (h, m) = (s / 3600, (s % 3600) / 60);
        return if m == 0 {
            format!("{h}h")
        } else {
            format!("{h}h {m}m")
        };
    }
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    format!("{d}d {h}h {m}m")
}

/// A clock time `HH:MM` for unix seconds, in the zone `offset_seconds` east of UTC.
pub fn clock(unix_seconds: i64, offset_seconds: i32) -> String {
    let local = unix_seconds + i64::from(offset_seconds);
    let minutes = local.rem_euclid(86_400) / 60;
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// The label `/goal` uses for a status.
pub fn status_label(status: GoalStatus) -> &'static str {
    match status {
        GoalStatus::Active => "active",
        GoalStatus::Paused => "paused",
        GoalStatus::Blocked => "stalled",
        GoalStatus::UsageLimited => "usage limited",
        GoalStatus::BudgetLimited => "limited by budget",
        GoalStatus::Complete => "complete",
    }
}

/// True for statuses a user would be asked about before a new goal replaces them.
pub fn unfinished(status: GoalStatus) -> bool {
    status != GoalStatus::Complete
}

/// The footer's goal indicator.
pub fn goal_indicator(goal: &ThreadGoal, offset_seconds: i32) -> String {
    match goal.status {
        GoalStatus::Active => match goal.token_budget {
            Some(budget) => format!(
                "Pursuing goal ({} / {})",
                tokens(goal.tokens_used),
                tokens(budget)
            ),
            None => format!("Pursuing goal ({})", elapsed(goal.time_used_seconds)),
        },
        GoalStatus::Paused => "Goal paused (/goal resume)".to_string(),
        GoalStatus::Blocked => "Goal stalled (/goal resume)".to_string(),
        GoalStatus::UsageLimited => match goal.usage_limit_resets_at {
            Some(at) => format!(
                "Goal hit usage limits (resets {}; /goal resume)",
                clock(at, offset_seconds)
            ),
            None => "Goal hit usage limits (/goal resume)".to_string(),
        },
        GoalStatus::BudgetLimited => {
            use quest_protocol::goal::BudgetLimitKind;
            match (goal.budget_limit_kind, goal.token_budget) {
                (Some(BudgetLimitKind::Time), _) => match goal.time_budget_seconds {
                    Some(budget) => format!(
                        "Goal unmet ({} / {} time)",
                        elapsed(goal.time_used_seconds),
                        elapsed(budget)
                    ),
                    None => "Goal abandoned".to_string(),
                },
                (Some(BudgetLimitKind::Turns), _) => match goal.turn_budget {
                    Some(budget) => format!("Goal unmet ({} / {budget} turns)", goal.turns_used),
                    None => "Goal abandoned".to_string(),
                },
                (_, Some(budget)) => format!(
                    "Goal unmet ({} / {} tokens)",
                    tokens(goal.tokens_used),
                    tokens(budget)
                ),
                (_, None) => "Goal abandoned".to_string(),
            }
        }
        GoalStatus::Complete => match goal.token_budget {
            Some(_) => format!("Goal achieved ({} tokens)", tokens(goal.tokens_used)),
            None => format!("Goal achieved ({})", elapsed(goal.time_used_seconds)),
        },
    }
}

/// Parses a duration such as `90`, `90s`, `15m`, `2h`, `1h30m`, `1d` into seconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(n) = text.parse::<i64>() {
        return (n > 0).then_some(n);
    }
    let mut total = 0i64;
    let mut number = String::new();
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            number.push(ch);
            continue;
        }
        let n: i64 = number.parse().ok()?;
        number.clear();
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !number.is_empty() {
        return None;
    }
    (total > 0).then_some(total)
}

/// Parses a token count such as `50000`, `50K`, `1.5M`, `2_000_000`.
pub fn parse_tokens(text: &str) -> Option<i64> {
    let cleaned: String = text
        .trim()
        .chars()
        .filter(|c| *c != '_' && *c != ',')
        .collect();
    let (number, scale) = match cleaned.chars().last()? {
        'k' | 'K' => (&cleaned[..cleaned.len() - 1], 1_000.0),
        'm' | 'M' => (&cleaned[..cleaned.len() - 1], 1_000_000.0),
        _ => (cleaned.as_str(), 1.0),
    };
    let value: f64 = number.parse().ok()?;
    let tokens = (value * scale).round();
    (1.0..9.0e15).contains(&tokens).then_some(tokens as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_numbers_and_durations() {
        assert_eq!(tokens(950), "950");
        assert_eq!(tokens(12_500), "12.5K");
        assert_eq!(tokens(50_000), "50K");
        assert_eq!(tokens(63_949), "63.9K");
        assert_eq!(tokens(1_200_000), "1.2M");
        assert_eq!(elapsed(59), "59s");
        assert_eq!(elapsed(60), "1m");
        assert_eq!(elapsed(5400), "1h 30m");
        assert_eq!(elapsed(7200), "2h");
        assert_eq!(elapsed(86_400), "1d 0h 0m");
        assert_eq!(clock(13 * 3600 + 5 * 60, 3600), "14:05");
    }

    #[test]
    fn budgets_parse() {
        assert_eq!(parse_tokens("50K"), Some(50_000));
        assert_eq!(parse_tokens("1.5m"), Some(1_500_000));
        assert_eq!(parse_tokens("2_000"), Some(2000));
        assert_eq!(parse_tokens("zero"), None);
        assert_eq!(parse_tokens("0"), None);
        assert_eq!(parse_duration("2h"), Some(7200));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("2x"), None);
        assert_eq!(parse_duration("5m3"), None);
    }
}
