'use strict';
// Collaborative documents (DESIGN.md §4): join-document / document-state / user-joined-document,
// text-change with server-side OT (Quill-style deltas over plain text, UTF-16 positions),
// convergence of several concurrent editors, errors (VALIDATION past the end, STALE_VERSION,
// NOT_IN_ROOM), cursor-move / cursor-update with cursors shifted by later edits,
// selection-change / selection-update, user-left-document on disconnect.
//
// The editors in the convergence tests are written the way an OT client is: one op in flight,
// remote ops transformed against it, versions from the server. The server's tie-break for two
// inserts at one position is detected first (earlier-applied op first, or the incoming one) and
// the editors use the same; either is fine, as long as the server is consistent.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

const T = 5000;

// ---- plain-text deltas ------------------------------------------------------------------------

const isInsert = (op) => typeof op.insert === 'string';
const isDelete = (op) => op.delete !== undefined;
const opLen = (op) => (isInsert(op) ? op.insert.length : isDelete(op) ? op.delete : op.retain);

class OpIter {
  constructor(ops) { this.ops = ops; this.i = 0; this.off = 0; }
  hasNext() { return this.i < this.ops.length; }
  peekType() {
    if (this.i >= this.ops.length) return 'retain';
    const op = this.ops[this.i];
    return isInsert(op) ? 'insert' : isDelete(op) ? 'delete' : 'retain';
  }
  peekLength() { return this.i >= this.ops.length ? Infinity : opLen(this.ops[this.i]) - this.off; }
  next(n = Infinity) {
    if (this.i >= this.ops.length) return { retain: n };
    const op = this.ops[this.i];
    const left = opLen(op) - this.off;
    const take = Math.min(n, left);
    const off = this.off;
    if (take === left) { this.i++; this.off = 0; } else this.off += take;
    if (isInsert(op)) return { insert: op.insert.slice(off, off + take) };
    if (isDelete(op)) return { delete: take };
    return { retain: take };
  }
}

function push(ops, op) {
  if (opLen(op) === 0) return;
  const last = ops[ops.length - 1];
  if (last && isInsert(last) && isInsert(op)) last.insert += op.insert;
  else if (last && isDelete(last) && isDelete(op)) last.delete += op.delete;
  else if (last && last.retain !== undefined && op.retain !== undefined) last.retain += op.retain;
  else ops.push({ ...op });
}

function chop(ops) {
  if (ops.length && ops[ops.length - 1].retain !== undefined) ops.pop();
  return ops;
}

/** Apply a delta to a string; throws when it reaches past the end. */
function apply(text, delta) {
  let out = '';
  let i = 0;
  for (const op of delta) {
    if (isInsert(op)) out += op.insert;
    else if (isDelete(op)) {
      if (i + op.delete > text.length) throw new Error(`delete past the end: ${JSON.stringify(delta)} on ${JSON.stringify(text)}`);
      i += op.delete;
    } else {
      if (i + op.retain > text.length) throw new Error(`retain past the end: ${JSON.stringify(delta)} on ${JSON.stringify(text)}`);
      out += text.slice(i, i + op.retain);
      i += op.retain;
    }
  }
  return out + text.slice(i);
}

/** Quill's a.transform(b, priority): b rewritten to apply after a; with priority, a's inserts go first. */
function transform(a, b, priority) {
  const ai = new OpIter(a);
  const bi = new OpIter(b);
  const out = [];
  while (ai.hasNext() || bi.hasNext()) {
    if (ai.peekType() === 'insert' && (priority || bi.peekType() !== 'insert')) {
      push(out, { retain: opLen(ai.next()) });
    } else if (bi.peekType() === 'insert') {
      push(out, bi.next());
    } else {
      const n = Math.min(ai.peekLength(), bi.peekLength());
      const ao = ai.next(n);
      const bo = bi.next(n);
      if (isDelete(ao)) continue;
      if (isDelete(bo)) push(out, bo);
      else push(out, { retain: n });
    }
  }
  return chop(out);
}

/** Deterministic PRNG (mulberry32). */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random edit of `text` at code-point boundaries (inserts with emoji, deletes of 1–3 code points). */
function randomEdit(text, rnd) {
  const bounds = [0];
  for (let i = 0; i < text.length;) {
    i += text.codePointAt(i) > 0xffff ? 2 : 1;
    bounds.push(i);
  }
  const pick = (n) => Math.floor(rnd() * n);
  if (text.length === 0 || rnd() < 0.6) {
    const pool = ['a', 'bc', '\u{1F600}', 'é', 'x\u{1F680}y', ' ', 'hello', '\n'];
    const pos = bounds[pick(bounds.length)];
    const ops = [];
    push(ops, { retain: pos });
    push(ops, { insert: pool[pick(pool.length)] });
    return ops;
  }
  const i = pick(bounds.length - 1);
  const j = Math.min(bounds.length - 1, i + 1 + pick(3));
  const ops = [];
  push(ops, { retain: bounds[i] });
  push(ops, { delete: bounds[j] - bounds[i] });
  return ops;
}

/** An OT editor: one op in flight, remote ops transformed against it. */
class Editor {
  constructor(socket, docId, earlierWins) {
    this.s = socket;
    this.docId = docId;
    this.earlierWins = earlierWins;
    this.text = '';
    this.version = 0;
    this.pending = null;
    this.remote = new Map();
    this.ackedAt = null;
    this.inferred = null;
    this.waiters = [];
    this.log = [];
    this.concurrent = 0; // remote ops that had to be transformed against our op in flight
    socket.on('text-change', (p) => {
      this.log.push(p);
      if (p.version > this.version) this.remote.set(p.version, p.delta);
      this.drain();
    });
  }

  async join() {
    const state = new Promise((resolve) => this.s.once('document-state', resolve));
    this.s.emit('join-document', this.docId);
    const st = await h.withTimeout(state, T, 'document-state');
    this.text = st.content;
    this.version = st.version;
    for (const v of [...this.remote.keys()]) if (v <= this.version) this.remote.delete(v);
    this.drain();
    return st;
  }

  drain() {
    for (;;) {
      const next = this.version + 1;
      if (this.pending && this.ackedAt === next) {
        this.pending = null;
        this.ackedAt = null;
        this.version = next;
        continue;
      }
      if (this.remote.has(next)) {
        const d = this.remote.get(next);
        this.remote.delete(next);
        if (this.pending) {
          this.concurrent += 1;
          const mine = this.pending;
          this.text = apply(this.text, transform(mine, d, !this.earlierWins));
          this.pending = transform(d, mine, this.earlierWins);
        } else {
          this.text = apply(this.text, d);
        }
        this.version = next;
        continue;
      }
      // Remote ops arrive in version order; a gap before a later one is our own op, applied
      // (its ack still on the way).
      if (this.pending && this.ackedAt === null && [...this.remote.keys()].some((v) => v > next)) {
        this.ackedAt = next;
        this.inferred = next;
        continue;
      }
      break;
    }
    for (const w of this.waiters.splice(0)) w();
  }

  until(pred, what) {
    if (pred()) return Promise.resolve();
    return h.withTimeout(new Promise((resolve) => {
      const check = () => (pred() ? resolve() : this.waiters.push(check));
      this.waiters.push(check);
    }), T, what);
  }

  async edit(delta) {
    assert.equal(this.pending, null);
    const base = this.version;
    this.text = apply(this.text, delta);
    this.pending = delta;
    const res = await h.callWithin(T, this.s, 'text-change', { docId: this.docId, delta, version: base });
    assert.ok(res && Number.isInteger(res.version) && !('error' in res),
      `text-change ack {version}: ${JSON.stringify(res)} for ${JSON.stringify(delta)} at ${base}`);
    assert.ok(res.version > base);
    if (this.inferred !== null) {
      assert.equal(res.version, this.inferred, 'the ack names the version the gap implied');
      this.inferred = null;
    } else {
      this.ackedAt = res.version;
      this.drain();
    }
    await this.until(() => this.pending === null, `own op settled at version ${res.version}`);
    return res.version;
  }
}

// ---- tests ------------------------------------------------------------------------------------

describe('room service: documents', { timeout: 180_000 }, () => {
  let server;
  let earlierWins = null;
  before(async () => {
    // a high chat-bucket limit: the STALE_VERSION test needs more edits than the op log keeps
    server = await h.startRoomServer(['--rate-limit', '100000', '--typing-rate-limit', '100000']);
  });
  after(async () => {
    h.closeAllClients();
    if (server) await server.stopAndCheck();
  });
  afterEach(() => h.closeAllClients());

  async function member(name, nsp = '') {
    const s = await h.connect(`${server.url}${nsp}`, { auth: { username: name } }, T);
    return { s, rec: h.recorder(s), user: { id: s.id, username: name } };
  }
  async function joinDoc(m, docId) {
    const n = m.rec.events('document-state').length;
    m.s.emit('join-document', docId);
    const evs = await m.rec.waitFor('document-state', n + 1, T);
    return evs[n].args[0];
  }
  async function freshState(docId, nsp = '') {
    const m = await member('Fresh', nsp);
    const st = await joinDoc(m, docId);
    m.s.disconnect();
    return st;
  }
  async function seed(m, docId, text) {
    const st = await joinDoc(m, docId);
    const r = await h.call(m.s, 'text-change', { docId, delta: [{ insert: text }], version: st.version });
    assert.ok(r && Number.isInteger(r.version), JSON.stringify(r));
    return r.version;
  }
  const cursorOf = (st, id) => {
    const e = st.cursors.find((c) => c[0] === id);
    return e && e[1];
  };

  it('join-document: document-state to the joiner, user-joined-document to the others', async () => {
    const docId = h.unique('doc');
    const a = await member('Ann');
    const st = await joinDoc(a, docId);
    assert.equal(st.content, '');
    assert.equal(st.version, 0);
    assert.ok(Array.isArray(st.cursors), `cursors is an array: ${JSON.stringify(st)}`);
    for (const c of st.cursors) {
      assert.ok(Array.isArray(c) && c.length === 2 && typeof c[0] === 'string', `[socketId, {user, position}]: ${JSON.stringify(c)}`);
    }
    const b = await member('Bob');
    const stB = await joinDoc(b, docId);
    const ca = cursorOf(stB, a.s.id);
    assert.ok(ca, `Ann's cursor is listed: ${JSON.stringify(stB.cursors)}`);
    assert.deepEqual(ca, { user: a.user, position: 0 });
    const ujd = await a.rec.waitWhere('user-joined-document', () => true, T);
    assert.deepEqual(ujd, { socketId: b.s.id, user: b.user });
    await h.sync(b.s);
    assert.equal(b.rec.events('user-joined-document').length, 0, 'not to the joiner');
  });

  it('text-change: ack {version}, the others get {delta, author, version}; not the author', async () => {
    const docId = h.unique('tc');
    const a = await member('Ann');
    const b = await member('Bob');
    const c = await member('Cid');
    for (const m of [a, b, c]) await joinDoc(m, docId);
    const r1 = await h.call(a.s, 'text-change', { docId, delta: [{ insert: 'Hello \u{1F600}' }], version: 0 });
    assert.deepEqual(r1, { version: 1 });
    for (const m of [b, c]) {
      const tc = await m.rec.waitWhere('text-change', () => true, T);
      assert.deepEqual(tc, { delta: [{ insert: 'Hello \u{1F600}' }], author: a.user, version: 1 });
    }
    // positions are UTF-16 units: retain past the emoji (2 units)
    const r2 = await h.call(b.s, 'text-change', { docId, delta: [{ retain: 8 }, { insert: '!' }], version: 1 });
    assert.deepEqual(r2, { version: 2 });
    const tc2 = await a.rec.waitWhere('text-change', () => true, T);
    assert.equal(tc2.version, 2);
    assert.deepEqual(tc2.author, b.user);
    assert.equal(apply('Hello \u{1F600}', tc2.delta), 'Hello \u{1F600}!');
    await h.sync(a.s);
    assert.equal(a.rec.events('text-change').length, 1, "the author does not get its own op back");
    const st = await freshState(docId);
    assert.equal(st.content, 'Hello \u{1F600}!');
    assert.equal(st.version, 2);
  });

  it('concurrent ops from one base version are transformed (and the tie-break is consistent)', async () => {
    const docId = h.unique('tie');
    const a = await member('Ann');
    const b = await member('Bob');
    await joinDoc(a, docId);
    await joinDoc(b, docId);
    assert.deepEqual(await h.call(a.s, 'text-change', { docId, delta: [{ insert: 'A' }], version: 0 }), { version: 1 });
    // Bob has not seen Ann's op: his insert at 0 is based on version 0
    assert.deepEqual(await h.call(b.s, 'text-change', { docId, delta: [{ insert: 'B' }], version: 0 }), { version: 2 });
    const st = await freshState(docId);
    assert.ok(st.content === 'AB' || st.content === 'BA', `both inserts kept: ${JSON.stringify(st.content)}`);
    assert.equal(st.version, 2);
    earlierWins = st.content === 'AB';
    // what Ann got is Bob's op transformed against hers
    const tc = await a.rec.waitWhere('text-change', (p) => p && p.version === 2, T);
    assert.equal(apply('A', tc.delta), st.content, `transformed delta ${JSON.stringify(tc.delta)}`);
    // Bob's own view, by the client rule, lands on the same text
    const tcB = await b.rec.waitWhere('text-change', (p) => p && p.version === 1, T);
    assert.equal(apply('B', transform([{ insert: 'B' }], tcB.delta, !earlierWins)), st.content);

    // a concurrent delete and insert
    const docId2 = h.unique('deli');
    const x = await member('X');
    const y = await member('Y');
    const v0 = await seed(x, docId2, 'abcdef');
    await joinDoc(y, docId2);
    await h.call(x.s, 'text-change', { docId: docId2, delta: [{ retain: 1 }, { delete: 4 }], version: v0 }); // "af"
    await h.call(y.s, 'text-change', { docId: docId2, delta: [{ retain: 3 }, { insert: 'XY' }], version: v0 }); // inside the deleted range
    const st2 = await freshState(docId2);
    assert.equal(st2.content, 'aXYf');
    assert.equal(st2.version, v0 + 2);
  });

  it('three editors editing one base version at once converge (no ties)', async () => {
    const docId = h.unique('three');
    const seeder = await member('Seed');
    const v0 = await seed(seeder, docId, '0123456789');
    const eds = [];
    for (const name of ['Ann', 'Bob', 'Cid']) {
      const m = await member(name);
      const ed = new Editor(m.s, docId, earlierWins === null ? true : earlierWins);
      await ed.join();
      assert.equal(ed.text, '0123456789');
      assert.equal(ed.version, v0);
      eds.push(ed);
    }
    const ops = [
      [{ retain: 2 }, { insert: 'A' }],
      [{ retain: 4 }, { delete: 2 }],
      [{ retain: 8 }, { insert: '\u{1F600}' }, { retain: 1 }, { delete: 1 }],
    ];
    const versions = await Promise.all(eds.map((ed, i) => ed.edit(ops[i])));
    assert.deepEqual([...versions].sort((p, q) => p - q), [v0 + 1, v0 + 2, v0 + 3]);
    for (const ed of eds) await ed.until(() => ed.version === v0 + 3, 'every op seen');
    assert.ok(eds.reduce((n, ed) => n + ed.concurrent, 0) > 0, 'some remote op met an op in flight');
    const expected = '01A2367\u{1F600}8';
    for (const ed of eds) assert.equal(ed.text, expected);
    const st = await freshState(docId);
    assert.equal(st.content, expected);
    assert.equal(st.version, v0 + 3);
  });

  it('three editors typing random edits (emoji included) at once end with the server text', async () => {
    assert.notEqual(earlierWins, null, 'the tie-break test ran first');
    const seedNum = Number(process.env.PARLOR_OT_SEED || Date.now() % 1_000_000);
    const docId = h.unique('random');
    const eds = [];
    for (const name of ['Ann', 'Bob', 'Cid']) {
      const m = await member(name);
      const ed = new Editor(m.s, docId, earlierWins);
      await ed.join();
      eds.push(ed);
    }
    const K = 20;
    try {
      await Promise.all(eds.map(async (ed, i) => {
        const rnd = prng(seedNum * 7 + i);
        for (let k = 0; k < K; k++) {
          await ed.edit(randomEdit(ed.text, rnd));
          if (rnd() < 0.3) await new Promise((r) => setImmediate(r));
        }
      }));
      const total = eds.length * K;
      for (const ed of eds) await ed.until(() => ed.version === total, `editor at version ${total}`);
      const st = await freshState(docId);
      assert.equal(st.version, total);
      for (const ed of eds) assert.equal(ed.text, st.content, `an editor's text differs from the server's (seed ${seedNum})`);
      // an observer's view: the broadcasts, applied in version order, rebuild the text
      const texts = eds.map((ed) => ed.text);
      assert.equal(new Set(texts).size, 1);
      const concurrent = eds.reduce((n, ed) => n + ed.concurrent, 0);
      assert.ok(concurrent > 0, 'the editors really did edit concurrently');
    } catch (e) {
      e.message += ` [PARLOR_OT_SEED=${seedNum}]`;
      throw e;
    }
  });

  it('errors: past the end → VALIDATION, bad deltas → VALIDATION, not joined → NOT_IN_ROOM; nothing applied', async () => {
    const docId = h.unique('err');
    const a = await member('Ann');
    const v = await seed(a, docId, 'Hello');
    const bad = [
      ['retain past the end', [{ retain: 6 }, { insert: 'x' }]],
      ['delete past the end', [{ retain: 5 }, { delete: 1 }]],
      ['delete far past the end', [{ delete: 100 }]],
      ['not an array', { insert: 'x' }],
      ['insert a number', [{ insert: 5 }]],
      ['negative retain', [{ retain: -1 }, { insert: 'x' }]],
      ['fractional retain', [{ retain: 1.5 }, { insert: 'x' }]],
      ['unknown op', [{ replace: 'x' }]],
      ['op not an object', ['x']],
    ];
    for (const [what, delta] of bad) {
      const r = await h.call(a.s, 'text-change', { docId, delta, version: v });
      assert.equal(r && r.code, 'VALIDATION', `${what}: ${JSON.stringify(r)}`);
      assert.equal(typeof r.error, 'string');
    }
    for (const [what, payload] of [
      ['negative version', { docId, delta: [{ insert: 'x' }], version: -1 }],
      ['version a string', { docId, delta: [{ insert: 'x' }], version: '1' }],
      ['no version', { docId, delta: [{ insert: 'x' }] }],
      ['no docId', { delta: [{ insert: 'x' }], version: v }],
      ['docId empty', { docId: '', delta: [{ insert: 'x' }], version: v }],
      ['docId 129 units', { docId: 'd'.repeat(129), delta: [{ insert: 'x' }], version: v }],
    ]) {
      const r = await h.call(a.s, 'text-change', payload);
      assert.equal(r && r.code, 'VALIDATION', `${what}: ${JSON.stringify(r)}`);
    }
    const future = await h.call(a.s, 'text-change', { docId, delta: [{ insert: 'x' }], version: v + 5 });
    assert.ok(future && ['VALIDATION', 'STALE_VERSION'].includes(future.code), `a version from the future: ${JSON.stringify(future)}`);

    const outsider = await member('Out');
    const nj = await h.call(outsider.s, 'text-change', { docId, delta: [{ insert: 'x' }], version: v });
    assert.equal(nj && nj.code, 'NOT_IN_ROOM', `not joined: ${JSON.stringify(nj)}`);
    assert.equal((await h.call(outsider.s, 'text-change', { docId: h.unique('nodoc'), delta: [{ insert: 'x' }], version: 0 })).code,
      'NOT_IN_ROOM', 'never joined, unknown doc');

    // a bare docId string only
    const stObj = await h.call(a.s, 'join-document', { docId });
    void stObj; // may ack an error or stay silent; the document is unchanged either way
    const st = await freshState(docId);
    assert.equal(st.content, 'Hello');
    assert.equal(st.version, v);
    // the end is fine
    assert.deepEqual(await h.call(a.s, 'text-change', { docId, delta: [{ retain: 5 }, { insert: '!' }], version: v }), { version: v + 1 });
  });

  it('an op based on a version older than the op log → STALE_VERSION; re-joining recovers', async () => {
    const docId = h.unique('stale');
    const a = await member('Ann');
    await joinDoc(a, docId);
    const N = 1010; // the op log keeps 1000 ops by default
    // In batches of 200: a socket may have at most 256 writes waiting for the store.
    for (let start = 0; start < N; start += 200) {
      const acks = [];
      for (let v = start; v < Math.min(N, start + 200); v++) {
        acks.push(h.callWithin(30_000, a.s, 'text-change', { docId, delta: [{ insert: 'x' }], version: v }));
      }
      const res = await Promise.all(acks);
      res.forEach((r, i) => assert.deepEqual(r, { version: start + i + 1 }, `op ${start + i}`));
    }
    const stale = await h.call(a.s, 'text-change', { docId, delta: [{ insert: 'y' }], version: 0 });
    assert.equal(stale && stale.code, 'STALE_VERSION', JSON.stringify(stale));
    assert.equal(typeof stale.error, 'string');
    // a recent base is still transformed
    assert.deepEqual(await h.call(a.s, 'text-change', { docId, delta: [{ insert: 'z' }], version: N - 1 }), { version: N + 1 });
    const st = await joinDoc(a, docId);
    assert.equal(st.version, N + 1);
    assert.equal(st.content.length, N + 1);
    assert.deepEqual(await h.call(a.s, 'text-change', { docId, delta: [{ insert: 'w' }], version: st.version }), { version: N + 2 });
  });

  it('cursor-move → cursor-update to the others; cursors shift with later edits', async () => {
    const docId = h.unique('cur');
    const a = await member('Ann');
    const b = await member('Bob');
    let v = await seed(b, docId, 'Hello World');
    await joinDoc(a, docId);
    a.s.emit('cursor-move', { docId, position: 5 });
    const cu = await b.rec.waitWhere('cursor-update', () => true, T);
    assert.deepEqual(cu, { socketId: a.s.id, user: a.user, position: 5 });
    await h.sync(a.s);
    assert.equal(a.rec.events('cursor-update').length, 0, 'not to the mover');

    v = (await h.call(b.s, 'text-change', { docId, delta: [{ insert: 'XXX' }], version: v })).version; // before the cursor
    let st = await freshState(docId);
    assert.deepEqual(cursorOf(st, a.s.id), { user: a.user, position: 8 }, JSON.stringify(st.cursors));
    v = (await h.call(b.s, 'text-change', { docId, delta: [{ delete: 2 }], version: v })).version;
    v = (await h.call(b.s, 'text-change', { docId, delta: [{ retain: 9 }, { insert: '\u{1F600}' }], version: v })).version; // after it
    st = await freshState(docId);
    assert.equal(st.content, 'XHello Wo\u{1F600}rld');
    assert.deepEqual(cursorOf(st, a.s.id), { user: a.user, position: 6 }, JSON.stringify(st.cursors));
    // a delete spanning the cursor moves it to the start of the deletion
    v = (await h.call(b.s, 'text-change', { docId, delta: [{ retain: 4 }, { delete: 4 }], version: v })).version;
    st = await freshState(docId);
    assert.deepEqual(cursorOf(st, a.s.id), { user: a.user, position: 4 }, JSON.stringify(st.cursors));
    void v;
  });

  it('selection-change → selection-update to the others', async () => {
    const docId = h.unique('sel');
    const a = await member('Ann');
    const b = await member('Bob');
    await seed(a, docId, 'Select me');
    await joinDoc(b, docId);
    const selection = { index: 2, length: 4 };
    a.s.emit('selection-change', { docId, selection });
    assert.deepEqual(await b.rec.waitWhere('selection-update', () => true, T), { socketId: a.s.id, user: a.user, selection });
    await h.sync(a.s);
    assert.equal(a.rec.events('selection-update').length, 0);
  });

  it('disconnect → user-left-document {socketId} to the others; its cursor is gone', async () => {
    const docId = h.unique('left');
    const a = await member('Ann');
    const b = await member('Bob');
    await joinDoc(a, docId);
    await joinDoc(b, docId);
    b.s.emit('cursor-move', { docId, position: 0 });
    await a.rec.waitWhere('cursor-update', () => true, T);
    const bid = b.s.id;
    b.s.io.engine.close();
    assert.deepEqual(await a.rec.waitWhere('user-left-document', () => true, T), { socketId: bid });
    const st = await freshState(docId);
    assert.equal(cursorOf(st, bid), undefined, `no stale cursor: ${JSON.stringify(st.cursors)}`);
  });

  it('documents on / and /chat are separate', async () => {
    const docId = h.unique('nspdoc');
    const a = await member('Ann', '');
    await seed(a, docId, 'root text');
    const st = await freshState(docId, '/chat');
    assert.equal(st.content, '');
    assert.equal(st.version, 0);
  });
});
