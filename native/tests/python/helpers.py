"""What the python-socketio suites share: a parlor binary on a free port, and an event inbox."""

import os
import queue
import re
import select
import signal
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
LISTEN_LINE = re.compile(r"^parlor listening on (http://([^\s/]+):(\d+))\s*$")
START_TIMEOUT = 10


def parlor_bin():
    """PARLOR_BIN, else target/release/parlor of this checkout."""
    return os.environ.get("PARLOR_BIN") or os.path.join(REPO_ROOT, "target", "release", "parlor")


class Process:
    """A running binary that prints 'parlor listening on URL' first; `url` is that URL. Its
    stdout and stderr are drained on threads (the last ~128 KiB of stderr kept for messages)."""

    def __init__(self, argv):
        binary = argv[0]
        if not os.path.exists(binary):
            raise RuntimeError(f"binary not found: {binary} (build it, or set PARLOR_BIN)")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._stderr = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.proc.kill()
                raise RuntimeError(f"no listening line from {binary}: {line!r}; stderr: {self.stderr()[-2000:]}")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 1)
                if chunk:
                    line += chunk
        m = LISTEN_LINE.match(line.decode().rstrip("\r\n"))
        if not m:
            self.proc.kill()
            raise RuntimeError(f"unexpected first stdout line: {line!r}")
        self.url = m.group(1)
        threading.Thread(target=self._drain_stdout, daemon=True).start()

    def _drain_stderr(self):
        for chunk in iter(lambda: self.proc.stderr.read(4096), b""):
            self._stderr.append(chunk)
            if len(self._stderr) > 64:
                del self._stderr[:32]

    def _drain_stdout(self):
        for _ in iter(lambda: self.proc.stdout.read(4096), b""):
            pass

    def stderr(self):
        return b"".join(self._stderr).decode(errors="replace")

    def stop(self):
        """SIGTERM, then the exit code (None if it had to be killed after 10 s)."""
        code = self.proc.poll()
        if code is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                code = None
        return code


class Inbox:
    """Collects events of one name on one client, thread-safe."""

    def __init__(self, client, event, namespace="/", timeout=5):
        self.q = queue.Queue()
        self.timeout = timeout
        client.on(event, self._on, namespace=namespace)

    def _on(self, *args):
        self.q.put(args)

    def get(self, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout} s") from None

    def first(self, timeout=None):
        """The first argument of the next event."""
        return self.get(timeout)[0]

    def get_where(self, pred, timeout=None):
        """The first argument of the next event for which `pred` holds."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no matching event in time")
            args = self.get(left)
            if pred(args[0]):
                return args[0]

    def empty_after(self, seconds):
        try:
            got = self.q.get(timeout=seconds)
        except queue.Empty:
            return True
        self.q.put(got)
        return False
