/**
 * Runs a write plan (write-plans.ts) and acknowledges the versions it made.
 *
 * In a transaction: BEGIN; lock the target rows FOR UPDATE; the write; read back, in the same
 * transaction, the versions of every row it locked, inserted or changed through a trigger (they are
 * this transaction's own: its locks keep every other writer out until COMMIT); COMMIT. Once the
 * COMMIT's ReadyForQuery arrives, those versions are acknowledged (model.ts): every read sent from
 * then on must show them or later ones. Locked rows of a deleting write that the read-back no
 * longer finds were deleted by it. A transaction that fails rolls back: its inserted ids are marked
 * aborted (never visible to anyone).
 *
 * Some single-family UPDATEs also run outside a transaction, with RETURNING id, ver: their rows'
 * versions are acknowledged at their ReadyForQuery (trigger side effects are then not).
 */
import type { Conn, ExtOptions, Reply } from './conn';
import { DELETED, type Family, type Floor, type Model } from './model';
import { inlineParams } from './reads';
import { FAMILY_TABLE, type Plan } from './write-plans';

export interface WriteEnv {
  model: Model;
  /** Acknowledge these versions (now, or after a lag for writes from elsewhere). */
  ack(floors: Floor[]): void;
  rng: () => number;
}

export interface WriteResult {
  name: string;
  ok: boolean;
  /** Why it did not commit (SQLSTATE or a reason). */
  why: string | null;
  /** The statements sent, for the session's history. */
  sent: string[];
}

/** How a statement goes: simple, or extended through the unnamed or a named statement, text or binary results. */
export function protocolFor(rng: () => number): ExtOptions | null {
  const x = rng();
  if (x < 0.4) return null;
  return { named: x >= 0.7, describe: rng() < 0.5, binary: rng() < 0.1 };
}

export async function send(c: Conn, sql: string, params: string[], how: ExtOptions | null): Promise<Reply> {
  if (how === null) return c.simple(inlineParams(sql, params));
  return c.extended(sql, params, how);
}

function firstError(r: Reply): string | null {
  const e = r.answers.find((a) => a.error !== null);
  return e ? e.error!.code : null;
}

function readbackSql(ids: Map<Family, Set<number>>, whole: Family | undefined): string {
  const parts: string[] = [];
  const fams = new Set<Family>([...ids.keys(), ...(whole ? [whole] : [])]);
  for (const fam of fams) {
    const [table, key] = FAMILY_TABLE[fam];
    const tenant = fam === 'docs' ? '0' : 'tenant';
    const where = fam === whole ? '' : ` WHERE ${key} = ANY('{${[...ids.get(fam)!].join(',')}}'::int[])`;
    parts.push(`SELECT '${fam}', ${key}, ver, ${tenant} FROM ${table}${where}`);
  }
  return parts.join(' UNION ALL ');
}

export async function runPlan(c: Conn, p: Plan, env: WriteEnv): Promise<WriteResult> {
  const { model, rng } = env;
  const sent: string[] = [];
  const res = (ok: boolean, why: string | null): WriteResult => ({ name: p.name, ok, why, sent });
  const how = p.simpleOnly ? null : protocolFor(rng);

  if (p.autocommit !== undefined && rng() < 0.3) {
    const sql = `${p.sql} RETURNING id, ver`;
    sent.push(sql);
    const r = await send(c, sql, p.params, how);
    const err = firstError(r);
    if (err !== null) return res(false, err);
    const fam = p.autocommit;
    env.ack((r.answers[0]?.rows ?? []).map((row) => ({ fam, id: Number(row[0]), ver: Number(row[1]) })));
    return { ...res(true, null), name: `${p.name}-autocommit` };
  }

  const step = async (sql: string, params: string[] = [], h: ExtOptions | null = null): Promise<Reply> => {
    sent.push(params.length > 0 ? `${sql} [${params.join(', ')}]` : sql);
    return send(c, sql, params, h);
  };
  const abort = async (why: string): Promise<WriteResult> => {
    await step('ROLLBACK');
    for (const n of p.inserts) model.row(n.fam, n.id, n.tenant, n.attr).aborted = true;
    return res(false, why);
  };

  let r = await step('BEGIN');
  if (firstError(r) !== null) return abort(firstError(r)!);
  const locked: { fam: Family; id: number; tenant: number; attr: string }[] = [];
  for (const [i, sql] of p.locks.entries()) {
    r = await step(sql);
    const err = firstError(r);
    if (err !== null) return abort(err);
    const rows = r.answers[0]?.rows ?? [];
    if (i === 0 && rows.length === 0) return abort('target gone');
    for (const row of rows) locked.push({ fam: row[0] as Family, id: Number(row[1]), tenant: Number(row[2]), attr: row[3] ?? '' });
  }
  // Rows locked may be someone's insert whose acknowledgement is still on its way: known from now.
  const doomed = locked.filter((l) => p.deletes.includes(l.fam)).map((l) => model.row(l.fam, l.id, l.tenant, l.attr));
  for (const d of [...doomed]) {
    // An item deleted drops out of the materialized view at the next refresh, maybe one in flight.
    const mv = d.fam === 'items' ? model.get('mv', d.id) : undefined;
    if (mv !== undefined) doomed.push(mv);
  }
  if (p.whole === 'mv') {
    // A refresh drops the rows of items deleted since the last one, also those the model does
    // not know yet: an earlier refresh that added one may be acknowledged only after this one
    // removed it (wal mode holds a commit's answer for the stream), and would then leave it
    // standing as present.
    for (const item of model.family('items').values()) {
      if (item.firstDeleteSend !== null) doomed.push(model.get('mv', item.id) ?? model.row('mv', item.id, item.tenant, ''));
    }
  }
  if (doomed.length > 0) model.mayDelete(doomed);

  r = await step(p.sql, p.params, how);
  if (firstError(r) !== null) return abort(firstError(r)!);

  const ids = new Map<Family, Set<number>>();
  const add = (fam: Family, id: number): void => {
    let s = ids.get(fam);
    if (s === undefined) ids.set(fam, (s = new Set()));
    s.add(id);
  };
  for (const l of locked) add(l.fam, l.id);
  for (const n of p.inserts) add(n.fam, n.id);
  for (const e of p.sideEffects) add(e.fam, e.id);
  const rbSql = readbackSql(ids, p.whole);
  const floors: Floor[] = [];
  if (rbSql !== '') {
    r = await step(rbSql);
    if (firstError(r) !== null) return abort(firstError(r)!);
    const found = new Set<string>();
    for (const row of r.answers[0]?.rows ?? []) {
      const fam = row[0] as Family;
      const id = Number(row[1]);
      found.add(`${fam}:${id}`);
      const ins = p.inserts.find((n) => n.fam === fam && n.id === id);
      floors.push({ fam, id, ver: Number(row[2]), tenant: Number(row[3]), attr: ins?.attr ?? '' });
    }
    for (const l of locked) if (p.deletes.includes(l.fam) && !found.has(`${l.fam}:${l.id}`)) floors.push({ fam: l.fam, id: l.id, ver: DELETED });
    if (p.whole !== undefined) {
      for (const row of model.family(p.whole).values()) if (!found.has(`${p.whole}:${row.id}`) && !row.aborted) floors.push({ fam: p.whole, id: row.id, ver: DELETED });
    }
  }
  r = await step('COMMIT');
  if (firstError(r) !== null || r.answers[0]?.tag !== 'COMMIT' || r.status !== 'I') {
    for (const n of p.inserts) model.row(n.fam, n.id, n.tenant, n.attr).aborted = true;
    return res(false, firstError(r) ?? `COMMIT answered ${r.answers[0]?.tag ?? '?'} ${r.status}`);
  }
  env.ack(floors);
  return res(true, null);
}
