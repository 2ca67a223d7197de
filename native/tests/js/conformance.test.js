'use strict';
// `parlor conformance` with socket.io-client (the official suites run separately): `auth` on
// connect, message-back, message-with-ack, /custom, invalid namespace, heartbeat timings, and the
// raw Engine.IO echo at /engine.io/.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const h = require('./helpers');

describe('parlor conformance', { timeout: 60_000 }, () => {
  let server;
  before(async () => { server = await h.startConformance(); });
  after(async () => {
    h.closeAllClients();
    if (server) await server.stopAndCheck();
  });
  afterEach(() => h.closeAllClients());

  for (const [tname, topts] of [['default', {}], ['websocket', { transports: ['websocket'] }],
    ['polling', { transports: ['polling'] }]]) {
    it(`emits auth on connect with the CONNECT payload, {} if none (${tname})`, async () => {
      const s = h.client(server.url, { ...topts, auth: { token: '123', n: [1] } });
      const authed = h.once(s, 'auth');
      const [payload] = await authed;
      assert.deepEqual(payload, { token: '123', n: [1] });
      const bare = h.client(server.url, topts);
      const [p2, ...rest] = await h.once(bare, 'auth');
      assert.deepEqual(p2, {});
      assert.deepEqual(rest, [], 'recovery is off: no offset argument');
      const custom = h.client(`${server.url}/custom`, { ...topts, auth: { x: 'y' } });
      assert.deepEqual(await h.once(custom, 'auth'), [{ x: 'y' }]);
    });

    it(`message → message-back, message-with-ack → ack, binary too (${tname})`, async () => {
      const s = await h.connect(server.url, topts);
      const back = h.once(s, 'message-back');
      s.emit('message', 1, '2', { 3: '4', 5: Buffer.from([6]) });
      assert.deepEqual(h.normBin(await back), [1, '2', { 3: '4', 5: Buffer.from([6]) }]);
      const reply = await h.ack(s, 'message-with-ack', 1, '2', { 3: [4, Buffer.from([5, 6])] });
      assert.deepEqual(h.normBin(reply), [1, '2', { 3: [4, Buffer.from([5, 6])] }]);
    });
  }

  it('an unknown namespace gets connect_error "Invalid namespace"', async () => {
    const s = h.client(`${server.url}/random`, {});
    const [err] = await h.once(s, 'connect_error');
    assert.equal(err.message, 'Invalid namespace');
  });

  it('one connection holds / and /custom', async () => {
    const root = await h.connect(server.url, { transports: ['websocket'] });
    const custom = root.io.socket('/custom');
    await h.waitConnect(custom);
    assert.notEqual(custom.id, root.id);
    const back = h.once(root, 'message-back');
    root.emit('message', 'via root');
    assert.deepEqual(await back, ['via root']);
  });

  it('raw Engine.IO at /engine.io/: open packet, echo of text and binary, pings every 300 ms', async () => {
    const url = `${server.url.replace('http', 'ws')}/engine.io/?EIO=4&transport=websocket`;
    const ws = new WebSocket(url);
    const frames = [];
    const waiters = [];
    ws.on('message', (data, isBinary) => {
      frames.push({ data: isBinary ? Buffer.from(data) : data.toString(), isBinary, at: Date.now() });
      for (const w of [...waiters]) w();
    });
    const next = (pred, what) => h.withTimeout(new Promise((resolve) => {
      const check = () => {
        const i = frames.findIndex(pred);
        if (i !== -1) {
          waiters.splice(waiters.indexOf(check), 1);
          resolve(frames.splice(i, 1)[0]);
        }
      };
      waiters.push(check);
      check();
    }), 5000, what);
    try {
      const open = await next((f) => !f.isBinary && f.data[0] === '0', 'open packet');
      const hs = JSON.parse(open.data.slice(1));
      assert.deepEqual(Object.keys(hs).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
      assert.deepEqual(hs.upgrades, []);
      assert.equal(hs.pingInterval, 300);
      assert.equal(hs.pingTimeout, 200);
      assert.equal(hs.maxPayload, 1000000);
      ws.send('4hello');
      assert.equal((await next((f) => f.data === '4hello', 'text echo')).data, '4hello');
      ws.send(Buffer.from([1, 2, 3]));
      assert.deepEqual((await next((f) => f.isBinary, 'binary echo')).data, Buffer.from([1, 2, 3]));
      // heartbeat: answer two pings, the session stays open
      for (let i = 0; i < 2; i++) {
        await next((f) => f.data === '2', `ping ${i + 1}`);
        ws.send('3');
      }
      ws.send('4still');
      await next((f) => f.data === '4still', 'echo after pings');
      // stop answering: the server closes the session (pingInterval + pingTimeout)
      const closed = h.once(ws, 'close', 3000);
      await closed;
    } finally {
      ws.terminate();
    }
  });

  it('raw Engine.IO over polling: handshake, echo through a long poll', async () => {
    const base = `${server.url}/engine.io/?EIO=4&transport=polling`;
    const hsRes = await h.fetch(base);
    assert.equal(hsRes.status, 200);
    assert.match(hsRes.headers.get('content-type') || '', /^text\/plain; ?charset=UTF-8$/i);
    const body = await hsRes.text();
    const hs = JSON.parse(body.slice(1));
    assert.deepEqual(hs.upgrades, ['websocket']);
    const post = await h.fetch(`${base}&sid=${hs.sid}`, { method: 'POST', body: '4hi\x1e4there\x1ebAQID' });
    assert.equal(post.status, 200);
    assert.equal(await post.text(), 'ok');
    const got = await (await h.fetch(`${base}&sid=${hs.sid}`)).text();
    assert.deepEqual(got.split('\x1e').filter((p) => p !== '2'), ['4hi', '4there', 'bAQID']);
  });
});
