'use strict';
// Cluster mode against a redis-server of the test's own (on a free loopback port, in a temp
// dir), so the test can kill it:
// - durability: with `--appendonly yes --appendfsync always`, messages and read marks acked
//   through three nodes survive a SIGKILL of Redis and of every node; what was sent while
//   Redis was dead was never acked as stored, and is not there after the restart;
// - faults: Redis stops under traffic, the nodes keep serving their own clients and say
//   `degraded`, Redis comes back, and cross-node traffic and presence are right again.

const { describe, it, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { spawn } = require('node:child_process');
const h = require('./helpers');

const T = 5000;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** PING over a raw socket: resolves true when Redis answers PONG. */
function ping(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    const done = (ok) => { sock.destroy(); resolve(ok); };
    sock.setTimeout(500, () => done(false));
    sock.on('error', () => done(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

/** A redis-server of our own; `durable` turns on AOF with an fsync per write. */
async function startRedis(port, dir, durable) {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', ''];
  if (durable) args.push('--appendonly', 'yes', '--appendfsync', 'always');
  const proc = spawn('redis-server', args, { stdio: 'ignore' });
  await h.waitUntil(() => ping(port), `redis-server on ${port} answers`, T);
  return proc;
}

function killed(proc) {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    proc.once('exit', () => resolve());
    proc.kill('SIGKILL');
  });
}

const health = async (node) => (await h.fetch(`${node.url}/healthz`)).text();

describe('cluster mode: a Redis of its own, killed', { timeout: 180_000 }, () => {
  const procs = [];
  const nodes = [];
  afterEach(() => h.closeAllClients());
  after(async () => {
    h.closeAllClients();
    for (const n of nodes) await n.stop();
    for (const p of procs) await killed(p);
  });

  async function cluster(port, keys, ids, prefix) {
    const started = [];
    for (const id of ids) {
      const args = ['--auth-key', keys.pubPath, '--redis', `redis://127.0.0.1:${port}/0`, '--cluster-prefix', prefix, '--node-id', id];
      const node = await h.startRoomServer(args);
      nodes.push(node);
      started.push(node);
    }
    return started;
  }

  async function tab(keys, node, sub) {
    const token = await h.cliToken(keys.keyPath, { sub, name: sub.toUpperCase() });
    // The recorder listens before the CONNECT is answered: `pending-notifications` may
    // come in the same read as it.
    const s = h.client(node.url, { transports: ['websocket'], auth: { token } });
    const rec = h.recorder(s);
    await h.waitConnect(s, T);
    return { s, rec };
  }

  it('acked messages and read marks survive SIGKILL of Redis and of every node; nothing unacked is there', async () => {
    const port = await freePort();
    const dir = h.tempDir('parlor-redis-');
    let redis = await startRedis(port, dir, true);
    procs.push(redis);
    const keys = await h.keygen();
    const prefix = `durable-${process.pid}`;
    const three = await cluster(port, keys, ['d1', 'd2', 'd3'], prefix);
    const room = 'ledger';
    const acked = [];
    for (const [i, node] of three.entries()) {
      const t = await tab(keys, node, `writer${i}`);
      t.s.emit('join', { username: `W${i}`, room });
      await t.rec.waitFor('room-info', 1, T);
      for (let m = 0; m < 10; m++) {
        const content = `node ${i} message ${m}`;
        const reply = await h.callWithin(T, t.s, 'send-message', { room, content });
        assert.equal(reply.success, true, JSON.stringify(reply));
        acked.push(content);
      }
    }
    // A notification through d1, read through d2.
    const admin = await h.cliToken(keys.keyPath, { sub: 'root', name: 'Root', admin: true });
    const res = await h.fetch(`${three[0].url}/api/notifications`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${admin}` },
      body: JSON.stringify({ userId: 'nora', title: 'Keep', message: 'me' }),
    });
    assert.equal(res.status, 201);
    const note = await res.json();
    const nora = await tab(keys, three[1], 'nora');
    await nora.rec.waitFor('pending-notifications', 1, T);
    assert.deepEqual(await h.callWithin(T, nora.s, 'notification-read', note.id), { success: true });

    // Redis dies: a message sent now is not acked as stored.
    await killed(redis);
    const late = await tab(keys, three[2], 'late');
    late.s.emit('join', { username: 'Late', room });
    await late.rec.waitFor('room-info', 1, T);
    const refused = await h.callWithin(T, late.s, 'send-message', { room, content: 'sent while Redis was dead' });
    assert.equal(refused.code, 'INTERNAL_ERROR', JSON.stringify(refused));
    h.closeAllClients();
    for (const n of three) await killed(n.proc);

    // Everything comes back: Redis from its AOF, one node.
    redis = await startRedis(port, dir, true);
    procs.push(redis);
    const [back] = await cluster(port, keys, ['d4'], prefix);
    const reader = await tab(keys, back, 'reader');
    reader.s.emit('join', { username: 'Reader', room });
    const [info] = await reader.rec.waitFor('room-info', 1, T);
    const contents = info.args[0].recentMessages.map((m) => m.content);
    assert.deepEqual([...contents].sort(), [...acked].sort(), 'every acked message, and nothing else');
    const again = await tab(keys, back, 'nora');
    const [pending] = await again.rec.waitFor('pending-notifications', 1, T);
    assert.deepEqual(pending.args[0].map((n) => [n.id, n.read]), [[note.id, true]]);
  });

  it('Redis stops under traffic: the nodes serve their own clients, say degraded, and agree again once it is back', async () => {
    const port = await freePort();
    const dir = h.tempDir('parlor-redis-');
    let redis = await startRedis(port, dir, false);
    procs.push(redis);
    const keys = await h.keygen();
    const [one, two] = await cluster(port, keys, ['f1', 'f2'], `faults-${process.pid}`);
    const room = 'weather';
    const ann = await tab(keys, one, 'ann');
    const amy = await tab(keys, one, 'amy');
    const bob = await tab(keys, two, 'bob');
    for (const t of [ann, amy, bob]) await h.callWithin(T, t.s, 'join-room', room);
    await h.waitUntil(async () => {
      const list = ann.rec.events('room-users-update').at(-1);
      return list && list.args[0].length === 3;
    }, 'ann sees all three', T);

    await killed(redis);
    await h.waitUntil(async () => (await health(one)).startsWith('degraded') && (await health(two)).startsWith('degraded'), 'both nodes say degraded', T);
    // Local traffic goes on: amy, on ann's node, sees her typing.
    ann.s.emit('typing-start', { room });
    const [typing] = await amy.rec.waitFor('user-typing', 1, T);
    assert.equal(typing.args[0].user.id, 'ann');

    const downFor = Date.now();
    redis = await startRedis(port, dir, false);
    procs.push(redis);
    await h.waitUntil(async () => (await health(one)) === 'ok' && (await health(two)) === 'ok', 'both nodes are linked again', 10_000);
    const relinked = Date.now() - downFor;
    // Cross-node traffic and presence are right again: a newcomer on node two is seen on
    // node one, and a message from node one reaches bob.
    const cat = await tab(keys, two, 'cat');
    const reply = await h.callWithin(T, cat.s, 'join-room', room);
    assert.deepEqual(reply.users.map((u) => u.id).sort(), ['amy', 'ann', 'bob', 'cat']);
    await ann.rec.waitWhere('user-joined', (e) => e.user.id === 'cat', T);
    ann.s.emit('typing-stop', { room });
    ann.s.emit('typing-start', { room });
    await bob.rec.waitWhere('user-typing', (e) => e.user.id === 'ann' && e.isTyping, T);
    const metrics = await (await h.fetch(`${one.url}/metrics`)).text();
    assert.ok(/parlor_cluster_reconnects_total [1-9]/.test(metrics), metrics);
    assert.ok(relinked < 10_000, `relinked after ${relinked} ms`);
  });
});
