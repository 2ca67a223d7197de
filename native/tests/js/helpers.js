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
function startServer(bin, args = [], { timeout = DEFAULT_TIMEOUT, env = {} } = {}) {
  if (!fs.existsSync(bin)) {
    return Promise.reject(new Error(`binary not found: ${bin} (build it, or set PARLOR_BIN)`));
  }
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
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

// Every `parlor serve` gets its own store (PARLOR_DATA_DIR, a fresh temp dir, unless the
// environment names one; a --data-dir flag still wins), so no test shares or leaves ./parlor-data.
// PARLOR_COMPONENT=/path/parlor_edge.wasm runs every `serve` and `conformance` from that
// component (`--component`), unless a test names its own; api_server stays native.
const componentFile = () => process.env.PARLOR_COMPONENT || null;
const withComponent = (args) =>
  (componentFile() && !args.includes('--component') ? ['--component', componentFile(), ...args] : args);
const startParlor = (args = [], opts = {}) =>
  startServer(parlorBin(), ['serve', '--listen', '127.0.0.1:0', ...withComponent(args)], {
    ...opts,
    env: { PARLOR_DATA_DIR: process.env.PARLOR_DATA_DIR || tempDir('parlor-data-'), ...(opts.env || {}) },
  });
const startConformance = (args = [], opts) =>
  startServer(parlorBin(), ['conformance', '--listen', '127.0.0.1:0', ...withComponent(args)], opts);
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
    /** First arguments of every `name` event so far (the trailing recovery offset dropped). */
    payloads: (name) => log.filter((e) => e.event === name).map((e) => e.args[0]),
    /** Wait until some `name` event's first argument satisfies `pred`; resolves with that argument. */
    async waitWhere(name, pred, ms = DEFAULT_TIMEOUT, what = 'a match') {
      const find = () => log.find((e) => e.event === name && pred(e.args[0]));
      let hit = find();
      if (hit) return hit.args[0];
      let w;
      const p = new Promise((resolve) => {
        w = () => { const f = find(); if (f) resolve(f); };
        waiters.push(w);
      });
      try {
        hit = await withTimeout(p, ms, `"${name}" with ${what} on ${socket.nsp} ` +
          `(got: ${inspectArgs(log.filter((e) => e.event === name).map((e) => e.args[0])).slice(0, 2000)})`);
      } finally {
        waiters.splice(waiters.indexOf(w), 1);
      }
      return hit.args[0];
    },
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

// ---- room service (parlor serve) helpers ------------------------------------------------------

const { execFile } = require('node:child_process');
const os = require('node:os');

const tempDirs = new Set();
process.on('exit', () => {
  for (const d of tempDirs) {
    try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ }
  }
});

/** A fresh temporary directory, removed when the test process exits. */
function tempDir(prefix = 'parlor-test-') {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(d);
  return d;
}

/**
 * `parlor serve` with its own fresh `--data-dir` (or the given one, to restart on the same store).
 * The returned server has `.dataDir`.
 */
async function startRoomServer(args = [], { dataDir, ...opts } = {}) {
  const dir = dataDir || tempDir('parlor-data-');
  const server = await startParlor(['--data-dir', dir, ...args], opts);
  server.dataDir = dir;
  return server;
}

/** Run the parlor CLI to completion; resolves with {code, stdout, stderr} (never rejects on exit code). */
function runParlor(args, { timeout = DEFAULT_TIMEOUT } = {}) {
  return new Promise((resolve, reject) => {
    if (!fs.existsSync(parlorBin())) {
      reject(new Error(`binary not found: ${parlorBin()} (build it, or set PARLOR_BIN)`));
      return;
    }
    execFile(parlorBin(), args, { timeout, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        reject(new Error(`parlor ${args.join(' ')}: ${err.message}\n${stderr}`));
        return;
      }
      resolve({ code: err ? err.code : 0, stdout, stderr });
    });
  });
}

/** `parlor keygen --out DIR`; resolves with {dir, keyPath, pubPath, privatePem, publicPem}. */
async function keygen(dir = tempDir('parlor-key-')) {
  const r = await runParlor(['keygen', '--out', dir]);
  assert.equal(r.code, 0, `parlor keygen --out ${dir} failed: ${r.stderr}`);
  const keyPath = path.join(dir, 'parlor.key');
  const pubPath = path.join(dir, 'parlor.pub');
  return {
    dir, keyPath, pubPath,
    privatePem: fs.readFileSync(keyPath, 'utf8'),
    publicPem: fs.readFileSync(pubPath, 'utf8'),
  };
}

/** `parlor token --key FILE --sub ID --name NAME --ttl TTL [--admin]`; resolves with the token. */
async function cliToken(keyPath, { sub, name, ttl = '1h', admin = false } = {}) {
  const args = ['token', '--key', keyPath, '--sub', sub, '--name', name, '--ttl', ttl];
  if (admin) args.push('--admin');
  const r = await runParlor(args);
  assert.equal(r.code, 0, `parlor ${args.join(' ')} failed: ${r.stderr}`);
  const token = r.stdout.trim();
  assert.match(token, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, `a compact JWT, got ${JSON.stringify(r.stdout)}`);
  return token;
}

let josePromise = null;
/** The `jose` npm package (ESM-only, so loaded with a dynamic import). */
function jose() {
  if (!josePromise) josePromise = import('jose');
  return josePromise;
}

/**
 * Mint an EdDSA token with jose from a PKCS#8 PEM. `exp` is a jose time span ('1h', '-1h') or
 * seconds since the epoch; `nbf` likewise (omitted when undefined); `claims` are extra claims.
 */
async function joseToken(privatePem, { sub, name, admin, exp = '1h', nbf, kid, claims = {} } = {}) {
  const j = await jose();
  const key = await j.importPKCS8(privatePem, 'EdDSA');
  const body = { ...claims };
  if (name !== undefined) body.name = name;
  if (admin !== undefined) body.admin = admin;
  const header = { alg: 'EdDSA', typ: 'JWT' };
  if (kid !== undefined) header.kid = kid;
  let jwt = new j.SignJWT(body).setProtectedHeader(header).setIssuedAt();
  if (sub !== undefined) jwt = jwt.setSubject(sub);
  if (exp !== null) jwt = jwt.setExpirationTime(exp);
  if (nbf !== undefined) jwt = jwt.setNotBefore(nbf);
  return jwt.sign(key);
}

/** A new Ed25519 key pair made by jose, written as parlor.key / parlor.pub (PEM) into a temp dir. */
async function joseKeyPair(dir = tempDir('parlor-josekey-')) {
  const j = await jose();
  const { privateKey, publicKey } = await j.generateKeyPair('EdDSA', { extractable: true });
  const privatePem = await j.exportPKCS8(privateKey);
  const publicPem = await j.exportSPKI(publicKey);
  const keyPath = path.join(dir, 'parlor.key');
  const pubPath = path.join(dir, 'parlor.pub');
  fs.writeFileSync(keyPath, privatePem);
  fs.writeFileSync(pubPath, publicPem);
  return { dir, keyPath, pubPath, privatePem, publicPem };
}

/** Create a socket and wait for its connect_error; resolves with the error (rejects on connect). */
async function connectError(url, opts = {}, ms = DEFAULT_TIMEOUT) {
  const s = client(url, opts);
  let onConnect;
  let onError;
  const p = new Promise((resolve, reject) => {
    onError = (err) => resolve(err);
    onConnect = () => reject(new Error(`${url}: connected although a connect_error was expected`));
    s.once('connect', onConnect);
    s.once('connect_error', onError);
  });
  try {
    return await withTimeout(p, ms, `connect_error on ${url}`);
  } finally {
    s.off('connect', onConnect);
    s.off('connect_error', onError);
    s.disconnect();
  }
}

/** Resolve with the reason of the socket's next disconnect (attach before triggering it). */
function waitDisconnect(socket, ms = DEFAULT_TIMEOUT) {
  return once(socket, 'disconnect', ms).then((args) => args[0]);
}

/** Emit with an ack and resolve with the first ack argument, within `ms`. */
function call(socket, event, ...args) {
  return callWithin(DEFAULT_TIMEOUT, socket, event, ...args);
}
function callWithin(ms, socket, event, ...args) {
  const p = new Promise((resolve) => socket.emit(event, ...args, (first) => resolve(first)));
  return withTimeout(p, ms, `ack of "${event}" on ${socket.nsp}`);
}

/**
 * A round trip on `socket` that the server answers without side effects (`leave-room` of a room
 * the socket never joined → an ack with NOT_IN_ROOM). The server handles a connection's packets
 * in order and its outbound queue is FIFO, so once this resolves every event the server emitted
 * to `socket` before handling it has been received.
 */
function sync(socket, ms = DEFAULT_TIMEOUT) {
  return callWithin(ms, socket, 'leave-room', `sync-barrier-${process.pid}-never-joined`);
}

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
/** Assert an ISO 8601 UTC timestamp (2026-11-25T16:40:00.000Z) within `slackMs` of now. */
function assertRecentIso(ts, slackMs = 120_000) {
  assert.equal(typeof ts, 'string', `timestamp is a string: ${JSON.stringify(ts)}`);
  assert.match(ts, ISO_UTC, `ISO 8601 UTC timestamp: ${ts}`);
  const t = Date.parse(ts);
  assert.ok(Math.abs(t - Date.now()) < slackMs, `timestamp ${ts} is close to now (${new Date().toISOString()})`);
}

module.exports = {
  REPO_ROOT,
  componentFile,
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
  tempDir,
  startRoomServer,
  runParlor,
  keygen,
  cliToken,
  jose,
  joseToken,
  joseKeyPair,
  connectError,
  waitDisconnect,
  call,
  callWithin,
  sync,
  ISO_UTC,
  assertRecentIso,
};
