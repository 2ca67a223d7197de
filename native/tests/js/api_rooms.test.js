'use strict';
// Rooms and broadcast operators through the api_server example: join/leave, to room, to several
// rooms (each socket once), except sender, to all, except room, sockets in a room.
//
// "Did not receive" is checked with a barrier: after the operation under test the same sender
// emits a `to-all` barrier event. The server handles one client's packets in order and each
// connection's outbound queue is FIFO, so a socket that has the barrier would already have the
// earlier event if it had been a target.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

describe('api_server rooms and broadcasts', { timeout: 60_000 }, () => {
  let server;
  before(async () => { server = await h.startApiServer(); });
  after(async () => {
    h.closeAllClients();
    if (server) await server.stopAndCheck();
  });
  afterEach(() => h.closeAllClients());

  // Four clients: c[0] and c[3] over WebSocket, c[1] default (upgrades), c[2] polling only,
  // so room delivery is checked across transports.
  async function four(nsp = '') {
    const opts = [{ transports: ['websocket'] }, {}, { transports: ['polling'] }, { transports: ['websocket'] }];
    const socks = await Promise.all(opts.map((o) => h.connect(`${server.url}${nsp}`, o)));
    return socks.map((s) => ({ s, rec: h.recorder(s) }));
  }

  async function barrier(sender, all) {
    const name = h.unique('barrier');
    sender.s.emit('to-all', { event: name, data: null });
    await Promise.all(all.map((c) => c.rec.waitFor(name)));
  }

  function got(c, event) {
    return c.rec.events(event).map((e) => h.lead(e.args, 1)[0]);
  }

  it('join (one room, several rooms) and leave ack the sorted room list incl. own id', async () => {
    const [a] = await four();
    const r1 = h.unique('b');
    const r2 = h.unique('a');
    const r3 = h.unique('c');
    const [rooms1] = await h.ack(a.s, 'join', r1);
    assert.deepEqual(rooms1, [a.s.id, r1].sort());
    const [rooms2] = await h.ack(a.s, 'join', [r2, r3]);
    assert.deepEqual(rooms2, [a.s.id, r1, r2, r3].sort());
    const [rooms3] = await h.ack(a.s, 'join', r1); // idempotent
    assert.deepEqual(rooms3, [a.s.id, r1, r2, r3].sort());
    const [rooms4] = await h.ack(a.s, 'leave', r2);
    assert.deepEqual(rooms4, [a.s.id, r1, r3].sort());
    const [rooms5] = await h.ack(a.s, 'leave', 'never-joined');
    assert.deepEqual(rooms5, [a.s.id, r1, r3].sort());
  });

  it('sockets-in lists the members of a room, sorted; every socket is in its own-id room', async () => {
    const [a, b, c] = await four();
    const room = h.unique();
    await h.ack(a.s, 'join', room);
    await h.ack(b.s, 'join', room);
    const [ids] = await h.ack(c.s, 'sockets-in', room);
    assert.deepEqual(ids, [a.s.id, b.s.id].sort());
    const [own] = await h.ack(c.s, 'sockets-in', a.s.id);
    assert.deepEqual(own, [a.s.id]);
    const [none] = await h.ack(c.s, 'sockets-in', h.unique('empty'));
    assert.deepEqual(none, []);
    await h.ack(a.s, 'leave', room);
    const [after] = await h.ack(c.s, 'sockets-in', room);
    assert.deepEqual(after, [b.s.id]);
    // leaving on disconnect
    b.s.disconnect();
    await h.waitUntil(async () => (await h.ack(c.s, 'sockets-in', room))[0].length === 0,
      'the disconnected socket leaves its rooms');
  });

  it('to-room reaches the members (sender included if a member) and nobody else', async () => {
    const all = await four();
    const [a, b, c, d] = all;
    const room = h.unique();
    await h.ack(a.s, 'join', room);
    await h.ack(b.s, 'join', room);
    await h.ack(c.s, 'join', room);
    // sender member
    a.s.emit('to-room', { room, event: 'r-ev', data: { n: 1 } });
    await barrier(a, all);
    assert.deepEqual(got(a, 'r-ev'), [{ n: 1 }]);
    assert.deepEqual(got(b, 'r-ev'), [{ n: 1 }]);
    assert.deepEqual(got(c, 'r-ev'), [{ n: 1 }]);
    assert.deepEqual(got(d, 'r-ev'), []);
    // sender not a member
    d.s.emit('to-room', { room, event: 'r-ev2', data: [1, 'x'] });
    await barrier(d, all);
    for (const m of [a, b, c]) assert.deepEqual(got(m, 'r-ev2'), [[1, 'x']]);
    assert.deepEqual(got(d, 'r-ev2'), []);
    // a socket id as room
    d.s.emit('to-room', { room: b.s.id, event: 'direct', data: 'hi b' });
    await barrier(d, all);
    assert.deepEqual(got(b, 'direct'), ['hi b']);
    for (const o of [a, c, d]) assert.deepEqual(got(o, 'direct'), []);
  });

  it('to-rooms reaches the union once per socket', async () => {
    const all = await four();
    const [a, b, c, d] = all;
    const r1 = h.unique();
    const r2 = h.unique();
    const r3 = h.unique();
    await h.ack(a.s, 'join', [r1, r2]); // in two of the rooms
    await h.ack(b.s, 'join', [r2, r3]); // in two of the rooms
    await h.ack(c.s, 'join', r3);
    d.s.emit('to-rooms', { rooms: [r1, r2, r3], event: 'multi', data: 'once' });
    await barrier(d, all);
    assert.deepEqual(got(a, 'multi'), ['once'], 'a (in r1 and r2) gets it exactly once');
    assert.deepEqual(got(b, 'multi'), ['once'], 'b (in r2 and r3) gets it exactly once');
    assert.deepEqual(got(c, 'multi'), ['once']);
    assert.deepEqual(got(d, 'multi'), []);
    // binary through a room broadcast, encoded once for every target
    const buf = Buffer.from('room-bytes');
    d.s.emit('to-rooms', { rooms: [r1, r3], event: 'multi-bin', data: { buf } });
    await barrier(d, all);
    for (const m of [a, b, c]) assert.deepEqual(h.normBin(got(m, 'multi-bin')), [{ buf }]);
    assert.deepEqual(got(d, 'multi-bin'), []);
  });

  it('except-sender: to a room, and to the whole namespace', async () => {
    const all = await four();
    const [a, b, c, d] = all;
    const room = h.unique();
    for (const m of [a, b, c]) await h.ack(m.s, 'join', room);
    a.s.emit('except-sender', { room, event: 'xs-room', data: 1 });
    await barrier(a, all);
    assert.deepEqual(got(a, 'xs-room'), []);
    assert.deepEqual(got(b, 'xs-room'), [1]);
    assert.deepEqual(got(c, 'xs-room'), [1]);
    assert.deepEqual(got(d, 'xs-room'), []);
    a.s.emit('except-sender', { event: 'xs-all', data: 2 });
    await barrier(a, all);
    assert.deepEqual(got(a, 'xs-all'), []);
    for (const o of [b, c, d]) assert.deepEqual(got(o, 'xs-all'), [2]);
  });

  it('to-all reaches every socket of the namespace (sender included) and no other namespace', async () => {
    const all = await four();
    const other = await h.connect(`${server.url}/second`, { transports: ['websocket'] });
    const otherRec = h.recorder(other);
    all[2].s.emit('to-all', { event: 'everyone', data: { hello: 'all' } });
    await Promise.all(all.map((c) => c.rec.waitFor('everyone')));
    for (const c of all) assert.deepEqual(got(c, 'everyone'), [{ hello: 'all' }]);
    // barrier on /second: its own to-all arrives; the / broadcast never does
    other.emit('to-all', { event: 'second-barrier', data: 0 });
    await otherRec.waitFor('second-barrier');
    assert.equal(otherRec.events('everyone').length, 0);
  });

  it('except-room reaches everyone in the namespace except the members of that room', async () => {
    const all = await four();
    const [a, b, c, d] = all;
    const room = h.unique();
    await h.ack(a.s, 'join', room);
    await h.ack(c.s, 'join', room);
    a.s.emit('except-room', { except: room, event: 'xr', data: 'not-room' });
    await barrier(a, all);
    assert.deepEqual(got(a, 'xr'), []);
    assert.deepEqual(got(b, 'xr'), ['not-room']);
    assert.deepEqual(got(c, 'xr'), []);
    assert.deepEqual(got(d, 'xr'), ['not-room']);
  });

  it('rooms are per namespace', async () => {
    const room = h.unique();
    const root = await h.connect(server.url, { transports: ['websocket'] });
    const second = await h.connect(`${server.url}/second`, { transports: ['websocket'] });
    await h.ack(root, 'join', room);
    await h.ack(second, 'join', room);
    const [inRoot] = await h.ack(root, 'sockets-in', room);
    const [inSecond] = await h.ack(second, 'sockets-in', room);
    assert.deepEqual(inRoot, [root.id]);
    assert.deepEqual(inSecond, [second.id]);
  });

  it('a burst of room broadcasts arrives complete and in order at every member', async () => {
    const all = await four();
    const room = h.unique();
    for (const m of all) await h.ack(m.s, 'join', room);
    const N = 300;
    for (let i = 0; i < N; i++) all[0].s.emit('to-room', { room, event: 'seq', data: i });
    await Promise.all(all.map((c) => c.rec.waitFor('seq', N)));
    const want = Array.from({ length: N }, (_, i) => i);
    for (const c of all) assert.deepEqual(got(c, 'seq'), want);
  });
});
