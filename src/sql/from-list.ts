/**
 * FROM lists: the relations a query reads. Every FROM at any depth (subqueries, CTE bodies,
 * parenthesised joins) is followed through its items, joins, aliases and TABLESAMPLE; a FROM list
 * that cannot be followed makes the statement's tables unknown (Facts.uncertain). The scan also
 * marks the words followed by `(` that are not calls (type modifiers after `::`, column alias
 * lists), for the call scan (calls.ts).
 */
import { CAST, COMMA, DOT, LB, LP, OP, QID, RB, RP, SEMI, WORD } from './lexer';
import { FROM_END, JOIN_WORDS, NOT_ALIAS, READ_START } from './keywords';
import { type Facts, type Stmt } from './stmt';
import { addUnique } from '../unique-list';

/** A join starts at i: JOIN, or INNER / LEFT / RIGHT / FULL / CROSS / NATURAL [OUTER] ... JOIN. */
function isJoinStart(s: Stmt, i: number): boolean {
  const v = s.w(i);
  if (v === 'join') return true;
  if (!JOIN_WORDS.has(v) || v === 'outer') return false;
  const n = s.w(i + 1);
  return n === 'join' || JOIN_WORDS.has(n);
}

/** Skips a join condition expression; stops at `,`, a join, the end of the FROM list. */
function skipExpr(s: Stmt, i: number, end: number): number {
  while (i < end) {
    const k = s.k(i);
    if (k === LP || k === LB) { i = s.match[i]! + 1; continue; }
    if (k === RP || k === RB || k === COMMA || k === SEMI) return i;
    if (k === WORD && (FROM_END.has(s.t[i]!.v) || isJoinStart(s, i))) return i;
    i++;
  }
  return i;
}

/** Skips an optional alias (and column alias list) after a FROM item. */
function skipAlias(s: Stmt, i: number): number {
  if (s.w(i) === 'as') {
    i++;
    if (s.k(i) !== WORD && s.k(i) !== QID) return -1;
    i++;
  } else if (s.k(i) === QID || (s.k(i) === WORD && !NOT_ALIAS.has(s.t[i]!.v))) i++;
  else return i;
  if (s.k(i) === LP) { s.notCall[i - 1] = 1; i = s.match[i]! + 1; }
  return i;
}

/** One FROM item at i; returns the index after it, or -1 when not understood. */
function fromItem(s: Stmt, f: Facts, i: number, end: number): number {
  if (s.w(i) === 'only') i++;
  if (s.w(i) === 'lateral') i++;
  const k = s.k(i);
  if (k === LP) {
    const m = s.match[i]!;
    if (m < 0 || m >= end) return -1;
    let q = i + 1;
    while (s.k(q) === LP) q++;
    if (READ_START.has(s.w(q))) {
      // A subquery: its FROM lists are found by the scan of the whole statement.
    } else {
      const r = fromList(s, f, i + 1, m);
      if (r !== m) return -1;
    }
    i = m + 1;
  } else if (s.w(i) === 'rows' && s.w(i + 1) === 'from' && s.k(i + 2) === LP) {
    i = s.match[i + 2]! + 1;
    if (s.w(i) === 'with' && s.w(i + 1) === 'ordinality') i += 2;
  } else {
    const nm = s.name(i);
    if (nm === null) return -1;
    i = nm[1];
    if (s.k(i) === LP) { // a function in FROM; the call itself is judged by the call scan
      i = s.match[i]! + 1;
      if (s.w(i) === 'with' && s.w(i + 1) === 'ordinality') i += 2;
    } else {
      addUnique(f.reads, nm[0]);
      if (s.k(i) === OP && s.t[i]!.v === '*') i++;
    }
  }
  i = skipAlias(s, i);
  if (i < 0) return -1;
  if (s.w(i) === 'tablesample') {
    const nm = s.name(i + 1);
    if (nm === null || s.k(nm[1]) !== LP) return -1;
    s.notCall[nm[1] - 1] = 1; // a sampling method, not a function (it is random: judged below)
    f.volatile = true;
    f.clock = true;
    i = s.skipParens(nm[1]);
    if (s.w(i) === 'repeatable') i = s.skipParens(i + 1);
    if (i < 0) return -1;
  }
  return i;
}

/** A FROM list at i, up to `end`; returns the index where it ends, or -1 when not understood. */
function fromList(s: Stmt, f: Facts, i: number, end: number): number {
  i = fromItem(s, f, i, end);
  while (i >= 0 && i < end) {
    const k = s.k(i);
    if (k === COMMA) { i = fromItem(s, f, i + 1, end); continue; }
    if (isJoinStart(s, i)) {
      while (s.w(i) !== 'join') i++;
      i = fromItem(s, f, i + 1, end);
      if (i < 0) return -1;
      if (s.w(i) === 'on') i = skipExpr(s, i + 1, end);
      else if (s.w(i) === 'using') {
        i = s.skipParens(i + 1);
        if (i < 0) return -1;
        if (s.w(i) === 'as') i += 2;
      }
      continue;
    }
    if (k === RP || k === SEMI || (k === WORD && FROM_END.has(s.t[i]!.v))) return i;
    return -1;
  }
  return i;
}

/** Finds the relations of every FROM list in [a, b) (reads) and the not-a-call positions. */
export function scanFrom(s: Stmt, f: Facts, a: number, b: number): void {
  const owners: number[] = []; // indexes of the open parens enclosing i
  for (let i = a; i < b; i++) {
    const tok = s.t[i]!;
    if (tok.k === LP) { owners.push(i); continue; }
    if (tok.k === RP) { owners.pop(); continue; }
    if (tok.k === CAST) { // a type name follows: numeric(10,2) is not a call
      let j = i + 1;
      while (s.k(j) === WORD || s.k(j) === QID) {
        s.notCall[j] = 1;
        if (s.k(j + 1) !== DOT) break;
        j += 2;
      }
      continue;
    }
    if (tok.k !== WORD || tok.v !== 'from') continue;
    const prev = s.w(i - 1);
    if (prev === 'rows') continue;
    if (prev === 'distinct' && (s.w(i - 2) === 'is' || s.w(i - 2) === 'not')) continue;
    const o = owners.length > 0 ? owners[owners.length - 1]! : -1;
    if (o > a) {
      const fn = s.w(o - 1);
      if (fn === 'extract' || fn === 'substring' || fn === 'trim' || fn === 'overlay') continue;
    }
    const end = o >= 0 ? s.match[o]! : b;
    if (fromList(s, f, i + 1, end) < 0) f.uncertain = true;
  }
}

/**
 * The relations a DELETE ... USING list or a MERGE ... USING source reads, from the index after
 * USING (up to `end`): for MERGE one item before ON, for DELETE a FROM list. Not followed: the
 * statement's reads are uncertain.
 */
export function scanUsing(s: Stmt, f: Facts, i: number, end: number, merge: boolean): void {
  const r = merge ? fromItem(s, f, i, end) : fromList(s, f, i, end);
  if (r < 0 || (merge && s.w(r) !== 'on')) f.uncertain = true;
}
