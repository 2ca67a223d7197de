//! Checking what clients send, and the errors they get back: `{message, code}`.
//!
//! Lengths count UTF-16 code units, as JavaScript validators do.

pub use crate::errors::ErrorCode;
use serde_json::Value;

/// An error a client gets as an `error` event or in its ack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError { code, message: message.into() }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        AppError::new(ErrorCode::Validation, message)
    }

    #[must_use]
    pub fn not_in_room() -> Self {
        AppError::new(ErrorCode::NotInRoom, "Not in that room")
    }

    #[must_use]
    pub fn rate_limited() -> Self {
        AppError::new(ErrorCode::RateLimited, "Rate limit exceeded")
    }

    #[must_use]
    pub fn internal(message: &str) -> Self {
        AppError::new(ErrorCode::InternalError, message)
    }

    /// `{error, code}`, for an ack.
    #[must_use]
    pub fn body(&self) -> Value {
        self.code.body(&self.message)
    }

    /// `{message, code}`, for an `error` event.
    #[must_use]
    pub fn event(&self) -> Value {
        self.code.event(&self.message)
    }
}

pub const MAX_CONTENT: usize = 1000;
pub const MAX_ROOM: usize = 128;
pub const MAX_USERNAME: usize = 64;
pub const MAX_TITLE: usize = 200;

/// UTF-16 code units, JavaScript's `length`.
#[must_use]
pub fn js_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// A string of `min..=max` UTF-16 code units.
pub fn text(v: Option<&Value>, name: &str, min: usize, max: usize) -> Result<String, AppError> {
    match v {
        Some(Value::String(s)) if (min..=max).contains(&js_len(s)) => Ok(s.clone()),
        Some(Value::String(_)) => Err(AppError::validation(format!("{name} must be {min} to {max} characters"))),
        _ => Err(AppError::validation(format!("{name} must be a string"))),
    }
}

/// A string that is `min..=max` UTF-16 code units once trimmed; the trimmed text.
pub fn trimmed(v: Option<&Value>, name: &str, min: usize, max: usize) -> Result<String, AppError> {
    match v {
        Some(Value::String(s)) => {
            let t = s.trim();
            if (min..=max).contains(&js_len(t)) {
                Ok(t.to_owned())
            } else {
                Err(AppError::validation(format!("{name} must be {min} to {max} characters")))
            }
        }
        _ => Err(AppError::validation(format!("{name} must be a string"))),
    }
}

pub fn room(v: Option<&Value>) -> Result<String, AppError> {
    text(v, "room", 1, MAX_ROOM)
}

/// A non-negative integer that JavaScript can hold exactly.
pub fn count(v: Option<&Value>, name: &str) -> Result<u64, AppError> {
    v.and_then(Value::as_u64)
        .filter(|n| *n <= crate::config::MAX_ACK_ID)
        .ok_or_else(|| AppError::validation(format!("{name} must be a non-negative integer")))
}

/// The object payload of an event.
pub fn object(v: Option<&Value>) -> Result<&serde_json::Map<String, Value>, AppError> {
    v.and_then(Value::as_object).ok_or_else(|| AppError::validation("payload must be an object"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lengths_are_utf16_code_units() {
        assert_eq!(js_len("😀"), 2);
        assert!(text(Some(&json!("😀".repeat(64))), "room", 1, 128).is_ok());
        assert!(text(Some(&json!("😀".repeat(65))), "room", 1, 128).is_err());
        assert!(text(Some(&json!(5)), "room", 1, 128).is_err());
        assert!(text(None, "room", 1, 128).is_err());
    }

    #[test]
    fn content_is_trimmed_before_counting() {
        assert_eq!(trimmed(Some(&json!("  hi  ")), "content", 1, 1000), Ok("hi".into()));
        assert_eq!(trimmed(Some(&json!("   ")), "content", 1, 1000).unwrap_err().code, ErrorCode::Validation);
        assert!(trimmed(Some(&json!("x".repeat(1001))), "content", 1, 1000).is_err());
        assert!(trimmed(Some(&json!(format!(" {} ", "x".repeat(1000)))), "content", 1, 1000).is_ok());
    }

    #[test]
    fn counts_are_safe_integers() {
        assert_eq!(count(Some(&json!(3)), "n"), Ok(3));
        assert!(count(Some(&json!(-1)), "n").is_err());
        assert!(count(Some(&json!(1.5)), "n").is_err());
        assert!(count(Some(&json!(9_007_199_254_740_992u64)), "n").is_err());
    }
}
