'use strict';
// Raw Engine.IO / Socket.IO over plain HTTP and a plain WebSocket: the error answers of
// PROTOCOL.md, the upgrade sequence, and bad input (malformed packets of every kind, oversized
// bodies and frames) closing exactly the offending session while the server keeps serving.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const h = require('./helpers');

const MAX = 1000;

/** A raw WebSocket with a frame inbox. */
function rawWs(url, opts) {
  const ws = new WebSocket(url, opts);
  const frames = [];
  const waiters = [];
  ws.on('message', (data, isBinary) => {
    frames.push({ data: isBinary ? Buffer.from(data) : data.toString(), isBinary });
    for (const w of [...waiters]) w();
  });
  const closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.on('error', () => { /* surfaced through close / unexpected-response */ });
  const next = (pred, what, ms = 5000) => h.withTimeout(new Promise((resolve) => {
    const check = () => {
      const i = frames.findIndex(pred);
      if (i !== -1) {
        waiters.splice(waiters.indexOf(check), 1);
        resolve(frames.splice(i, 1)[0]);
      }
    };
    waiters.push(check);
    check();
  }), ms, `${what} (frames so far: ${JSON.stringify(frames.map((f) => String(f.data).slice(0, 80)))})`);
  return { ws, frames, next, closed };
}

describe('raw protocol: errors, upgrade, bad input', { timeout: 90_000 }, () => {
  let server;
  let base;
  let wsBase;
  before(async () => {
    server = await h.startParlor(['--max-payload', String(MAX)]);
    base = `${server.url}/socket.io/`;
    wsBase = `${server.url.replace('http', 'ws')}/socket.io/`;
  });
  after(async () => {
    h.closeAllClients();
    if (server) await server.stopAndCheck();
  });
  afterEach(() => h.closeAllClients());

  async function pollHandshake() {
    const res = await h.fetch(`${base}?EIO=4&transport=polling`);
    assert.equal(res.status, 200);
    const body = await res.text();
    assert.equal(body[0], '0', body);
    return JSON.parse(body.slice(1));
  }

  const poll = (sid, signal) => h.fetch(`${base}?EIO=4&transport=polling&sid=${sid}`, { signal });
  const post = (sid, body) => h.fetch(`${base}?EIO=4&transport=polling&sid=${sid}`, { method: 'POST', body });

  async function expectError(res, code, message) {
    assert.equal(res.status, 400, `status for code ${code}`);
    const text = await res.text();
    let json;
    try { json = JSON.parse(text); } catch { assert.fail(`error body is not JSON: ${JSON.stringify(text)}`); }
    assert.deepEqual(json, { code, message });
  }

  /** The polling session must be gone: a GET answers 400 (possibly after one last `1` close packet). */
  async function expectPollingClosed(sid, what) {
    for (let i = 0; i < 3; i++) {
      let res;
      try {
        res = await poll(sid, AbortSignal.timeout(3000));
      } catch (e) {
        assert.fail(`${what}: the session is still open (a GET with its sid hung: ${e.message})`);
      }
      const text = await res.text();
      if (res.status === 400) {
        assert.deepEqual(JSON.parse(text), { code: 1, message: 'Session ID unknown' }, what);
        return;
      }
      assert.equal(res.status, 200, `${what}: GET status ${res.status} ${text}`);
      assert.ok(text.split('\x1e').includes('1'), `${what}: the session is still open; GET got ${JSON.stringify(text)}`);
    }
    assert.fail(`${what}: the session was never closed`);
  }

  async function socketioOverPolling() {
    const hs = await pollHandshake();
    const r = await post(hs.sid, '40');
    assert.equal(r.status, 200);
    await r.text();
    const got = await (await poll(hs.sid)).text();
    assert.match(got, /^40\{"sid":"[^"]+"/, got);
    return hs.sid;
  }

  async function socketioOverWs() {
    const c = rawWs(`${wsBase}?EIO=4&transport=websocket`);
    await c.next((f) => f.data[0] === '0', 'open');
    c.ws.send('40');
    await c.next((f) => typeof f.data === 'string' && f.data.startsWith('40{'), 'CONNECT reply');
    return c;
  }

  async function serverStillServes() {
    const s = await h.connect(server.url, { transports: ['websocket'] });
    const r = h.recorder(s);
    s.emit('message', 'alive?');
    await r.waitFor('message-received');
    s.disconnect();
  }

  it('handshake: text/plain; charset=UTF-8, exactly five keys, upgrades per transport', async () => {
    const res = await h.fetch(`${base}?EIO=4&transport=polling&t=abc`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') || '', /^text\/plain; ?charset=UTF-8$/i);
    const body = await res.text();
    const hs = JSON.parse(body.slice(1));
    assert.deepEqual(Object.keys(hs).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
    assert.deepEqual(hs.upgrades, ['websocket']);
    assert.equal(hs.maxPayload, MAX);
    const c = rawWs(`${wsBase}?EIO=4&transport=websocket`);
    const open = await c.next((f) => f.data[0] === '0', 'open over websocket');
    assert.deepEqual(JSON.parse(open.data.slice(1)).upgrades, []);
    c.ws.terminate();
  });

  it('error answers: unknown sid, bad transport, bad EIO, POST without sid, plain GET for websocket', async () => {
    await expectError(await h.fetch(`${base}?EIO=4&transport=polling&sid=nope`), 1, 'Session ID unknown');
    await expectError(await h.fetch(`${base}?EIO=4&transport=polling&sid=nope`, { method: 'POST', body: '4x' }),
      1, 'Session ID unknown');
    await expectError(await h.fetch(`${base}?EIO=4&transport=carrier-pigeon`), 0, 'Transport unknown');
    await expectError(await h.fetch(`${base}?EIO=4`), 0, 'Transport unknown');
    await expectError(await h.fetch(`${base}?EIO=3&transport=polling`), 5, 'Unsupported protocol version');
    await expectError(await h.fetch(`${base}?EIO=abc&transport=polling`), 5, 'Unsupported protocol version');
    await expectError(await h.fetch(`${base}?transport=polling`), 5, 'Unsupported protocol version');
    await expectError(await h.fetch(`${base}?EIO=4&transport=polling`, { method: 'POST', body: '40' }),
      2, 'Bad handshake method');
    await expectError(await h.fetch(`${base}?EIO=4&transport=websocket`), 3, 'Bad request');
  });

  it('a WebSocket upgrade with bad EIO, bad transport or unknown sid is refused', async () => {
    for (const q of ['EIO=3&transport=websocket', 'EIO=4&transport=nope', 'EIO=4&transport=websocket&sid=unknown']) {
      const ws = new WebSocket(`${wsBase}?${q}`);
      const outcome = await h.withTimeout(new Promise((resolve) => {
        ws.on('unexpected-response', (_req, res) => { resolve(`http ${res.statusCode}`); res.resume(); });
        ws.on('open', () => resolve('open'));
        ws.on('error', (e) => resolve(`error ${e.message}`));
      }), 5000, `outcome of ${q}`);
      ws.terminate();
      assert.notEqual(outcome, 'open', `${q} must be refused`);
      assert.match(outcome, /^http 400|^error/, `${q}: ${outcome}`);
    }
  });

  it('upgrade: 2probe → 3probe, the pending GET gets 6, then 5 and the session moves to WebSocket', async () => {
    const hs = await pollHandshake();
    await (await post(hs.sid, '40')).text();
    const connectReply = await (await poll(hs.sid)).text();
    assert.match(connectReply, /^40\{"sid":/);
    const pending = poll(hs.sid, AbortSignal.timeout(8000)).then(async (r) => ({ status: r.status, body: await r.text() }));
    await h.sleep(50); // let the GET park
    const c = rawWs(`${wsBase}?EIO=4&transport=websocket&sid=${hs.sid}`);
    await h.once(c.ws, 'open');
    c.ws.send('2probe');
    await c.next((f) => f.data === '3probe', '3probe');
    const parked = await pending;
    assert.equal(parked.status, 200);
    assert.equal(parked.body, '6', 'the pending GET is answered with a noop');
    c.ws.send('5');
    c.ws.send('42["message","over ws"]');
    const frame = await c.next((f) => typeof f.data === 'string' && f.data.startsWith('42["message-received"'),
      'message-received over the upgraded socket');
    assert.match(frame.data, /"status":"ok"/);
    // polling with that sid is over; a second WebSocket with it is closed at once, as the
    // reference server does (a refused upgrade would make WebSocket clients throw)
    const late = await poll(hs.sid, AbortSignal.timeout(3000));
    assert.equal(late.status, 400);
    await late.text();
    const dup = new WebSocket(`${wsBase}?EIO=4&transport=websocket&sid=${hs.sid}`);
    const messages = [];
    dup.on('message', (m) => messages.push(String(m)));
    const code = await h.withTimeout(new Promise((resolve, reject) => {
      dup.on('close', (c) => resolve(c));
      dup.on('error', reject);
    }), 5000, 'second websocket closed');
    assert.equal(code, 1008, 'a second WebSocket with the same sid is closed');
    assert.deepEqual(messages, [], 'and gets nothing of the session');
    c.ws.terminate();
  });

  it('two concurrent GETs on one session: the duplicate gets 400, the pending one gets 1, session closed', async () => {
    const hs = await pollHandshake();
    const first = poll(hs.sid, AbortSignal.timeout(5000)).then(async (r) => ({ status: r.status, body: await r.text() }));
    await h.sleep(50);
    const second = await poll(hs.sid, AbortSignal.timeout(5000));
    const secondBody = await second.text();
    const firstRes = await first;
    assert.equal(second.status, 400, `duplicate GET: ${second.status} ${secondBody}`);
    assert.equal(firstRes.status, 200);
    assert.ok(firstRes.body.split('\x1e').includes('1'), `pending GET body ${JSON.stringify(firstRes.body)}`);
    await expectPollingClosed(hs.sid, 'after a duplicate GET');
  });

  it('malformed Engine.IO packets over polling: POST → 400 and the session is closed', async () => {
    for (const bad of ['abc', '9', 'b!!not base64!!', '4ok\x1ezzz']) {
      const hs = await pollHandshake();
      const res = await post(hs.sid, bad);
      const text = await res.text();
      assert.equal(res.status, 400, `POST ${JSON.stringify(bad)} → ${res.status} ${text}`);
      await expectPollingClosed(hs.sid, `after POST ${JSON.stringify(bad)}`);
    }
    await serverStillServes();
  });

  it('malformed Engine.IO packets over WebSocket close the connection', async () => {
    for (const bad of ['abc', '9', '']) {
      const c = rawWs(`${wsBase}?EIO=4&transport=websocket`);
      await c.next((f) => f.data[0] === '0', 'open');
      c.ws.send(bad);
      await h.withTimeout(c.closed, 5000, `close after ${JSON.stringify(bad)}`);
    }
    await serverStillServes();
  });

  const badSocketIo = [
    '4abc', // unknown packet type
    '49', // unknown packet type
    '42{}', // EVENT payload not an array
    '42[]', // empty EVENT
    '42"str"',
    '42[{}]', // event name not a string/number
    '42["connect"]', // reserved name
    '42["disconnecting"]',
    '42abc["x"]', // garbage ack id
    '42["x"', // truncated JSON
    '42["x"]trailing',
    '4299999999999999999["x"]', // ack id over 2^53-1
    `42["deep",${'['.repeat(200)}${']'.repeat(200)}]`, // nesting past the limit
    '43', // ACK without id / payload
    '41{"x":1}', // DISCONNECT with a payload
    '40"string"', // CONNECT payload not an object
    '40[1]',
    '4-', // junk
  ];

  it('malformed Socket.IO packets over WebSocket close the connection, other clients unaffected', async () => {
    const bystander = await h.connect(server.url, { transports: ['websocket'] });
    for (const bad of badSocketIo) {
      const c = await socketioOverWs();
      c.ws.send(bad);
      await h.withTimeout(c.closed, 5000, `the server to close the connection after ${JSON.stringify(bad)}`);
    }
    assert.ok(bystander.connected, 'a bystander stays connected');
    assert.deepEqual(await h.ack(bystander, 'join-room', h.unique()).then(([r]) => r.users.length), 1);
    await serverStillServes();
  });

  it('malformed Socket.IO packets over polling close the session', async () => {
    for (const bad of badSocketIo) {
      const sid = await socketioOverPolling();
      const res = await post(sid, bad);
      await res.text();
      assert.ok(res.status === 200 || res.status === 400, `POST ${JSON.stringify(bad)} → ${res.status}`);
      await expectPollingClosed(sid, `after ${JSON.stringify(bad)}`);
    }
    await serverStillServes();
  });

  it('a binary attachment without a pending BINARY packet, and too many attachments, close the connection', async () => {
    const c1 = await socketioOverWs();
    c1.ws.send(Buffer.from([1, 2, 3]));
    await h.withTimeout(c1.closed, 5000, 'close after a stray binary frame');
    const c2 = await socketioOverWs();
    const ph = Array.from({ length: 11 }, (_, i) => ({ _placeholder: true, num: i }));
    c2.ws.send(`4511-["x",${JSON.stringify(ph)}]`);
    await h.withTimeout(c2.closed, 5000, 'close after 11 attachments (cap 10)');
    await serverStillServes();
  });

  it('a POST body over maxPayload → 413; the server keeps serving', async () => {
    const hs = await pollHandshake();
    const res = await post(hs.sid, `4${'x'.repeat(MAX * 2)}`);
    await res.text();
    assert.equal(res.status, 413);
    const hs2 = await pollHandshake();
    const big = await post(hs2.sid, `4${'y'.repeat(MAX * 50)}`);
    await big.text();
    assert.equal(big.status, 413);
    await serverStillServes();
  });

  it('a WebSocket frame over maxPayload → close code 1009', async () => {
    const c = rawWs(`${wsBase}?EIO=4&transport=websocket`);
    await c.next((f) => f.data[0] === '0', 'open');
    c.ws.send(`4${'z'.repeat(MAX * 2)}`);
    const { code } = await h.withTimeout(c.closed, 5000, 'close after an oversized frame');
    assert.equal(code, 1009);
    const c2 = rawWs(`${wsBase}?EIO=4&transport=websocket`);
    await c2.next((f) => f.data[0] === '0', 'open');
    c2.ws.send(Buffer.alloc(MAX * 3, 7));
    const r2 = await h.withTimeout(c2.closed, 5000, 'close after an oversized binary frame');
    assert.equal(r2.code, 1009);
    await serverStillServes();
  });

  it('nothing is sent before CONNECT and nothing in reply to 41', async () => {
    const c = rawWs(`${wsBase}?EIO=4&transport=websocket`);
    await c.next((f) => f.data[0] === '0', 'open');
    await h.sleep(200);
    assert.deepEqual(c.frames, [], 'no packet before CONNECT');
    c.ws.send('40');
    await c.next((f) => typeof f.data === 'string' && f.data.startsWith('40{'), 'CONNECT reply');
    c.ws.send('41');
    await h.sleep(200);
    assert.deepEqual(c.frames, [], 'no reply to DISCONNECT');
    // the Engine.IO session stays; the namespace can be joined again
    c.ws.send('40/chat,');
    await c.next((f) => typeof f.data === 'string' && f.data.startsWith('40/chat,{'), 'CONNECT /chat reply');
    c.ws.send('40/nope,');
    const err = await c.next((f) => typeof f.data === 'string' && f.data.startsWith('44/nope,'), 'CONNECT_ERROR');
    assert.deepEqual(JSON.parse(err.data.slice('44/nope,'.length)), { message: 'Invalid namespace' });
    c.ws.terminate();
  });
});
