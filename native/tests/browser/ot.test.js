'use strict';
// The web app's delta code (native/web/src/ot.js) on its own: the diff of a textarea edit
// rebuilds the new text and never splits a surrogate pair, and transform follows the
// server's rule (core/src/app/ot.rs), so concurrent edits converge. Every small edit is tried.

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { pathToFileURL } = require('node:url');

const load = () => import(pathToFileURL(path.join(__dirname, '..', '..', 'web', 'src', 'ot.js')).href);

const INSERTS = ['', 'x', 'é', '😀'];

/** Every one-place edit of `text` a textarea can make (delete 0–2 code points, insert one of INSERTS). */
function edits(text) {
  const bounds = [];
  for (let i = 0; i <= text.length; i += 1) if (i === 0 || !/[\udc00-\udfff]/.test(text[i] || '')) bounds.push(i);
  const out = [];
  for (let b = 0; b < bounds.length; b += 1) {
    for (let del = 0; del <= 2 && b + del < bounds.length; del += 1) {
      for (const insert of INSERTS) out.push(text.slice(0, bounds[b]) + insert + text.slice(bounds[b + del]));
    }
  }
  return out;
}

describe('ot.js', () => {
  it('diff rebuilds the new text and keeps surrogate pairs whole', async () => {
    const { apply, diff } = await load();
    for (const from of ['', 'aa', 'a😀😀b', 'xé😀']) {
      for (const to of edits(from).flatMap(edits)) {
        const d = diff(from, to);
        assert.equal(apply(from, d), to, JSON.stringify({ from, to, d }));
        for (const op of d) if (op.insert) assert.ok(!/^[\udc00-\udfff]|[\ud800-\udbff]$/.test(op.insert), JSON.stringify(d));
      }
    }
    assert.deepEqual(diff('😀', '😁'), [{ insert: '😁' }, { delete: 2 }], 'a changed emoji is replaced whole');
  });

  it('transform makes concurrent edits converge, ties broken as the server does', async () => {
    const { apply, diff, transform } = await load();
    for (const base of ['', 'ab', 'a😀c']) {
      const all = edits(base).map((to) => diff(base, to));
      for (const a of all) {
        for (const b of all) {
          const left = apply(apply(base, a), transform(a, b, true));
          const right = apply(apply(base, b), transform(b, a, false));
          assert.equal(left, right, JSON.stringify({ base, a, b }));
        }
      }
    }
    assert.equal(apply('A', transform([{ insert: 'A' }], [{ insert: 'B' }], true)), 'AB', 'the first insert stays first');
    assert.equal(apply('B', transform([{ insert: 'B' }], [{ insert: 'A' }], false)), 'AB', 'and comes first on the other side');
  });

  it('apply refuses a delta past the end', async () => {
    const { apply } = await load();
    assert.throws(() => apply('ab', [{ retain: 3 }]));
    assert.throws(() => apply('ab', [{ retain: 1 }, { delete: 2 }]));
  });

  it('transformPosition moves a cursor past inserts before it and back over deletes', async () => {
    const { transformPosition } = await load();
    assert.equal(transformPosition([{ insert: 'xy' }], 3), 5);
    assert.equal(transformPosition([{ retain: 3 }, { insert: 'xy' }], 3, true), 3, 'an insert at the cursor stays after it');
    assert.equal(transformPosition([{ retain: 1 }, { delete: 4 }], 3), 1);
    assert.equal(transformPosition([{ retain: 5 }, { insert: 'z' }], 2), 2);
  });
});
