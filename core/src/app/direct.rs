//! Private messages: to every socket of a user, or to one socket, never stored.

use super::peers::Shared;
use super::remote::Asked;
use super::validate::{self, AppError, ErrorCode};
use super::{invalid, user_room, EventCx, Limited, Outcome, RoomService};
use crate::socketio::{Io, Message, SocketId, Target};
use serde_json::json;

impl RoomService {
    /// `private-message {to, content}`: `to` is a user id or a socket id of this namespace.
    pub(super) fn on_private_message(&mut self, io: &mut Io<'_>, cx: &EventCx<'_>) -> Outcome {
        let (socket, member, arg, ack, now) = (cx.socket, cx.member, cx.arg(), cx.ack(), cx.now);
        let obj = validate::object(arg)?;
        let to = validate::text(obj.get("to"), "to", 1, validate::MAX_ROOM)?;
        let content = validate::trimmed(obj.get("content"), "content", 1, validate::MAX_CONTENT)?;
        self.limit(member, Limited::Chat, now)?;
        let nsp = &member.nsp;
        let msg = json!({
            "from": socket.as_str(),
            "sender": member.user.to_json(),
            "content": content,
            "timestamp": super::timestamp::iso8601(io.wall_ms(now)),
        });
        let to_socket = SocketId::from(to.as_str());
        let target = if io.nsp_of(&to_socket) == Some(nsp.as_str()) {
            Target::all(nsp).to(to.as_str())
        } else if !io.sockets_in(nsp, &[&user_room(&to)]).is_empty() {
            // To the user's room: their sockets on every node.
            Target::all(nsp).to(user_room(&to))
        } else if self.ask(
            io,
            &Shared::Find { nsp: nsp.clone(), to: to.clone() },
            Asked::Private {
                socket: socket.clone(),
                ack,
                nsp: nsp.clone(),
                to: to.clone(),
                message: msg.clone(),
                sent: false,
            },
            now,
        ) {
            // Not here: the other nodes are asked; the ack waits for their answers.
            return Ok(());
        } else {
            return Err(invalid(AppError::new(ErrorCode::NotFound, "Recipient not found")));
        };
        io.emit(&target, &Message::new("private-message", vec![msg]), now);
        super::ack(io, socket, ack, json!({"success": true}));
        Ok(())
    }
}
