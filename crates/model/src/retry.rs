//! Retry delays: exponential backoff with jitter, and the server's hints (`Retry-After`,
//! `retry-after-ms`, "try again in Xs").

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::HeaderMap;

/// `base × 2^(attempt-1) × jitter`, jitter uniform in `[0.9, 1.1)`, capped at `max`.
/// `attempt` starts at 1.
pub fn backoff(base: Duration, attempt: u32, max: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let jitter: f64 = rand::random_range(0.9..1.1);
    let secs = base.as_secs_f64() * f64::from(1u32 << exp) * jitter;
    Duration::from_secs_f64(secs.min(max.as_secs_f64()))
}

/// The delay a response's headers ask for: `retry-after-ms` (milliseconds) wins over
/// `Retry-After` (integer or decimal seconds, or an HTTP date; a past date means now).
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let date = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (date.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// Parses "try again in 2.5s" / "try again in 300ms" / "try again in 3 seconds" (case-insensitive)
/// out of a server message.
pub fn try_again_in(message: &str) -> Option<Duration> {
    let lower = message.to_ascii_lowercase();
    let start = lower.find("try again in")? + "try again in".len();
    let rest = lower[start..].trim_start();
    let number_len = rest
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(rest.len(), |(i, _)| i);
    let value: f64 = rest[..number_len].parse().ok()?;
    let unit = rest[number_len..].trim_start();
    let secs = if unit.starts_with("ms") {
        value / 1000.0
    } else if unit.starts_with('s') {
        value
    } else {
        return None;
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let base = Duration::from_millis(200);
        for (attempt, nominal) in [
            (1u32, 200.0),
            (2, 400.0),
            (3, 800.0),
            (4, 1600.0),
            (5, 3200.0),
        ] {
            for _ in 0..50 {
                let ms = backoff(base, attempt, Duration::from_secs(120)).as_secs_f64() * 1000.0;
                assert!(
                    ms >= nominal * 0.9 - 0.001 && ms < nominal * 1.1 + 0.001,
                    "{attempt}: {ms}"
                );
            }
        }
        assert_eq!(
            backoff(base, 40, Duration::from_secs(120)),
            Duration::from_secs(120)
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(3)));
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 25 Nov 2026 10:00:05 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(5)));
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn try_again_in_forms() {
        assert_eq!(
            try_again_in("Rate limit reached for gpt-5.5. Please try again in 2.5s."),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(
            try_again_in("Please TRY AGAIN IN 300ms"),
            Some(Duration::from_millis(300))
        );
        assert_eq!(
            try_again_in("try again in 3 seconds"),
            Some(Duration::from_secs(3))
        );
        assert_eq!(try_again_in("try again in a while"), None);
        assert_eq!(try_again_in("try again in 5 minutes"), None);
        assert_eq!(try_again_in("no hint"), None);
    }
}
