'use strict';
// socket.io-client against the api_server example (parlor's Rust API), over every transport
// setup a client can pick: default (polling, then upgrade to WebSocket), WebSocket only,
// polling only. Connect, namespaces, emit and ack both ways, binary both ways, events fired the
// moment the socket connects, middleware refusal, server-initiated disconnect.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const TRANSPORTS = {
  default: {},
  websocket: { transports: ['websocket'] },
  polling: { transports: ['polling'] },
};

for (const [tname, topts] of Object.entries(TRANSPORTS)) {
  describe(`api_server over ${tname} transport`, { timeout: 60_000 }, () => {
    let server;
    before(async () => { server = await h.startApiServer(); });
    after(async () => {
      h.closeAllClients();
      if (server) await server.stopAndCheck();
    });
    afterEach(() => h.closeAllClients());

    it('connects to / and uses the expected transport', async () => {
      const s = await h.connect(server.url, topts);
      assert.equal(typeof s.id, 'string');
      assert.ok(s.id.length > 0);
      if (tname === 'default') {
        // starts with polling, then upgrades
        await h.waitUntil(() => s.io.engine.transport.name === 'websocket',
          `upgrade to websocket (transport is ${s.io.engine.transport.name})`);
      } else {
        assert.equal(s.io.engine.transport.name, topts.transports[0]);
        await h.sleep(tname === 'polling' ? 50 : 0);
        assert.equal(s.io.engine.transport.name, topts.transports[0]);
      }
      // still usable after the upgrade
      const reply = await h.ack(s, 'echo', 'after-upgrade');
      assert.deepEqual(reply, ['after-upgrade']);
    });

    it('connects to a second namespace, alone and multiplexed with /', async () => {
      const solo = await h.connect(`${server.url}/second`, topts);
      assert.equal(solo.nsp, '/second');
      assert.deepEqual(await h.ack(solo, 'echo', 'solo'), ['solo']);

      const root = await h.connect(server.url, topts);
      const second = root.io.socket('/second');
      await h.waitConnect(second);
      assert.equal(root.io, second.io, 'one manager, one Engine.IO connection');
      assert.notEqual(root.id, second.id, 'socket ids are per namespace');
      assert.notEqual(root.io.engine.id, root.id, 'socket id is not the Engine.IO sid');

      const recRoot = h.recorder(root);
      const recSecond = h.recorder(second);
      const recSolo = h.recorder(solo);
      // to-all on /second reaches both /second sockets and not /
      second.emit('to-all', { event: 'nsp-ping', data: 'second-only' });
      // echo on / goes only to the / socket
      assert.deepEqual(await h.ack(root, 'echo', 'root'), ['root']);
      const [ev] = await recSecond.waitFor('nsp-ping');
      assert.deepEqual(h.lead(ev.args, 1), ['second-only']);
      await recSolo.waitFor('nsp-ping');
      // barrier on /: a to-all on / sent after the /second broadcast was handled
      await h.ack(second, 'count');
      root.emit('to-all', { event: 'barrier', data: 1 });
      await recRoot.waitFor('barrier');
      assert.equal(recRoot.events('nsp-ping').length, 0, 'namespace / must not see /second broadcasts');
      assert.equal(recSecond.events('barrier').length, 0, '/second must not see / broadcasts');
    });

    it('refuses an unknown namespace with "Invalid namespace"', async () => {
      const s = h.client(`${server.url}/does-not-exist`, topts);
      const [err] = await h.once(s, 'connect_error');
      assert.equal(err.message, 'Invalid namespace');
    });

    it('client → server emit with ack (callback, emitWithAck, timeout flag)', async () => {
      const s = await h.connect(server.url, topts);
      const rec = h.recorder(s);
      const args = [1, 'two', { three: [3, { four: null }] }, null, true, 'ünïcødé ✓ \u2028'];
      const reply = await h.ack(s, 'echo', ...args);
      assert.deepEqual(reply, args, 'ack carries the same arguments');
      const [ev] = await rec.waitFor('echo');
      assert.deepEqual(h.lead(ev.args, args.length), args, 'the echo event carries the same arguments');

      assert.equal(await s.emitWithAck('echo', 'first', 'second'), 'first');
      assert.deepEqual(await s.timeout(5000).emitWithAck('echo', { x: 1 }), { x: 1 });

      // many acks in flight at once, answered each to its own id
      const many = await Promise.all(Array.from({ length: 50 }, (_, i) => h.ack(s, 'echo', i)));
      assert.deepEqual(many, Array.from({ length: 50 }, (_, i) => [i]));
    });

    it('server → client ack (request-ack), answered and timed out', async () => {
      const s = await h.connect(server.url, topts);
      let seen;
      s.on('question', (...args) => {
        seen = args;
        const cb = args[args.length - 1];
        cb('answer', args[0]);
      });
      const [res] = await h.ack(s, 'request-ack', { event: 'question', data: { n: 42 }, timeout: 5000 });
      assert.deepEqual(res, { ok: true, reply: ['answer', { n: 42 }] });
      assert.equal(seen.length, 2, `an event with ack gets no offset argument: ${h.inspectArgs(seen)}`);
      assert.equal(typeof seen[1], 'function');

      let asked = 0;
      s.on('ignored', () => { asked += 1; }); // never acks
      const t0 = Date.now();
      const [res2] = await h.ack(s, 'request-ack', { event: 'ignored', data: 1, timeout: 300 });
      const took = Date.now() - t0;
      assert.deepEqual(res2, { ok: false, error: 'timeout' });
      assert.equal(asked, 1);
      assert.ok(took >= 250, `ack timeout fired too early (${took} ms for 300 ms)`);
      assert.ok(took < 5000, `ack timeout fired too late (${took} ms for 300 ms)`);

      // a late answer after the timeout is ignored, and the socket keeps working
      s.on('late', (_d, cb) => setTimeout(() => cb('too late'), 400));
      const [res3] = await h.ack(s, 'request-ack', { event: 'late', data: 1, timeout: 100 });
      assert.deepEqual(res3, { ok: false, error: 'timeout' });
      await h.sleep(450);
      assert.ok(s.connected, 'a late ack must not break the connection');
      assert.deepEqual(await h.ack(s, 'echo', 'still-here'), ['still-here']);
    });

    it('binary payloads both ways (events, acks, nested, several buffers)', async () => {
      const s = await h.connect(server.url, topts);
      const rec = h.recorder(s);
      const b1 = Buffer.from([0, 1, 2, 3, 255, 254]);
      const b2 = Buffer.alloc(70_000, 0xab);
      const empty = Buffer.alloc(0);
      const nested = { a: { b: b1, list: [1, b2, 'x'] }, plain: 'text', e: empty };

      // client → server binary event with ack → binary ack + binary event back
      const reply = await h.ack(s, 'echo', b1, nested, 'tail');
      assert.deepEqual(h.normBin(reply), [b1, nested, 'tail']);
      const [ev] = await rec.waitFor('echo');
      assert.deepEqual(h.normBin(h.lead(ev.args, 3)), [b1, nested, 'tail']);

      // event without ack
      s.emit('echo', { only: b2 });
      const evs = await rec.waitFor('echo', 2);
      assert.deepEqual(h.normBin(h.lead(evs[1].args, 1)), [{ only: b2 }]);

      // server → client binary event with ack, client acks with binary
      s.on('bin-q', (data, cb) => cb(Buffer.from('pong-bytes'), data));
      const [res] = await h.ack(s, 'request-ack', { event: 'bin-q', data: { buf: b1 }, timeout: 5000 });
      assert.deepEqual(h.normBin(res), { ok: true, reply: [Buffer.from('pong-bytes'), { buf: b1 }] });
    });

    it('events fired the moment the socket connects are never lost (200 × inc, then count)', async () => {
      const s = h.client(server.url, { ...topts, autoConnect: false });
      const counted = new Promise((resolve) => {
        s.on('connect', () => {
          for (let i = 0; i < 200; i++) s.emit('inc');
          s.emit('count', (n) => resolve(n));
        });
      });
      s.connect();
      assert.equal(await h.withTimeout(counted, 10_000, 'count ack'), 200);
      // and emits buffered before CONNECT is even answered are kept too
      const s2 = h.client(server.url, topts);
      for (let i = 0; i < 200; i++) s2.emit('inc');
      const n2 = await h.withTimeout(new Promise((r) => s2.emit('count', r)), 10_000, 'count ack');
      assert.equal(n2, 200);
    });

    it('middleware refusal reaches connect_error with message and data', async () => {
      const s = h.client(server.url, { ...topts, auth: { refuse: 'not today' } });
      const [err] = await h.once(s, 'connect_error');
      assert.equal(err.message, 'refused');
      assert.deepEqual(err.data, { reason: 'not today' });
      assert.equal(s.connected, false);
      // and a normal auth payload is accepted
      const ok = await h.connect(server.url, { ...topts, auth: { user: 'fine' } });
      assert.ok(ok.connected);
    });

    it('server-initiated disconnect ("io server disconnect", no auto-reconnect)', async () => {
      const s = await h.connect(server.url, { ...topts, reconnection: true, reconnectionDelay: 50 });
      const other = await h.connect(server.url, topts);
      const id = s.id;
      const reconnects = [];
      s.io.on('reconnect_attempt', (n) => reconnects.push(n));
      s.emit('disconnect-me');
      const [reason] = await h.once(s, 'disconnect');
      assert.equal(reason, 'io server disconnect');
      await h.sleep(300);
      assert.equal(s.connected, false);
      assert.deepEqual(reconnects, [], 'client must not reconnect after a server disconnect');
      const [ids] = await h.ack(other, 'sockets-in', id);
      assert.deepEqual(ids, [], 'the disconnected socket is gone from its own room');
      assert.ok(other.connected, 'other clients are unaffected');
    });
  });
}

describe('event offsets with and without connection state recovery', { timeout: 30_000 }, () => {
  afterEach(() => h.closeAllClients());

  it('recovery on (--recovery-window): pid in CONNECT, a string offset after the args of events without ack', async () => {
    const server = await h.startApiServer(['--recovery-window', '60000']);
    try {
      const s = await h.connect(server.url, { transports: ['websocket'] });
      assert.equal(typeof s._pid, 'string', 'CONNECT reply carries a pid');
      const rec = h.recorder(s);
      s.emit('echo', 'a', 2);
      const [ev] = await rec.waitFor('echo');
      assert.equal(ev.args.length, 3, h.inspectArgs(ev.args));
      assert.deepEqual(ev.args.slice(0, 2), ['a', 2]);
      assert.equal(typeof ev.args[2], 'string');
      s.emit('echo', 'b');
      const evs = await rec.waitFor('echo', 2);
      assert.notEqual(evs[1].args[1], ev.args[2], 'each event has its own offset');
      // the ack itself carries no offset
      assert.deepEqual(await h.ack(s, 'echo', 'c'), ['c']);
    } finally {
      h.closeAllClients();
      await server.stopAndCheck();
    }
  });

  for (const [name, args] of [['the defaults', []], ['--recovery-window 0', ['--recovery-window', '0']]]) {
    it(`recovery off (${name}): no pid, arguments exactly as sent`, async () => {
      const server = await h.startApiServer(args);
      try {
        const s = await h.connect(server.url, { transports: ['websocket'] });
        assert.equal(s._pid, undefined, 'no pid when recovery is off');
        const rec = h.recorder(s);
        s.emit('echo', 'a', { b: Buffer.from([1]) });
        s.emit('echo', 'text');
        const [ev, ev2] = await rec.waitFor('echo', 2);
        assert.deepEqual(h.normBin(ev.args), ['a', { b: Buffer.from([1]) }]);
        assert.deepEqual(ev2.args, ['text'], 'a string argument is not followed by an offset');
      } finally {
        h.closeAllClients();
        await server.stopAndCheck();
      }
    });
  }
});
