"""python-socketio (PyPI) against `parlor serve`, the room service (DESIGN.md §4).

Run: python -m unittest -v test_rooms   (from this folder, with requirements.txt installed)

Chat (join / room-info / user-joined / send-message / new-message), typing, private messages, and a
token-authenticated connect with pending-notifications, all against the server's defaults (connection
state recovery off: handlers written the ordinary way get exactly the event's arguments). RecoveryTest
enables recovery with --recovery-window and shows what python-socketio then sees: a trailing offset
argument on events without an ack, and a session it can resume by sending the pid and offset itself.
Binary: PARLOR_BIN, else ../../../target/release/parlor relative to this file; with PARLOR_COMPONENT set,
the server runs the core from that WebAssembly component (`--component`).
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import uuid

import socketio

from helpers import Inbox, Process, parlor_bin

TIMEOUT = 5
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def component_args():
    """PARLOR_COMPONENT=/path/parlor_edge.wasm runs the server from that component."""
    path = os.environ.get("PARLOR_COMPONENT")
    return ["--component", path] if path else []


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Server(Process):
    """`parlor serve` on a free port with its own data dir."""

    def __init__(self, args):
        self.data_dir = tempfile.mkdtemp(prefix="parlor-py-data-")
        super().__init__([parlor_bin(), "serve", "--listen", "127.0.0.1:0", "--data-dir", self.data_dir,
                          *component_args(), *args])

    def stop(self):
        code = super().stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return code


class Base(unittest.TestCase):
    args = []
    server = None

    @classmethod
    def setUpClass(cls):
        cls.server = Server(cls.args)

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        if code != 0:
            raise AssertionError(f"parlor serve did not exit 0 on SIGTERM: {code}\n{cls.server.stderr()[-3000:]}")

    def setUp(self):
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            try:
                c.disconnect()
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass

    def client(self):
        c = socketio.Client(reconnection=False, request_timeout=TIMEOUT)
        self.clients.append(c)
        return c

    def connect(self, c, transports=("websocket",), auth=None, namespaces=("/",)):
        c.connect(self.server.url, transports=list(transports), namespaces=list(namespaces), auth=auth,
                  wait_timeout=TIMEOUT)
        return c

    def sync(self, c):
        """A side-effect-free round trip: events sent to `c` before it have arrived."""
        c.call("leave-room", "sync-barrier-never-joined", timeout=TIMEOUT)


class ChatTest(Base):
    args = ["--typing-timeout", "300"]

    def joined(self, username, room, transports=("websocket",)):
        c = self.client()
        inboxes = {ev: Inbox(c, ev) for ev in ("room-info", "user-joined", "new-message", "user-typing",
                                                "private-message", "room-users-update", "user-left")}
        self.connect(c, transports=transports)
        c.emit("join", {"username": username, "room": room})
        info = inboxes["room-info"].first()
        return c, inboxes, info

    def test_join_room_info_and_messages(self):
        room = unique("py-chat")
        a, ia, info_a = self.joined("Ann", room)
        a_user = {"id": a.get_sid("/"), "username": "Ann"}
        self.assertEqual(info_a, {"room": room, "users": [a_user], "recentMessages": []})
        b, ib, info_b = self.joined("Bob", room, transports=("polling",))
        b_user = {"id": b.get_sid("/"), "username": "Bob"}
        self.assertEqual(sorted(info_b["users"], key=lambda u: u["id"]), sorted([a_user, b_user], key=lambda u: u["id"]))
        self.assertEqual(ia["user-joined"].first(), {"user": b_user, "message": "Bob joined the chat"})

        res = b.call("send-message", {"content": "  hi from python  ", "room": room}, timeout=TIMEOUT)
        self.assertEqual(res["success"], True)
        self.assertIsInstance(res["id"], str)
        for inbox in (ia, ib):
            msg = inbox["new-message"].get_where(lambda m: m["id"] == res["id"])
            self.assertEqual(set(msg), {"id", "content", "sender", "timestamp", "room"})
            self.assertEqual(msg["content"], "hi from python")
            self.assertEqual(msg["sender"], b_user)
            self.assertEqual(msg["room"], room)
            self.assertRegex(msg["timestamp"], ISO_UTC)

        err = a.call("send-message", {"content": "   ", "room": room}, timeout=TIMEOUT)
        self.assertEqual(err["code"], "VALIDATION")
        err = a.call("send-message", {"content": "x", "room": unique("not-joined")}, timeout=TIMEOUT)
        self.assertEqual(err["code"], "NOT_IN_ROOM")

        # a late joiner gets the history
        _, _, info_c = self.joined("Cid", room)
        self.assertEqual([m["content"] for m in info_c["recentMessages"]], ["hi from python"])

        # leaving: the others get user-left
        self.assertEqual(b.call("leave-room", room, timeout=TIMEOUT), {"success": True})
        self.assertEqual(ia["user-left"].first(), {"user": b_user, "message": "Bob left the chat"})

    def test_typing(self):
        room = unique("py-typing")
        a, ia, _ = self.joined("Ann", room)
        b, ib, _ = self.joined("Bob", room)
        a_user = {"id": a.get_sid("/"), "username": "Ann"}
        a.emit("typing-start", {"room": room})
        self.assertEqual(ib["user-typing"].first(), {"user": a_user, "isTyping": True})
        a.emit("typing-stop", {"room": room})
        self.assertEqual(ib["user-typing"].first(), {"user": a_user, "isTyping": False})
        # the server ends it by itself after --typing-timeout 300
        a.emit("typing-start", {"room": room})
        self.assertEqual(ib["user-typing"].first()["isTyping"], True)
        started = time.monotonic()
        self.assertEqual(ib["user-typing"].first(), {"user": a_user, "isTyping": False})
        self.assertGreaterEqual(time.monotonic() - started, 0.15)
        self.sync(a)
        self.assertTrue(ia["user-typing"].q.empty(), "the typer gets no user-typing")

    def test_private_message(self):
        room = unique("py-pm")
        a, ia, _ = self.joined("Ann", room)
        b, ib, _ = self.joined("Bob", room)
        c, ic, _ = self.joined("Cid", room)
        res = a.call("private-message", {"to": b.get_sid("/"), "content": "psst"}, timeout=TIMEOUT)
        self.assertEqual(res, {"success": True})
        pm = ib["private-message"].first()
        self.assertEqual(pm["from"], a.get_sid("/"))
        self.assertEqual(pm["sender"], {"id": a.get_sid("/"), "username": "Ann"})
        self.assertEqual(pm["content"], "psst")
        self.assertRegex(pm["timestamp"], ISO_UTC)
        self.sync(c)
        self.assertTrue(ic["private-message"].q.empty())
        nf = a.call("private-message", {"to": "nobody-here", "content": "hello?"}, timeout=TIMEOUT)
        self.assertEqual(nf["code"], "NOT_FOUND")
        self.assertIsInstance(nf["error"], str)


class DefaultsTest(Base):
    """The server's defaults with handlers written the ordinary way, one parameter per argument."""

    def test_plain_handlers_get_exactly_the_event_arguments(self):
        room = unique("py-plain")
        got = {"room-info": [], "user-joined": [], "new-message": []}
        errors = []

        def plain(name):
            def handler(data):  # one parameter: a trailing offset would raise TypeError here
                got[name].append(data)
            return handler

        a = self.client()
        for name in got:
            a.on(name, plain(name))
        a.on("error", lambda data: errors.append(data))
        self.connect(a)
        a.emit("join", {"username": "Ann", "room": room})
        self.sync(a)  # Ann is in the room before Bob joins
        b = self.client()
        every = Inbox(b, "*")  # python-socketio's catch-all: (event, *args) of events without a handler
        self.connect(b, transports=("polling",))
        b.emit("join", {"username": "Bob", "room": room})
        b_user = {"id": b.get_sid("/"), "username": "Bob"}
        res = b.call("send-message", {"content": "plain", "room": room}, timeout=TIMEOUT)
        self.assertEqual(res["success"], True, res)
        self.sync(a)
        self.sync(b)

        self.assertEqual(len(got["room-info"]), 1, got)
        self.assertEqual(got["room-info"][0]["room"], room)
        self.assertEqual(got["user-joined"], [{"user": b_user, "message": "Bob joined the chat"}])
        self.assertEqual([(m["id"], m["content"]) for m in got["new-message"]], [(res["id"], "plain")])
        seen = []
        while not every.q.empty():
            seen.append(every.q.get())
        self.assertIn("room-info", [args[0] for args in seen], seen)
        self.assertIn("new-message", [args[0] for args in seen], seen)
        for args in seen:
            self.assertEqual(len(args), 2, f"{args[0]}: exactly one argument, no offset: {args}")
        self.assertEqual(errors, [])


class PidClient(socketio.Client):
    """A python-socketio client that keeps the CONNECT answer of "/" (`{sid, pid}`); the library itself
    only reads `sid`. Uses a private hook of python-socketio 5.x (`_handle_connect`)."""

    connect_data = None

    def _handle_connect(self, namespace, data):
        if (namespace or "/") == "/":
            self.connect_data = data
        super()._handle_connect(namespace, data)


class RecoveryTest(Base):
    """Connection state recovery enabled with --recovery-window, seen from python-socketio."""

    args = ["--recovery-window", "60000"]

    def pid_client(self):
        c = PidClient(reconnection=False, request_timeout=TIMEOUT)
        self.clients.append(c)
        return c

    def test_events_without_ack_carry_a_trailing_offset_and_acks_do_not(self):
        room = unique("py-offset")
        a = self.pid_client()
        info = Inbox(a, "room-info")
        joined = Inbox(a, "user-joined")
        self.connect(a)
        self.assertIsInstance(a.connect_data.get("pid"), str, a.connect_data)
        a.emit("join", {"username": "Ann", "room": room})
        args = info.get()
        self.assertEqual(len(args), 2, args)
        self.assertEqual(args[0]["room"], room)
        self.assertIsInstance(args[1], str, "the offset is a string after the event's own argument")
        b = self.connect(self.client())
        b.emit("join", {"username": "Bob", "room": room})
        args2 = joined.get()
        self.assertEqual(len(args2), 2, args2)
        self.assertEqual(args2[0]["user"]["username"], "Bob")
        self.assertIsInstance(args2[1], str)
        self.assertNotEqual(args2[1], args[1], "each event has its own offset")
        res = a.call("send-message", {"content": "acked", "room": room}, timeout=TIMEOUT)
        self.assertIsInstance(res, dict, "an ack answer has no offset: one argument")
        self.assertEqual(res["success"], True)

    def test_a_dropped_client_resumes_with_its_pid_and_offset(self):
        room = unique("py-resume")
        a = self.pid_client()
        a_joined = Inbox(a, "user-joined")
        self.connect(a)
        pid, sid = a.connect_data["pid"], a.get_sid("/")
        a.emit("join", {"username": "Ann", "room": room})
        w = self.client()
        w_inboxes = {ev: Inbox(w, ev) for ev in ("room-info", "user-left", "user-joined", "new-message")}
        self.connect(w)
        w.emit("join", {"username": "Wes", "room": room})
        w_inboxes["room-info"].first()
        _, offset = a_joined.get()  # the last event A saw, with its offset
        a_user = {"id": sid, "username": "Ann"}

        a.eio.disconnect()  # the transport ends without a Socket.IO DISCONNECT: recoverable
        self.assertEqual(w_inboxes["user-left"].first()["user"], a_user)
        missed = w.call("send-message", {"content": "while away", "room": room}, timeout=TIMEOUT)
        self.assertEqual(missed["success"], True, missed)
        w_inboxes["new-message"].first()

        a2 = self.pid_client()
        a2_messages = Inbox(a2, "new-message")
        self.connect(a2, auth={"pid": pid, "offset": offset})
        self.assertEqual(a2.get_sid("/"), sid, "the socket id is kept")
        self.assertEqual(a2.connect_data["pid"], pid)
        msg, _offset = a2_messages.get()
        self.assertEqual((msg["id"], msg["content"]), (missed["id"], "while away"), "the missed event is replayed")
        self.assertEqual(w_inboxes["user-joined"].first()["user"], a_user, "back in the room's presence")
        back = a2.call("send-message", {"content": "back", "room": room}, timeout=TIMEOUT)
        self.assertEqual(back["success"], True, f"still in the room without joining again: {back}")
        self.assertEqual(w_inboxes["new-message"].first()["content"], "back")


class AuthTest(Base):
    @classmethod
    def setUpClass(cls):
        cls.key_dir = tempfile.mkdtemp(prefix="parlor-py-key-")
        out = subprocess.run([parlor_bin(), "keygen", "--out", cls.key_dir], capture_output=True, text=True,
                             timeout=10, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"parlor keygen failed: {out.stderr}")
        cls.args = ["--auth-key", os.path.join(cls.key_dir, "parlor.pub")]
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.key_dir, ignore_errors=True)

    def token(self, sub, name, admin=False):
        args = [parlor_bin(), "token", "--key", os.path.join(self.key_dir, "parlor.key"), "--sub", sub,
                "--name", name, "--ttl", "1h"]
        if admin:
            args.append("--admin")
        out = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout.strip()

    def post(self, path, body, token):
        req = urllib.request.Request(self.server.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as res:
                return res.status, json.loads(res.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def test_token_connect_and_pending_notifications(self):
        sub = unique("py-user")
        admin = self.token("ops", "Ops", admin=True)
        status, notif = self.post("/api/notifications", {"userId": sub, "title": "Hi", "message": "from python"}, admin)
        self.assertEqual(status, 201, notif)
        self.assertEqual(notif["read"], False)
        self.assertRegex(notif["createdAt"], ISO_UTC)

        c = self.client()
        pending = Inbox(c, "pending-notifications")
        live = Inbox(c, "notification")
        self.connect(c, auth={"token": self.token(sub, "Py User")})
        self.assertEqual(pending.first(), [notif])
        self.assertEqual(c.call("join-room", unique("py-authed"), timeout=TIMEOUT),
                         {"users": [{"id": sub, "username": "Py User"}]})
        status, notif2 = self.post("/api/notifications", {"userId": sub, "title": "Live", "message": "now"}, admin)
        self.assertEqual(status, 201, notif2)
        self.assertEqual(live.first(), notif2)
        self.assertEqual(c.call("notification-read", notif["id"], timeout=TIMEOUT), {"success": True})

        c2 = self.client()
        pending2 = Inbox(c2, "pending-notifications")
        self.connect(c2, auth={"token": self.token(sub, "Py User")}, transports=("polling",))
        self.assertEqual([(n["id"], n["read"]) for n in pending2.first()], [(notif2["id"], False), (notif["id"], True)])

    def test_missing_and_bad_tokens_are_refused(self):
        for auth, message in ((None, "Authentication required"), ({"token": "not-a-token"}, "Invalid token")):
            with self.subTest(auth=auth):
                c = self.client()
                errors = []
                c.on("connect_error", lambda data=None: errors.append(data))
                with self.assertRaises(socketio.exceptions.ConnectionError):
                    self.connect(c, auth=auth)
                self.assertFalse(c.connected)
                self.assertEqual(len(errors), 1, errors)
                self.assertEqual(errors[0]["message"] if isinstance(errors[0], dict) else errors[0], message)


if __name__ == "__main__":
    unittest.main(verbosity=2)
