//! Wire formats, pure: no sessions, no state beyond one call.
//!
//! - [`engineio`]: one Engine.IO v4 packet (type digit + payload).
//! - [`payload`]: the HTTP long-polling framing (`\x1e` separators, `b` + base64 for binary).
//! - [`socketio`]: one Socket.IO v5 packet (`<type>[<n>-][<nsp>,][<id>][<json>]`).

pub mod engineio;
pub mod payload;
pub mod socketio;
