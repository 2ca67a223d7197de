//! RFC 6455 (WebSocket) as both of parlor's ends speak it: the server (`parlor serve`, which
//! parses masked client frames and writes unmasked ones) and the load generator
//! (`parlor bench`, which writes masked frames and parses the server's).
//!
//! Pure functions over byte slices, no I/O: the callers own their sockets and buffers, so
//! the server can read into a stack buffer and keep nothing per idle connection. "Not enough
//! bytes yet" is `Ok(None)`, not an error; every rule a peer can break has a defined answer,
//! a [`Violation`]: the close code and reason to send before dropping the connection.
//!
//! # Layout
//!
//! - [`frame`]: frame headers (parsed for either peer), masking, writing frames, checking
//!   a close frame's payload.
//! - [`handshake`]: the opening handshake: the accept key (one SHA-1 and base64 for both
//!   sides), the client's request key, request and check of the server's answer.

#![forbid(unsafe_code)]

pub mod frame;
pub mod handshake;

pub use frame::{
    apply_mask, check_close, parse_header, write_frame, Header, OpCode, Peer, Violation, INVALID_DATA, PROTOCOL_ERROR,
    TOO_BIG,
};
