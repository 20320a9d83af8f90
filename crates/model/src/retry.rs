//! Retry delays: exponential backoff with jitter, and the server's hints (`Retry-After`,
//! `retry-after-ms`, "try again in Xs").
//!
//! Hints come from the server, so every conversion here is checked: any header value or message
//! text yields a delay or `None`, never a panic. A hint too large for a [`Duration`] saturates at
//! [`Duration::MAX`]; callers clamp it with [`clamp_delay`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::HeaderMap;

/// `base × 2^(attempt-1) × jitter`, jitter uniform in `[0.9, 1.1)`, capped at `max`.
/// `attempt` starts at 1.
pub fn backoff(base: Duration, attempt: u32, max: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let jitter: f64 = rand::random_range(0.9..1.1);
    let secs = base.as_secs_f64() * f64::from(1u32 << exp) * jitter;
    seconds(secs).unwrap_or(max).min(max)
}

/// The delay actually waited for a server hint: the hint, at most `max`.
pub fn clamp_delay(hint: Duration, max: Duration) -> Duration {
    hint.min(max)
}

/// A non-negative number of seconds as a [`Duration`], saturating at [`Duration::MAX`] (infinity
/// included); `None` for NaN and negative numbers.
fn seconds(secs: f64) -> Option<Duration> {
    if secs.is_nan() || secs < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// The delay a response's headers ask for: `retry-after-ms` (milliseconds) wins over
/// `Retry-After` (integer or decimal seconds, or an HTTP date; a past date means now).
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|ms| seconds(ms / 1000.0))
    {
        return Some(ms);
    }
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<f64>() {
        return seconds(secs);
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
    seconds(secs)
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

    /// Issue 17: hints beyond what a `Duration` holds used to panic the turn task.
    #[test]
    fn hostile_hints_saturate_instead_of_panicking() {
        let now = Utc::now();
        let header = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            retry_after(&h, now)
        };
        for value in ["1e30", "18446744073709551616", "1e308", "1e999", "inf"] {
            assert_eq!(header("retry-after", value), Some(Duration::MAX), "{value}");
        }
        for value in ["1e30", "18446744073709551616000", "inf"] {
            assert_eq!(
                header("retry-after-ms", value),
                Some(Duration::MAX),
                "{value}"
            );
        }
        for value in ["NaN", "-1", "-1e30", "-0.5"] {
            assert_eq!(header("retry-after", value), None, "{value}");
        }
        assert_eq!(
            header("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")
                .map(|d| d > Duration::from_secs(1 << 32)),
            Some(true)
        );
        assert_eq!(
            try_again_in("Please try again in 99999999999999999999999999999s."),
            Some(Duration::MAX)
        );
        assert_eq!(
            try_again_in(&format!("try again in {}ms", "9".repeat(400))),
            Some(Duration::MAX)
        );
        assert_eq!(
            clamp_delay(Duration::MAX, Duration::from_secs(120)),
            Duration::from_secs(120)
        );
        // A configured maximum near the limit of `Duration` does not overflow the backoff.
        let huge = Duration::from_secs(u64::MAX);
        assert!(backoff(Duration::from_secs(u64::MAX), 31, huge) <= huge);
        assert_eq!(
            backoff(Duration::from_millis(200), 1, Duration::ZERO),
            Duration::ZERO
        );
    }

    proptest::proptest! {
        #[test]
        fn any_header_value_gives_a_delay_or_none(value in "\\PC{0,40}", ms in proptest::bool::ANY) {
            let Ok(value) = HeaderValue::from_str(&value) else { return Ok(()) };
            let mut h = HeaderMap::new();
            h.insert(if ms { "retry-after-ms" } else { "retry-after" }, value);
            if let Some(delay) = retry_after(&h, Utc::now()) {
                let max = Duration::from_secs(120);
                proptest::prop_assert!(clamp_delay(delay, max) <= max);
            }
        }

        #[test]
        fn any_number_in_a_header_gives_a_delay_or_none(n in proptest::num::f64::ANY) {
            let mut h = HeaderMap::new();
            h.insert("retry-after", HeaderValue::from_str(&n.to_string()).unwrap());
            h.insert("retry-after-ms", HeaderValue::from_str(&format!("{n:e}")).unwrap());
            let _ = retry_after(&h, Utc::now());
        }

        #[test]
        fn any_message_gives_a_delay_or_none(
            number in "[0-9.]{0,400}",
            unit in "(ms|s|seconds| s|m|)",
            noise in "\\PC{0,20}",
        ) {
            let _ = try_again_in(&format!("{noise} try again in {number}{unit}"));
        }

        #[test]
        fn backoff_never_exceeds_the_maximum(base_ms in proptest::num::u64::ANY, attempt in proptest::num::u32::ANY, max_s in proptest::num::u64::ANY) {
            let max = Duration::from_secs(max_s);
            proptest::prop_assert!(backoff(Duration::from_millis(base_ms), attempt, max) <= max);
        }
    }
}
