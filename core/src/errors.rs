//! The error codes clients see, and the one place their JSON is built.
//!
//! An error goes out in two shapes: `{error, code}` in an ack and in an HTTP API answer
//! ([`ErrorCode::body`]), `{message, code}` in an `error` event ([`ErrorCode::event`]).
//! Hosts that answer on their own (the native host's 413 for an API body over the limit)
//! use the same function, so a client sees one format from every layer.

use serde_json::{json, Value};

/// What went wrong, as the `code` field names it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The payload is malformed or out of range.
    Validation,
    /// The socket is not in the room the event names.
    NotInRoom,
    /// No such recipient, record or endpoint.
    NotFound,
    /// A token is missing, invalid, or not enough for this.
    Unauthorized,
    /// Past a size limit (a document, a request body).
    PayloadTooLarge,
    /// An edit based on a version the server no longer has: re-join the document.
    StaleVersion,
    /// Over a rate limit or a budget of waiting writes.
    RateLimited,
    /// The server could not do it (the store failed): nothing was applied.
    InternalError,
}

impl ErrorCode {
    /// The code as clients read it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Validation => "VALIDATION",
            ErrorCode::NotInRoom => "NOT_IN_ROOM",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::StaleVersion => "STALE_VERSION",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }

    /// `{error, code}`: an ack's answer, an HTTP API error.
    #[must_use]
    pub fn body(self, message: &str) -> Value {
        json!({"error": message, "code": self.as_str()})
    }

    /// `{message, code}`: the payload of an `error` event.
    #[must_use]
    pub fn event(self, message: &str) -> Value {
        json!({"message": message, "code": self.as_str()})
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn both_shapes_carry_the_code_as_clients_read_it() {
        let body = ErrorCode::StaleVersion.body("re-join");
        assert_eq!(body.to_string(), r#"{"error":"re-join","code":"STALE_VERSION"}"#);
        let event = ErrorCode::RateLimited.event("slow down");
        assert_eq!(event.to_string(), r#"{"message":"slow down","code":"RATE_LIMITED"}"#);
    }
}
