/**
 * One statement's tokens and the helpers every statement kind reads them with: the matching
 * parenthesis of each paren, names, and the facts the scans of a query collect.
 */
import { COMMA, DOT, LB, LP, OP, QID, RB, RP, WORD, type Tok } from './lexer';
import { renderQuoted } from './names';
import type { SqlClass } from './sql-class';
import type { FactsOut } from './statement-facts';
import { addUnique } from '../unique-list';

/**
 * Classifies the statement [a, b) of s: what PREPARE, DECLARE, EXPLAIN and COPY (query) call for
 * the statement they hold (passed in by classify.ts, which they cannot import back).
 */
export type ClassifyRange = (s: Stmt, a: number, b: number) => SqlClass;

/** What the scans of one statement found. */
export class Facts {
  volatile = false;
  clock = false; // volatile whatever the catalog says: a clock keyword, string or cast, a known function, TABLESAMPLE
  mayWrite = false; // a function with (possible) data side effects
  writeTablesUnknown = false;
  taints = false;
  uncertain = false; // a FROM list we could not follow
  locking = false;
  reads: string[] = [];
  written: string[] = [];
}


/** One statement's tokens, with helpers. Ranges are [a, b) over `t`. */
export class Stmt {
  balanced = true;

  /**
   * match: index of the matching paren/bracket (filled here for [a, b)); notCall: 1 = not a
   * function call; out: the facts of the whole text (statement-facts.ts).
   */
  constructor(readonly t: Tok[], readonly a: number, readonly b: number, readonly match: Int32Array,
    readonly notCall: Uint8Array, readonly out: FactsOut) {
    const stack: number[] = [];
    for (let i = a; i < b; i++) {
      const k = t[i]!.k;
      if (k === LP || k === LB) stack.push(i);
      else if (k === RP || k === RB) {
        const o = stack.pop();
        if (o === undefined || (t[o]!.k === LP) !== (k === RP)) { this.balanced = false; return; }
        this.match[o] = i;
        this.match[i] = o;
      }
    }
    if (stack.length > 0) this.balanced = false;
  }

  /** The word at i (lower case) when it is an unquoted word inside the statement, else ''. */
  w(i: number): string {
    const tok = this.t[i];
    return i < this.b && tok !== undefined && tok.k === WORD ? tok.v : '';
  }

  /** The token kind at i, or -1 outside [a, b). */
  k(i: number): number {
    return i < this.b && i >= this.a ? this.t[i]!.k : -1;
  }

  /** A possibly qualified name at i: [rendered name, index after it], or null. */
  name(i: number): [string, number] | null {
    let out = '';
    for (;;) {
      const tok = this.t[i];
      if (i >= this.b || tok === undefined) return null;
      if (tok.k === WORD) out += tok.v;
      else if (tok.k === QID) out += renderQuoted(tok.v);
      else return null;
      i++;
      if (this.k(i) === DOT) { out += '.'; i++; continue; }
      return [out, i];
    }
  }

  /**
   * The possibly qualified name that ends with the WORD or QID at i (`s.f` for the `f` of
   * `s.f(`), rendered like name(); the token itself alone when nothing qualifies it.
   */
  nameEndingAt(i: number): string {
    let j = i;
    while (this.k(j - 1) === DOT && (this.k(j - 2) === WORD || this.k(j - 2) === QID)) j -= 2;
    const nm = this.name(j);
    return nm === null ? '' : nm[0];
  }

  /** Index after `( ... )` starting at i (which must be LP), or -1. */
  skipParens(i: number): number {
    return this.k(i) === LP ? this.match[i]! + 1 : -1;
  }
}

/** `[TABLE] [ONLY] name [*], ...` of LOCK and TRUNCATE from token j: the names and the index after them. */
export function relationList(s: Stmt, j: number): [string[], number] | null {
  if (s.w(j) === 'table') j++;
  const names: string[] = [];
  for (;;) {
    if (s.w(j) === 'only') j++;
    const nm = s.name(j);
    if (nm === null) return null;
    addUnique(names, nm[0]);
    j = nm[1];
    if (s.k(j) === OP && s.t[j]!.v === '*') j++;
    if (s.k(j) !== COMMA) return [names, j];
    j++;
  }
}
