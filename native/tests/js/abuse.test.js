'use strict';
// Resource abuse: a flood of half-open TCP connections, and a client that stops reading while
// the server floods it. Other clients keep working; the server disconnects the slow one.

const { describe, it, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const WebSocket = require('ws');
const h = require('./helpers');

async function chats(url, topts) {
  const a = await h.connect(url, topts);
  const b = await h.connect(url, topts);
  const rb = h.recorder(b);
  assert.deepEqual(await h.ack(a, 'echo', 'hi'), ['hi']);
  a.emit('to-all', { event: 'chat', data: 'hello b' });
  const [ev] = await rb.waitFor('chat');
  assert.deepEqual(h.lead(ev.args, 1), ['hello b']);
  a.disconnect();
  b.disconnect();
}

describe('abuse', { timeout: 90_000 }, () => {
  afterEach(() => h.closeAllClients());

  it('300 half-open TCP connections do not stop a normal client; shutdown still exits 0', async () => {
    const server = await h.startApiServer();
    const idle = [];
    try {
      const connectOne = () => new Promise((resolve, reject) => {
        const s = net.connect({ host: server.host, port: server.port });
        s.on('error', () => { /* the server may drop them; fine */ });
        s.once('connect', () => resolve(s));
        setTimeout(() => reject(new Error('TCP connect timed out')), 10_000);
        idle.push(s);
      });
      const batch = [];
      for (let i = 0; i < 300; i++) batch.push(connectOne());
      await h.withTimeout(Promise.all(batch), 15_000, '300 TCP connects');
      // and some that stop in the middle of a request head / a WebSocket handshake
      for (let i = 0; i < 30; i++) {
        const s = await connectOne();
        s.write(i % 2
          ? 'GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n'
          : 'POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n4abc');
      }
      await chats(server.url, { transports: ['websocket'] });
      await chats(server.url, { transports: ['polling'] });
      await chats(server.url, {});
      const health = await h.fetch(`${server.url}/healthz`);
      assert.equal(health.status, 200);
      await health.text();
      // graceful shutdown must not wait forever for connections that never speak
      h.closeAllClients();
      const r = await server.stop({ grace: 10_000 });
      assert.equal(r.code, 0, `SIGTERM with half-open connections: ${JSON.stringify(r)}\n${server.logs().slice(-3000)}`);
    } finally {
      for (const s of idle) s.destroy();
      if (!server.exitInfo) await server.stop();
    }
  });

  it('a client that stops reading is disconnected; others get every message and keep working', async (t) => {
    const server = await h.startApiServer(); // default heartbeat (25 s): the ping timeout can't be what kicks in
    try {
      // the slow client: raw WebSocket, Socket.IO CONNECT, then it stops reading
      const ws = new WebSocket(`${server.url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`);
      ws.on('error', () => {});
      const inbox = [];
      let wake;
      ws.on('message', (d) => { inbox.push(d.toString()); if (wake) wake(); });
      const nextFrame = (pred, what) => h.withTimeout(new Promise((resolve) => {
        const check = () => {
          const f = inbox.find(pred);
          if (f) { wake = null; resolve(f); }
        };
        wake = check;
        check();
      }), 5000, what);
      await nextFrame((f) => f[0] === '0', 'open');
      ws.send('40');
      const reply = await nextFrame((f) => f.startsWith('40{'), 'CONNECT reply');
      const slowId = JSON.parse(reply.slice(2)).sid;
      ws._socket.pause();

      const sender = await h.connect(server.url, { transports: ['websocket'] });
      const reader = await h.connect(server.url, { transports: ['websocket'] });
      const pollReader = await h.connect(server.url, { transports: ['polling'] });
      const [before] = await h.ack(sender, 'sockets-in', slowId);
      assert.deepEqual(before, [slowId], 'the slow client is connected before the flood');
      const received = { sender: [], reader: [], pollReader: [] };
      sender.on('blob', (d) => received.sender.push(d.i));
      reader.on('blob', (d) => received.reader.push(d.i));
      pollReader.on('blob', (d) => received.pollReader.push(d.i));

      // Bursts stay well under the 1 MiB per-connection outbound queue (10 × 50 KB), and the
      // test waits for the reading clients between bursts, so only the client that stopped
      // reading falls behind: kernel buffers, then its queue, fill up, and it must be dropped.
      const pad = 'x'.repeat(50_000);
      let sent = 0;
      let gone = false;
      const deadline = Date.now() + 40_000;
      while (!gone && sent < 2000 && Date.now() < deadline) {
        for (let k = 0; k < 10; k++) sender.emit('to-all', { event: 'blob', data: { i: sent++, pad } });
        await h.waitUntil(() => received.reader.length === sent && received.sender.length === sent &&
          received.pollReader.length === sent,
        `readers to get ${sent} blobs (reader ${received.reader.length}, sender ${received.sender.length}, ` +
          `polling ${received.pollReader.length})`, 20_000, 5);
        const [ids] = await h.ack(sender, 'sockets-in', slowId);
        gone = ids.length === 0;
      }
      assert.ok(gone, `the slow client was not disconnected after ${sent} × 50 KB broadcasts (${sent * 50} KB)`);
      t.diagnostic(`slow client dropped after ${sent} × 50 KB broadcasts`);
      const want = Array.from({ length: sent }, (_, i) => i);
      assert.deepEqual(received.reader, want, 'a reading client gets every broadcast, in order');
      assert.deepEqual(received.pollReader, want, 'a polling client gets every broadcast, in order');
      assert.ok(reader.connected && sender.connected && pollReader.connected);
      assert.deepEqual(await h.ack(reader, 'echo', 'still fine'), ['still fine']);
      ws.terminate();
      await chats(server.url, { transports: ['websocket'] });
      // the overflow is counted, not silent
      const metrics = await (await h.fetch(`${server.url}/metrics`)).text();
      const m = /^parlor_outbound_overflows_total\s+(\d+)/m.exec(metrics);
      assert.ok(m, 'metrics have parlor_outbound_overflows_total');
      assert.ok(Number(m[1]) >= 1, `parlor_outbound_overflows_total is ${m[1]}`);
    } finally {
      h.closeAllClients();
      await server.stopAndCheck();
    }
  });
});
