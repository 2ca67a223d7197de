"""python-socketio (PyPI) against parlor's api_server example.

Run: python -m unittest -v test_interop   (from this folder, with requirements.txt installed)

The server runs with its defaults: connection state recovery is off, so events carry exactly the
arguments they were sent with (python-socketio does not strip a recovery offset; see test_rooms).
Binaries: PARLOR_API_SERVER_BIN, else <dir of PARLOR_BIN>/examples/api_server, else
../../../target/release/examples/api_server relative to this file.
"""

import os
import unittest
import uuid

import socketio

from helpers import Inbox, Process, parlor_bin

TIMEOUT = 10


def api_server_bin():
    if os.environ.get("PARLOR_API_SERVER_BIN"):
        return os.environ["PARLOR_API_SERVER_BIN"]
    return os.path.join(os.path.dirname(parlor_bin()), "examples", "api_server")


class Server(Process):
    """The api_server example on a free port."""

    def __init__(self, args):
        super().__init__([api_server_bin(), "--listen", "127.0.0.1:0", *args])


class InteropTest(unittest.TestCase):
    server = None

    @classmethod
    def setUpClass(cls):
        cls.server = Server([])

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        if code != 0:
            raise AssertionError(f"api_server did not exit 0 on SIGTERM: {code}\n{cls.server.stderr()[-3000:]}")

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

    def connect(self, transports, namespaces=None, auth=None, c=None):
        c = c or self.client()
        c.connect(self.server.url, transports=transports, namespaces=namespaces or ["/"], auth=auth,
                  wait_timeout=TIMEOUT)
        return c

    # -- tests ------------------------------------------------------------------------------

    def test_connect_websocket_and_polling(self):
        for transports in (["websocket"], ["polling"], None):
            with self.subTest(transports=transports):
                c = self.connect(transports)
                self.assertTrue(c.connected)
                self.assertIsInstance(c.get_sid("/"), str)
                if transports:
                    self.assertEqual(c.transport(), transports[0])
                self.assertEqual(c.call("echo", "ping", timeout=TIMEOUT), "ping")
                c.disconnect()

    def test_second_namespace(self):
        c = self.connect(["websocket"], namespaces=["/", "/second"])
        self.assertNotEqual(c.get_sid("/"), c.get_sid("/second"))
        self.assertEqual(c.call("echo", "on second", namespace="/second", timeout=TIMEOUT), "on second")

    def test_emit_and_event_back(self):
        for transports in (["websocket"], ["polling"]):
            with self.subTest(transports=transports):
                c = self.client()
                inbox = Inbox(c, "echo")
                self.connect(transports, c=c)
                c.emit("echo", ("a", 2, {"three": [3]}))
                self.assertEqual(inbox.get(), ("a", 2, {"three": [3]}))
                c.emit("echo", {"just": "one"})
                self.assertEqual(inbox.get(), ({"just": "one"},))
                c.disconnect()

    def test_ack_client_to_server(self):
        c = self.connect(["websocket"])
        self.assertEqual(c.call("echo", {"x": 1}, timeout=TIMEOUT), {"x": 1})
        self.assertEqual(c.call("echo", (1, "two"), timeout=TIMEOUT), (1, "two"))
        for i in range(50):
            c.emit("inc")
        self.assertEqual(c.call("count", timeout=TIMEOUT), 50)

    def test_ack_server_to_client(self):
        c = self.client()
        c.on("question", lambda data: ("answer", data))
        self.connect(["websocket"], c=c)
        res = c.call("request-ack", {"event": "question", "data": {"n": 7}, "timeout": 5000}, timeout=TIMEOUT)
        self.assertEqual(res, {"ok": True, "reply": ["answer", {"n": 7}]})

    def test_binary_both_ways(self):
        for transports in (["websocket"], ["polling"]):
            with self.subTest(transports=transports):
                c = self.client()
                inbox = Inbox(c, "echo")
                self.connect(transports, c=c)
                blob = bytes(range(256)) * 10
                self.assertEqual(c.call("echo", blob, timeout=TIMEOUT), blob)
                nested = {"a": {"b": b"\x00\x01\xff"}, "list": [1, b"two"]}
                self.assertEqual(c.call("echo", nested, timeout=TIMEOUT), nested)
                # the echo events came back as binary events too
                self.assertEqual(inbox.get(), (blob,))
                self.assertEqual(inbox.get(), (nested,))
                c.disconnect()

    def test_rooms(self):
        room = f"py-{uuid.uuid4().hex[:8]}"
        a = self.connect(["websocket"])
        b_client = self.client()
        b_inbox = Inbox(b_client, "py-room")
        b = self.connect(["polling"], c=b_client)
        outsider_client = self.client()
        outsider_inbox = Inbox(outsider_client, "py-room")
        self.connect(["websocket"], c=outsider_client)

        self.assertEqual(a.call("join", room, timeout=TIMEOUT), sorted([a.get_sid("/"), room]))
        b.call("join", room, timeout=TIMEOUT)
        self.assertEqual(a.call("sockets-in", room, timeout=TIMEOUT), sorted([a.get_sid("/"), b.get_sid("/")]))
        a.emit("to-room", {"room": room, "event": "py-room", "data": {"hello": "room"}})
        self.assertEqual(b_inbox.get(), ({"hello": "room"},))
        self.assertTrue(outsider_inbox.empty_after(0.3), "a socket outside the room got the room event")

    def test_connect_refused_by_middleware(self):
        c = self.client()
        errors = []
        c.on("connect_error", lambda data=None: errors.append(data))
        with self.assertRaises(socketio.exceptions.ConnectionError):
            c.connect(self.server.url, transports=["websocket"], auth={"refuse": "go away"}, wait_timeout=TIMEOUT)
        self.assertEqual(errors, [{"message": "refused", "data": {"reason": "go away"}}])
        self.assertFalse(c.connected)


if __name__ == "__main__":
    unittest.main(verbosity=2)
