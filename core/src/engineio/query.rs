//! The Engine.IO query parameters of a request, and the errors a request can be refused with.

use crate::host::{ConnId, Output, APPLICATION_JSON};
use bytes::Bytes;

/// `EIO`, `transport` and `sid`; everything else (`t`, user parameters) is ignored.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Query<'a> {
    pub eio: Option<&'a str>,
    pub transport: Option<&'a str>,
    pub sid: Option<&'a str>,
}

impl<'a> Query<'a> {
    #[must_use]
    pub fn parse(query: &'a str) -> Self {
        let mut q = Query::default();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "EIO" => q.eio = Some(v),
                "transport" => q.transport = Some(v),
                "sid" => q.sid = Some(v),
                _ => {}
            }
        }
        q
    }
}

/// The refusals of the Engine.IO protocol, each with its code and message.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    UnknownTransport,
    UnknownSid,
    BadHandshakeMethod,
    BadRequest,
    Forbidden,
    UnsupportedProtocolVersion,
    TooManyConnections,
    PayloadTooLarge,
}

impl Refusal {
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            Refusal::TooManyConnections => 503,
            Refusal::PayloadTooLarge => 413,
            Refusal::Forbidden => 403,
            _ => 400,
        }
    }

    #[must_use]
    pub fn body(self) -> &'static str {
        match self {
            Refusal::UnknownTransport => r#"{"code":0,"message":"Transport unknown"}"#,
            Refusal::UnknownSid => r#"{"code":1,"message":"Session ID unknown"}"#,
            Refusal::BadHandshakeMethod => r#"{"code":2,"message":"Bad handshake method"}"#,
            Refusal::BadRequest => r#"{"code":3,"message":"Bad request"}"#,
            Refusal::Forbidden => r#"{"code":4,"message":"Forbidden"}"#,
            Refusal::UnsupportedProtocolVersion => r#"{"code":5,"message":"Unsupported protocol version"}"#,
            Refusal::TooManyConnections => r#"{"code":4,"message":"Too many connections"}"#,
            Refusal::PayloadTooLarge => r#"{"code":3,"message":"Payload too large"}"#,
        }
    }

    #[must_use]
    pub fn response(self, conn: ConnId) -> Output {
        Output::Respond {
            conn,
            status: self.status(),
            content_type: APPLICATION_JSON,
            body: Bytes::from_static(self.body().as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_keys_and_ignores_others() {
        let q = Query::parse("EIO=4&transport=polling&t=Nx1&sid=abc&x");
        assert_eq!(q, Query { eio: Some("4"), transport: Some("polling"), sid: Some("abc") });
        assert_eq!(Query::parse(""), Query::default());
    }
}
