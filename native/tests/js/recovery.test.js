'use strict';
// Reconnection after a server restart, and connection state recovery after a transport drop
// (recovery is off by default: these servers enable it with --recovery-window).

const { describe, it, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const RECOVERY = ['--recovery-window', '60000'];

describe('reconnection and connection state recovery', { timeout: 60_000 }, () => {
  afterEach(() => h.closeAllClients());

  for (const [tname, topts] of [['websocket', { transports: ['websocket'] }], ['default', {}],
    ['polling', { transports: ['polling'] }]]) {
    it(`the client reconnects by itself after the server restarts on the same port (${tname})`, async () => {
      const first = await h.startApiServer(RECOVERY);
      let second;
      try {
        const s = await h.connect(first.url, {
          ...topts, reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 300,
        });
        const firstId = s.id;
        // With the default transports the client upgrades from polling to WebSocket right
        // after connecting; a restart in the middle of that upgrade is a different case (the
        // client can sit out its ping timeout), so this one waits for the upgrade to settle.
        if (!topts.transports) {
          await h.waitUntil(() => s.io.engine.transport.name === 'websocket' && !s.io.engine.upgrading,
            'the upgrade to WebSocket');
        }
        let connects = 1;
        s.on('connect', () => { connects += 1; });
        const disconnected = h.once(s, 'disconnect');
        await first.stopAndCheck(); // SIGTERM → exit 0
        const [reason] = await disconnected;
        assert.notEqual(reason, 'io server disconnect',
          'a shutting-down server must not send a DISCONNECT packet (it stops the client reconnecting)');
        assert.ok(['transport close', 'transport error', 'ping timeout'].includes(reason), `reason ${reason}`);

        second = await h.startServer(first.bin, ['--listen', `127.0.0.1:${first.port}`, ...RECOVERY]);
        assert.equal(second.port, first.port);
        await h.waitUntil(() => connects >= 2 && s.connected, 'the client to reconnect (second connect event)');
        assert.notEqual(s.id, firstId, 'a new server gives a new socket id');
        assert.equal(s.recovered, false, 'nothing to recover from a different process');
        assert.deepEqual(await h.ack(s, 'echo', 'back again'), ['back again']);
      } finally {
        h.closeAllClients();
        if (!first.exitInfo) await first.stop();
        if (second) await second.stopAndCheck();
      }
    });
  }

  async function recoveryScenario(topts, drop) {
    const server = await h.startApiServer(RECOVERY);
    try {
      const room = h.unique('rec');
      // A reconnects only when told to, so the test controls what happens while it is away.
      const A = await h.connect(server.url, { ...topts, reconnection: false });
      const B = await h.connect(server.url, { transports: ['websocket'] });
      await h.ack(A, 'join', room);
      await h.ack(B, 'join', room);
      const recA = h.recorder(A);
      // A needs one event (with its offset) before the drop
      B.emit('to-room', { room, event: 'warm', data: 'w' });
      await recA.waitFor('warm');
      assert.equal(typeof A._lastOffset, 'string', 'events carry an offset when recovery is on');
      const idBefore = A.id;

      const gone = h.once(A, 'disconnect');
      drop(A);
      await gone;
      // the server notices the drop and takes A out of the room
      await h.waitUntil(async () => !(await h.ack(B, 'sockets-in', room))[0].includes(idBefore),
        'the server to drop A from the room');

      const N = 7;
      for (let i = 0; i < N; i++) {
        B.emit('to-room', { room, event: 'missed', data: { i, bin: i % 3 === 0 ? Buffer.from([i]) : null } });
      }
      await h.ack(B, 'count'); // barrier: all of B's emits are handled

      A.connect();
      await h.waitConnect(A);
      assert.equal(A.recovered, true, 'socket.recovered');
      assert.equal(A.id, idBefore, 'the socket id is kept');

      // rooms restored: a new room event reaches A, after everything missed
      B.emit('to-room', { room, event: 'after', data: 'a' });
      await recA.waitFor('after');
      const names = recA.log.map((e) => e.event);
      assert.deepEqual(names, ['warm', ...Array(N).fill('missed'), 'after'],
        'missed events replayed once, in order, before live ones; nothing delivered twice');
      const missed = recA.events('missed').map((e) => h.normBin(h.lead(e.args, 1)[0]));
      assert.deepEqual(missed, Array.from({ length: N }, (_, i) => ({ i, bin: i % 3 === 0 ? Buffer.from([i]) : null })));
      const [ids] = await h.ack(B, 'sockets-in', room);
      assert.deepEqual(ids, [A.id, B.id].sort());
    } finally {
      h.closeAllClients();
      await server.stopAndCheck();
    }
  }

  it('recovers after the transport drops: same id, rooms, missed events once and in order (websocket)', () =>
    recoveryScenario({ transports: ['websocket'] }, (A) => A.io.engine.close()));

  it('recovers after the TCP connection is cut under the client (websocket)', () =>
    recoveryScenario({ transports: ['websocket'] }, (A) => A.io.engine.transport.ws._socket.destroy()));

  it('recovers after the transport drops (polling)', () =>
    recoveryScenario({ transports: ['polling'] }, (A) => A.io.engine.close()));

  it('no recovery with the defaults (recovery off): a new socket, out of its rooms, nothing replayed', async () => {
    const server = await h.startApiServer();
    try {
      const room = h.unique('norec');
      const A = await h.connect(server.url, { transports: ['websocket'], reconnection: false });
      const B = await h.connect(server.url, { transports: ['websocket'] });
      await h.ack(A, 'join', room);
      const recA = h.recorder(A);
      B.emit('to-room', { room, event: 'warm', data: 'w' });
      const [warm] = await recA.waitFor('warm');
      assert.deepEqual(warm.args, ['w'], 'no offset argument');
      assert.equal(A._pid, undefined);
      const idBefore = A.id;
      const gone = h.once(A, 'disconnect');
      A.io.engine.close();
      await gone;
      await h.waitUntil(async () => !(await h.ack(B, 'sockets-in', room))[0].includes(idBefore),
        'the server to drop A from the room');
      B.emit('to-room', { room, event: 'missed', data: 1 });
      await h.ack(B, 'count'); // barrier
      A.connect();
      await h.waitConnect(A);
      assert.ok(!A.recovered, `socket.recovered is ${A.recovered}`); // undefined: no pid to recover with
      assert.notEqual(A.id, idBefore, 'a new socket id');
      assert.deepEqual((await h.ack(B, 'sockets-in', room))[0], [], 'not back in the room');
      await h.ack(A, 'count'); // a round trip: anything replayed would have arrived by now
      assert.deepEqual(recA.log.map((e) => e.event), ['warm'], 'nothing replayed');
    } finally {
      h.closeAllClients();
      await server.stopAndCheck();
    }
  });

  it('no recovery after a deliberate client disconnect', async () => {
    const server = await h.startApiServer(RECOVERY);
    try {
      const A = await h.connect(server.url, { transports: ['websocket'] });
      const recA = h.recorder(A);
      A.emit('echo', 'x');
      await recA.waitFor('echo');
      const id = A.id;
      A.disconnect();
      A.connect();
      await h.waitConnect(A);
      assert.equal(A.recovered, false);
      assert.notEqual(A.id, id);
    } finally {
      h.closeAllClients();
      await server.stopAndCheck();
    }
  });
});
