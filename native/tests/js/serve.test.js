'use strict';
// `parlor serve`: the `message` trio and `join-room` on / and /chat, CORS, /healthz, /metrics,
// configuration from flags, env and TOML, graceful shutdown.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');

async function handshake(url, pathPrefix = '/socket.io/') {
  const res = await h.fetch(`${url}${pathPrefix}?EIO=4&transport=polling`);
  assert.equal(res.status, 200);
  const body = await res.text();
  assert.equal(body[0], '0', `open packet expected, got ${JSON.stringify(body)}`);
  return JSON.parse(body.slice(1));
}

describe('parlor serve', { timeout: 60_000 }, () => {
  let server;
  before(async () => {
    server = await h.startParlor(['--cors-origin', 'http://example.test', '--cors-origin', 'http://second.test']);
  });
  after(async () => {
    h.closeAllClients();
    if (server) await server.stopAndCheck();
  });
  afterEach(() => h.closeAllClients());

  for (const nsp of ['', '/chat']) {
    const label = nsp || '/';
    it(`message: sender gets message-received and message, others new-message and message (${label})`, async () => {
      const a = await h.connect(`${server.url}${nsp}`, {});
      const b = await h.connect(`${server.url}${nsp}`, { transports: ['websocket'] });
      const c = await h.connect(`${server.url}${nsp}`, { transports: ['polling'] });
      const [ra, rb, rc] = [a, b, c].map(h.recorder);
      const data = { text: 'hello', n: 1 };
      a.emit('message', data);
      await ra.waitFor('message-received');
      await ra.waitFor('message');
      for (const r of [rb, rc]) {
        await r.waitFor('new-message');
        await r.waitFor('message');
      }
      assert.deepEqual(h.lead(ra.events('message-received')[0].args, 1), [{ status: 'ok' }]);
      assert.deepEqual(h.lead(ra.events('message')[0].args, 1), [data]);
      assert.equal(ra.events('new-message').length, 0, 'the sender does not get new-message');
      for (const r of [rb, rc]) {
        assert.deepEqual(h.lead(r.events('new-message')[0].args, 1), [data]);
        assert.deepEqual(h.lead(r.events('message')[0].args, 1), [data]);
        assert.equal(r.events('message-received').length, 0);
      }
      // any payload: a plain string
      a.emit('message', 'just a string');
      await rb.waitFor('new-message', 2);
      assert.deepEqual(h.lead(rb.events('new-message')[1].args, 1), ['just a string']);
    });

    it(`join-room acks {users} and the room gets room-users-update (${label})`, async () => {
      const room = h.unique('lobby');
      const a = await h.connect(`${server.url}${nsp}`, { transports: ['websocket'] });
      const b = await h.connect(`${server.url}${nsp}`, {});
      const ra = h.recorder(a);
      const [ackA] = await h.ack(a, 'join-room', room);
      assert.ok(Array.isArray(ackA.users), `ack ${JSON.stringify(ackA)}`);
      assert.deepEqual(ackA.users.map((u) => u.id), [a.id]);
      for (const u of ackA.users) assert.ok('username' in u, `user has a username field: ${JSON.stringify(u)}`);
      await ra.waitFor('room-users-update');

      const [ackB] = await h.ack(b, 'join-room', room);
      assert.deepEqual(ackB.users.map((u) => u.id).sort(), [a.id, b.id].sort());
      const updates = await ra.waitFor('room-users-update', 2);
      const users = h.lead(updates[1].args, 1)[0];
      assert.ok(Array.isArray(users), 'room-users-update carries a bare array');
      assert.deepEqual(users.map((u) => u.id).sort(), [a.id, b.id].sort());

      // idempotent: joining again does not list a twice
      const [again] = await h.ack(a, 'join-room', room);
      assert.deepEqual(again.users.map((u) => u.id).sort(), [a.id, b.id].sort());
    });
  }

  it('/ and /chat keep separate rooms', async () => {
    const room = h.unique('shared-name');
    const root = await h.connect(server.url, { transports: ['websocket'] });
    const chat = await h.connect(`${server.url}/chat`, { transports: ['websocket'] });
    const [r1] = await h.ack(root, 'join-room', room);
    const [r2] = await h.ack(chat, 'join-room', room);
    assert.deepEqual(r1.users.map((u) => u.id), [root.id]);
    assert.deepEqual(r2.users.map((u) => u.id), [chat.id]);
  });

  it('CORS: preflight and requests from a configured origin get Access-Control-Allow-Origin', async () => {
    const pre = await h.fetch(`${server.url}/socket.io/?EIO=4&transport=polling`, {
      method: 'OPTIONS',
      headers: {
        Origin: 'http://example.test',
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'content-type',
      },
    });
    assert.ok(pre.status === 204 || pre.status === 200, `preflight status ${pre.status}`);
    assert.equal(pre.headers.get('access-control-allow-origin'), 'http://example.test');
    const methods = (pre.headers.get('access-control-allow-methods') || '').toUpperCase();
    assert.ok(methods.includes('GET') && methods.includes('POST'), `allow-methods: ${methods}`);

    const second = await h.fetch(`${server.url}/socket.io/?EIO=4&transport=polling`, {
      headers: { Origin: 'http://second.test' },
    });
    assert.equal(second.status, 200);
    assert.equal(second.headers.get('access-control-allow-origin'), 'http://second.test');
    await second.text();

    const evil = await h.fetch(`${server.url}/socket.io/?EIO=4&transport=polling`, {
      method: 'OPTIONS',
      headers: { Origin: 'http://evil.test', 'Access-Control-Request-Method': 'GET' },
    });
    const allow = evil.headers.get('access-control-allow-origin');
    assert.ok(allow !== 'http://evil.test' && allow !== '*', `unlisted origin must not be allowed (got ${allow})`);
  });

  it('/healthz answers 200 and /metrics is OpenMetrics text with parlor_connections', async () => {
    const s = await h.connect(server.url, { transports: ['websocket'] });
    assert.ok(s.connected);
    const health = await h.fetch(`${server.url}/healthz`);
    assert.equal(health.status, 200);
    await health.text();
    const metrics = await h.fetch(`${server.url}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') || '', /^application\/openmetrics-text; version=1\.0\.0/);
    const text = await metrics.text();
    assert.match(text, /parlor_connections/);
    const m = /^parlor_connections(?:\{[^}]*\})?\s+(\d+(?:\.\d+)?)\s*$/m.exec(text);
    if (m) assert.ok(Number(m[1]) >= 1, `parlor_connections is ${m[1]} with a client connected`);
  });

  it('handshake reports the defaults (pingInterval 25000, pingTimeout 20000, maxPayload 1000000)', async () => {
    const open = await handshake(server.url);
    assert.deepEqual(Object.keys(open).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
    assert.equal(open.pingInterval, 25000);
    assert.equal(open.pingTimeout, 20000);
    assert.equal(open.maxPayload, 1000000);
    assert.deepEqual(open.upgrades, ['websocket']);
  });
});

describe('parlor serve configuration and shutdown', { timeout: 60_000 }, () => {
  afterEach(() => h.closeAllClients());

  it('flags set the handshake values and --path', async () => {
    const s = await h.startParlor(['--ping-interval', '1234', '--ping-timeout', '567', '--max-payload', '4321',
      '--path', '/rt/']);
    try {
      const open = await handshake(s.url, '/rt/');
      assert.equal(open.pingInterval, 1234);
      assert.equal(open.pingTimeout, 567);
      assert.equal(open.maxPayload, 4321);
      const c = await h.connect(s.url, { path: '/rt/', transports: ['websocket'] });
      assert.ok(c.connected);
    } finally {
      h.closeAllClients();
      await s.stopAndCheck();
    }
  });

  async function withEnv(env, fn) {
    const saved = { ...process.env };
    Object.assign(process.env, env);
    try {
      return await fn();
    } finally {
      process.env = saved;
    }
  }

  it('PARLOR_* environment variables set the same values', async () => {
    const s = await withEnv({ PARLOR_PING_INTERVAL: '2345', PARLOR_MAX_PAYLOAD: '5432',
      PARLOR_CORS_ORIGIN: 'http://a.test,http://b.test' }, () => h.startParlor([]));
    try {
      const open = await handshake(s.url);
      assert.equal(open.pingInterval, 2345);
      assert.equal(open.maxPayload, 5432);
      const res = await h.fetch(`${s.url}/socket.io/?EIO=4&transport=polling`, { headers: { Origin: 'http://b.test' } });
      await res.text();
      assert.equal(res.headers.get('access-control-allow-origin'), 'http://b.test');
    } finally {
      await s.stopAndCheck();
    }
  });

  it('--config FILE (TOML, kebab-case keys) sets them too; flag > env > file', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'parlor-cfg-'));
    const file = path.join(dir, 'parlor.toml');
    fs.writeFileSync(file, [
      'ping-interval = 3456',
      'ping-timeout = 4567',
      'max-payload = 6543',
      'cors-origin = ["http://toml.test"]',
      'path = "/from-file/"',
      '',
    ].join('\n'));
    const s = await h.startParlor(['--config', file]);
    try {
      const open = await handshake(s.url, '/from-file/');
      assert.equal(open.pingInterval, 3456);
      assert.equal(open.pingTimeout, 4567);
      assert.equal(open.maxPayload, 6543);
      const res = await h.fetch(`${s.url}/from-file/?EIO=4&transport=polling`, { headers: { Origin: 'http://toml.test' } });
      await res.text();
      assert.equal(res.headers.get('access-control-allow-origin'), 'http://toml.test');
    } finally {
      await s.stopAndCheck();
    }
    // precedence
    const s2 = await withEnv({ PARLOR_PING_INTERVAL: '2222' },
      () => h.startParlor(['--config', file, '--max-payload', '7777']));
    try {
      const open = await handshake(s2.url, '/from-file/');
      assert.equal(open.pingInterval, 2222, 'env beats the file');
      assert.equal(open.maxPayload, 7777, 'a flag beats the file');
      assert.equal(open.pingTimeout, 4567, 'the file beats the default');
    } finally {
      await s2.stopAndCheck();
    }
    // a typo in the file is an error, not a silently ignored key
    const bad = path.join(dir, 'bad.toml');
    fs.writeFileSync(bad, 'ping-intervall = 1\n');
    await assert.rejects(h.startParlor(['--config', bad], { timeout: 5000 }), /exited early|no listening line/);
  });

  it('SIGTERM: connected clients are closed, the process exits 0', async () => {
    const s = await h.startParlor([]);
    const ws = await h.connect(s.url, { transports: ['websocket'] });
    const poll = await h.connect(s.url, { transports: ['polling'] });
    const d1 = h.once(ws, 'disconnect');
    const d2 = h.once(poll, 'disconnect');
    const r = await s.stop();
    assert.equal(r.code, 0, `exit ${JSON.stringify(r)}\n${s.logs().slice(-3000)}`);
    const [[reason1], [reason2]] = await Promise.all([d1, d2]);
    for (const reason of [reason1, reason2]) {
      assert.notEqual(reason, 'io server disconnect', 'shutdown must leave the client free to reconnect');
    }
  });

  it('SIGINT also shuts down with exit 0', async () => {
    const s = await h.startParlor([]);
    await h.connect(s.url, { transports: ['websocket'] });
    const r = await s.stop({ signal: 'SIGINT' });
    assert.equal(r.code, 0, `exit ${JSON.stringify(r)}\n${s.logs().slice(-3000)}`);
  });
});
