'use strict';
// Shared helpers for the interop tests: start a parlor binary on port 0, read its
// "parlor listening on http://HOST:PORT" line, connect socket.io-client sockets, wait for
// events with bounded timeouts, and stop everything again (SIGTERM, exit code checked).

const { spawn } = require('node:child_process');
const path = require('node:path');
const fs = require('node:fs');
const assert = require('node:assert/strict');
const { io } = require('socket.io-client');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const DEFAULT_TIMEOUT = 10_000;

function parlorBin() {
  return process.env.PARLOR_BIN || path.join(REPO_ROOT, 'target', 'release', 'parlor');
}

function apiServerBin() {
  if (process.env.PARLOR_API_SERVER_BIN) return process.env.PARLOR_API_SERVER_BIN;
  return path.join(path.dirname(parlorBin()), 'examples', 'api_server');
}

const LISTEN_LINE = /^parlor listening on (http:\/\/([^\s/]+):(\d+))\s*$/;
const running = new Set();

process.on('exit', () => {
  for (const s of running) {
    try { s.proc.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

/**
 * Start a binary and wait for its listening line on stdout.
 * Returns { proc, url, port, host, stop(), logs(), exited }.
 */
function startServer(bin, args = [], { timeout = DEFAULT_TIMEOUT } = {}) {
  if (!fs.existsSync(bin)) {
    return Promise.reject(new Error(`binary not found: ${bin} (build it, or set PARLOR_BIN)`));
  }
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } });
  let stderr = '';
  let stdout = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => {
    stderr += d;
    if (stderr.length > 65536) stderr = stderr.slice(-32768);
  });
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      exitInfo = { code, signal };
      running.delete(server);
      resolve(exitInfo);
    });
  });
  const server = {
    proc,
    bin,
    args,
    url: null,
    port: null,
    host: null,
    exited,
    logs: () => stderr,
    get exitInfo() { return exitInfo; },
    /** SIGTERM, wait for exit; returns {code, signal}. SIGKILL after `grace` ms. */
    async stop({ grace = DEFAULT_TIMEOUT, signal = 'SIGTERM' } = {}) {
      if (exitInfo) return exitInfo;
      proc.kill(signal);
      let timer;
      const killed = new Promise((resolve) => {
        timer = setTimeout(() => {
          proc.kill('SIGKILL');
          resolve(null);
        }, grace);
      });
      const r = await Promise.race([exited, killed]);
      clearTimeout(timer);
      if (r === null) {
        await exited;
        return { code: null, signal: 'SIGKILL', timedOut: true };
      }
      return r;
    },
    /** stop() and assert a clean exit (code 0), with the server log tail on failure. */
    async stopAndCheck(opts) {
      const already = exitInfo;
      const r = await server.stop(opts);
      assert.ok(!already, `${path.basename(bin)} ${args.join(' ')} had already exited before SIGTERM: ` +
        `${JSON.stringify(already)}\n--- stderr tail ---\n${stderr.slice(-4000)}`);
      assert.equal(r.code, 0, `${path.basename(bin)} ${args.join(' ')} did not exit 0 on SIGTERM: ` +
        `${JSON.stringify(r)}\n--- stderr tail ---\n${stderr.slice(-4000)}`);
      return r;
    },
  };
  running.add(server);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${bin} ${args.join(' ')}: no listening line within ${timeout} ms; ` +
        `stdout=${JSON.stringify(stdout)} stderr tail:\n${stderr.slice(-4000)}`));
    }, timeout);
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d) => {
      if (server.url) return; // keep draining, ignore
      stdout += d;
      const nl = stdout.indexOf('\n');
      if (nl === -1) return;
      const line = stdout.slice(0, nl).replace(/\r$/, '');
      const m = LISTEN_LINE.exec(line);
      clearTimeout(timer);
      if (!m) {
        proc.kill('SIGKILL');
        reject(new Error(`unexpected first stdout line from ${bin}: ${JSON.stringify(line)}`));
        return;
      }
      server.url = m[1];
      server.host = m[2];
      server.port = Number(m[3]);
      resolve(server);
    });
    exited.then((info) => {
      if (server.url) return;
      clearTimeout(timer);
      reject(new Error(`${bin} ${args.join(' ')} exited early ${JSON.stringify(info)}; ` +
        `stderr tail:\n${stderr.slice(-4000)}`));
    });
  });
}

const startParlor = (args = [], opts) =>
  startServer(parlorBin(), ['serve', '--listen', '127.0.0.1:0', ...args], opts);
const startConformance = (args = [], opts) =>
  startServer(parlorBin(), ['conformance', '--listen', '127.0.0.1:0', ...args], opts);
const startApiServer = (args = [], opts) =>
  startServer(apiServerBin(), ['--listen', '127.0.0.1:0', ...args], opts);

/** Reject after `ms` with a clear message. */
function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/** Wait for one `event` on an emitter (socket.io socket, manager, ws, ...). Resolves with the args array. */
function once(emitter, event, ms = DEFAULT_TIMEOUT) {
  let handler;
  const p = new Promise((resolve) => {
    handler = (...args) => resolve(args);
    emitter.once(event, handler);
  });
  return withTimeout(p, ms, `event "${event}"`).catch((e) => {
    emitter.off(event, handler);
    throw e;
  });
}

/** fetch with a bounded time (10 s unless opts.signal is given), so a hung request fails the test. */
function fetchT(url, opts = {}) {
  return fetch(url, { ...opts, signal: opts.signal || AbortSignal.timeout(DEFAULT_TIMEOUT) });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll `fn` (sync or async) until it returns a truthy value. */
async function waitUntil(fn, what, ms = DEFAULT_TIMEOUT, every = 20) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting until ${what}`);
    await sleep(every);
  }
}

// Track every client so a test can't leak a socket into the next one.
const clients = new Set();

/** Create a socket.io-client socket (not yet awaited). forceNew and no reconnection by default. */
function client(url, opts = {}) {
  const s = io(url, { forceNew: true, reconnection: false, timeout: DEFAULT_TIMEOUT, ...opts });
  clients.add(s);
  return s;
}

/** Create a socket and wait for `connect`; rejects on connect_error. */
async function connect(url, opts = {}, ms = DEFAULT_TIMEOUT) {
  const s = client(url, opts);
  await waitConnect(s, ms);
  return s;
}

function waitConnect(s, ms = DEFAULT_TIMEOUT) {
  if (s.connected) return Promise.resolve(s);
  let onConnect;
  let onError;
  const p = new Promise((resolve, reject) => {
    onConnect = () => resolve(s);
    onError = (err) => reject(new Error(`connect_error on ${s.nsp}: ${err && err.message} ` +
      `${err && err.data !== undefined ? JSON.stringify(err.data) : ''}`));
    s.once('connect', onConnect);
    s.once('connect_error', onError);
  });
  return withTimeout(p, ms, `connect of ${s.nsp}`).finally(() => {
    s.off('connect', onConnect);
    s.off('connect_error', onError);
  });
}

function closeAllClients() {
  for (const s of clients) {
    try {
      s.disconnect();
      s.io.engine && s.io.engine.close();
    } catch { /* ignore */ }
  }
  clients.clear();
}

/** Emit with an ack callback; resolves with ALL ack arguments (emitWithAck gives only the first). */
function ack(socket, event, ...args) {
  const p = new Promise((resolve) => socket.emit(event, ...args, (...reply) => resolve(reply)));
  return withTimeout(p, DEFAULT_TIMEOUT, `ack of "${event}"`);
}

/**
 * Record every event a socket receives ([event, args]) and let tests wait for them.
 */
function recorder(socket) {
  const log = [];
  const waiters = [];
  socket.onAny((event, ...args) => {
    log.push({ event, args });
    for (const w of [...waiters]) w();
  });
  return {
    log,
    events: (name) => log.filter((e) => e.event === name),
    async waitFor(name, count = 1, ms = DEFAULT_TIMEOUT) {
      const have = () => log.filter((e) => e.event === name).length >= count;
      if (have()) return log.filter((e) => e.event === name);
      let w;
      const p = new Promise((resolve) => {
        w = () => { if (have()) resolve(); };
        waiters.push(w);
      });
      try {
        await withTimeout(p, ms, `${count} × "${name}" on ${socket.nsp} ` +
          `(got ${log.filter((e) => e.event === name).length}; all: ${log.map((e) => e.event).join(',')})`);
      } finally {
        waiters.splice(waiters.indexOf(w), 1);
      }
      return log.filter((e) => e.event === name);
    },
  };
}

/**
 * With connection state recovery on, the server appends an opaque string offset as the last
 * argument of every event without ack. Return the leading `n` arguments after checking that
 * anything beyond them is exactly one string.
 */
function lead(args, n) {
  assert.ok(args.length === n || (args.length === n + 1 && typeof args[n] === 'string'),
    `expected ${n} argument(s) (plus an optional string offset), got ${args.length}: ${inspectArgs(args)}`);
  return args.slice(0, n);
}

function inspectArgs(args) {
  return JSON.stringify(args, (k, v) => {
    if (v && v.type === 'Buffer' && Array.isArray(v.data)) return `<Buffer ${Buffer.from(v.data).toString('hex')}>`;
    return v;
  });
}

/** Turn ArrayBuffer / typed arrays / Buffers anywhere in a value into Buffers, for deepEqual. */
function normBin(v) {
  if (Buffer.isBuffer(v)) return Buffer.from(v);
  if (v instanceof ArrayBuffer) return Buffer.from(v);
  if (ArrayBuffer.isView(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (Array.isArray(v)) return v.map(normBin);
  if (v && typeof v === 'object') {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = normBin(x);
    return o;
  }
  return v;
}

let uniq = 0;
const unique = (prefix = 'r') => `${prefix}-${process.pid}-${++uniq}`;

module.exports = {
  REPO_ROOT,
  DEFAULT_TIMEOUT,
  parlorBin,
  apiServerBin,
  startServer,
  startParlor,
  startConformance,
  startApiServer,
  withTimeout,
  fetch: fetchT,
  once,
  sleep,
  waitUntil,
  client,
  connect,
  waitConnect,
  closeAllClients,
  ack,
  recorder,
  lead,
  normBin,
  inspectArgs,
  unique,
};
