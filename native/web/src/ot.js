// Quill-style deltas over plain text ([{retain}|{insert}|{delete}], lengths in UTF-16 code
// units, which is what JavaScript string indices count), with the same transform rule as
// the server (core/src/app/ot.rs), so a client's view and the server's converge.

const opLen = (op) => (op.insert !== undefined ? op.insert.length : op.retain ?? op.delete);

/** Appends `op` to `ops`, merging with the last op of its kind; an insert goes before a delete. */
function push(ops, op) {
  if (opLen(op) === 0) return;
  const last = ops[ops.length - 1];
  if (last) {
    if (last.retain !== undefined && op.retain !== undefined) { last.retain += op.retain; return; }
    if (last.delete !== undefined && op.delete !== undefined) { last.delete += op.delete; return; }
    if (last.insert !== undefined && op.insert !== undefined) { last.insert += op.insert; return; }
    if (last.delete !== undefined && op.insert !== undefined) {
      ops.pop();
      push(ops, op);
      ops.push(last);
      return;
    }
  }
  ops.push({ ...op });
}

/** A trailing retain changes nothing: dropped, as the server does. */
function chop(ops) {
  const last = ops[ops.length - 1];
  if (last && last.retain !== undefined) ops.pop();
  return ops;
}

/** Walks ops, whole or in pieces; past the end it yields retains. */
class Cursor {
  constructor(ops) { this.ops = ops; this.i = 0; this.off = 0; }
  hasNext() { return this.i < this.ops.length; }
  peekIsInsert() { const op = this.ops[this.i]; return !!op && op.insert !== undefined; }
  peekLen() { const op = this.ops[this.i]; return op ? opLen(op) - this.off : Infinity; }
  next(max = Infinity) {
    const op = this.ops[this.i];
    if (!op) return { retain: max };
    const left = opLen(op) - this.off;
    const n = Math.min(left, max);
    let piece;
    if (op.insert !== undefined) piece = { insert: op.insert.slice(this.off, this.off + n) };
    else if (op.retain !== undefined) piece = { retain: n };
    else piece = { delete: n };
    if (n === left) { this.i += 1; this.off = 0; } else { this.off += n; }
    return piece;
  }
}

/** The text after `delta`; throws when the delta reaches past the end. */
export function apply(text, delta) {
  let at = 0;
  let out = '';
  for (const op of delta) {
    if (op.retain !== undefined) {
      if (at + op.retain > text.length) throw new Error('delta past the end of the text');
      out += text.slice(at, at + op.retain);
      at += op.retain;
    } else if (op.delete !== undefined) {
      if (at + op.delete > text.length) throw new Error('delta past the end of the text');
      at += op.delete;
    } else {
      out += op.insert;
    }
  }
  return out + text.slice(at);
}

/**
 * `b` rewritten to apply after `a` (both made against the same text). With `priority`,
 * `a` came first: where both insert at one position, `a`'s text stays first.
 */
export function transform(a, b, priority) {
  const x = new Cursor(a);
  const y = new Cursor(b);
  const out = [];
  while (x.hasNext() || y.hasNext()) {
    if (x.peekIsInsert() && (priority || !y.peekIsInsert())) {
      push(out, { retain: opLen(x.next()) });
    } else if (y.peekIsInsert()) {
      push(out, y.next());
    } else {
      const n = Math.min(x.peekLen(), y.peekLen());
      const mine = x.next(n);
      const theirs = y.next(n);
      if (mine.delete !== undefined) continue;
      if (theirs.delete !== undefined) push(out, theirs);
      else push(out, { retain: n });
    }
  }
  return chop(out);
}

/** Where position `index` ends up after `delta`; with `priority` an insert exactly there goes after it. */
export function transformPosition(delta, index, priority = false) {
  let offset = 0;
  let pos = index;
  for (const op of delta) {
    if (offset > pos) break;
    if (op.delete !== undefined) {
      pos -= Math.min(op.delete, pos - offset);
      continue;
    }
    if (op.insert !== undefined && (offset < pos || !priority)) pos += op.insert.length;
    offset += opLen(op);
  }
  return pos;
}

const isLow = (c) => c >= 0xdc00 && c <= 0xdfff;

/**
 * The delta that turns `from` into `to`: one retain, delete and insert around the common
 * prefix and suffix (a textarea edit is one contiguous change), never splitting a
 * surrogate pair, so every text on the way stays valid UTF-16.
 */
export function diff(from, to) {
  if (from === to) return [];
  let start = 0;
  const max = Math.min(from.length, to.length);
  while (start < max && from.charCodeAt(start) === to.charCodeAt(start)) start += 1;
  if (start > 0 && start < max && isLow(from.charCodeAt(start))) start -= 1;
  let end = 0;
  while (end < max - start && from.charCodeAt(from.length - 1 - end) === to.charCodeAt(to.length - 1 - end)) end += 1;
  if (end > 0 && isLow(from.charCodeAt(from.length - end))) end -= 1;
  const ops = [];
  push(ops, { retain: start });
  push(ops, { delete: from.length - start - end });
  push(ops, { insert: to.slice(start, to.length - end) });
  return chop(ops);
}
