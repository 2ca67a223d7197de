//! Notifications: stored per user, pushed live to `user:<id>`, listed on connect, marked
//! read durably.

use super::records::{Answer, RoomRequest};
use super::validate::{self, AppError};
use super::{invalid, user_room, EventCx, Outcome, Pending, ReplyTo, RoomService, SCOPES};
use crate::socketio::{Io, Message, Target};
use crate::time::Instant;
use serde_json::{json, Map, Value};

/// A notification waiting for the store before it is pushed and confirmed.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PendingPut {
    user: String,
    #[serde(with = "crate::snapshot::json")]
    notification: Value,
    reply: ReplyTo,
}

impl RoomService {
    /// Builds, stores and (once stored) pushes a notification from a producer's payload
    /// `{userId, title, message}`; the producer hears back through `reply`.
    pub(super) fn notify(
        &mut self,
        io: &mut Io<'_>,
        payload: Option<&Map<String, Value>>,
        reply: ReplyTo,
        now: Instant,
    ) -> Result<(), AppError> {
        let Some(p) = payload else { return Err(AppError::validation("payload must be an object")) };
        let user = validate::text(p.get("userId"), "userId", 1, validate::MAX_ROOM)?;
        let title = validate::trimmed(p.get("title"), "title", 1, validate::MAX_TITLE)?;
        let message = validate::trimmed(p.get("message"), "message", 1, validate::MAX_CONTENT)?;
        let notification = json!({
            "id": io.random_id(),
            "title": title,
            "message": message,
            "read": false,
            "createdAt": super::timestamp::iso8601(io.wall_ms(now)),
        });
        let put = RoomRequest::PutNotification {
            user: user.clone(),
            id: notification["id"].as_str().unwrap_or_default().to_owned(),
            notification: notification.to_string(),
        };
        let id = io.store(put);
        self.pending.insert(id, Pending::PutNotification(PendingPut { user, notification, reply }));
        Ok(())
    }

    pub(super) fn notification_stored(&mut self, io: &mut Io<'_>, p: PendingPut, answer: &Answer, now: Instant) {
        if answer.is_err() {
            let err = AppError::internal("Notification could not be stored");
            return self.reply(io, &p.reply, Err((500, err)), now);
        }
        for nsp in SCOPES {
            let target = Target::all(nsp).to(user_room(&p.user));
            io.emit(&target, &Message::new("notification", vec![p.notification.clone()]), now);
        }
        let body = match p.reply {
            ReplyTo::Ack { .. } => json!({"success": true, "notification": p.notification}),
            ReplyTo::Http { .. } => p.notification.clone(),
        };
        self.reply(io, &p.reply, Ok((201, body)), now);
    }

    /// `notification-read` (id): durable before the ack.
    pub(super) fn on_notification_read(&mut self, io: &mut Io<'_>, cx: &EventCx<'_>) -> Outcome {
        let (socket, member, arg, ack) = (cx.socket, cx.member, cx.arg(), cx.ack());
        let id = match arg {
            Some(Value::String(s)) if (1..=validate::MAX_ROOM).contains(&validate::js_len(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(invalid(AppError::validation("id must be a notification id"))),
        };
        self.begin_write(socket)?;
        let req = RoomRequest::MarkRead { user: member.user.id.clone(), id };
        let sid = io.store(req);
        self.pending.insert(sid, Pending::MarkRead { socket: socket.clone(), ack, all: false });
        Ok(())
    }

    /// `notifications-read-all`.
    pub(super) fn on_notifications_read_all(&mut self, io: &mut Io<'_>, cx: &EventCx<'_>) -> Outcome {
        let (socket, member, ack) = (cx.socket, cx.member, cx.ack());
        self.begin_write(socket)?;
        let sid = io.store(RoomRequest::MarkAllRead { user: member.user.id.clone() });
        self.pending.insert(sid, Pending::MarkRead { socket: socket.clone(), ack, all: true });
        Ok(())
    }
}

/// A user's stored notifications as clients see them: each one's JSON with its read mark
/// (the store keeps the mark apart, so that marking never rewrites the record). A record
/// that is not a JSON object (a hand-edited file) is left out.
pub(super) fn listed(records: Vec<(String, bool)>) -> Vec<Value> {
    records
        .into_iter()
        .filter_map(|(json, read)| match serde_json::from_str(&json) {
            Ok(Value::Object(mut fields)) => {
                fields.insert("read".into(), Value::Bool(read));
                Some(Value::Object(fields))
            }
            _ => None,
        })
        .collect()
}
