/**
 * One checker client: sessions one after the other through pgscribe, each as a random role with
 * random startup options, doing random reads (judged by the oracle), writes (acknowledged in the
 * model) and changes of its own state, for a random number of operations. All randomness comes
 * from the client's own seeded PRNG, so the same seed gives each client the same choices (not the
 * same interleaving: that is up to the machine).
 */
import { sleep } from '../../test/harness/time';
import { Conn, type Answer, type ExtOptions } from './conn';
import type { Floor, Model } from './model';
import { judge, type Finding } from './oracle';
import { inlineParams, randomRead, type ReadSpec } from './reads';
import { APP_ROLES, SUPERUSER } from './schema';
import { randomSettingOp, randomStartupOptions, type RoleLocks } from './settings-ops';
import type { ShapeOracle } from './shape';
import { describeState, initialState, type SessionState } from './state';
import { protocolFor, runPlan, send } from './writes';
import { randomPlan } from './write-plans';
import type { Tally } from './tally';

export interface Violation {
  kind: string;
  detail: string;
  client: number;
  session: number;
  state: string;
  template: string;
  protocol: string;
  statement: string;
  params: string[];
  answer: string;
  /** The session's last operations, oldest first. */
  history: string[];
}

export interface ClientContext {
  port: number;
  model: Model;
  shapes: ShapeOracle;
  roleDefaults: Map<string, Record<string, string>>;
  roleLocks: RoleLocks;
  tally: Tally;
  /** Reads in flight: client -> start (the model folds history no read can still need). */
  inflight: Map<number, number>;
  stopping(): boolean;
  report(v: Violation): void;
}

const HISTORY = 12;

function protocolName(how: ReturnType<typeof protocolFor>): string {
  if (how === null) return 'simple';
  return `${how.named ? 'named' : 'unnamed'}${how.describe || !how.named ? '+describe' : ''}${how.binary ? '+binary' : ''}`;
}

/** The first rows of an answer, short. */
export function answerText(a: Answer | undefined): string {
  if (a === undefined) return '(nothing)';
  if (a.error) return `ERROR ${a.error.code} ${a.error.message}`;
  const rows = a.rows.slice(0, 12).map((r) => `(${r.map((v) => (v === null ? 'NULL' : v)).join(', ')})`);
  return `${a.rows.length} rows: ${rows.join(' ')}${a.rows.length > 12 ? ' ...' : ''}`;
}

function pickLogin(rng: () => number): string {
  return rng() < 0.1 ? SUPERUSER : APP_ROLES[Math.floor(rng() * APP_ROLES.length)]!;
}

/** How many reads a client keeps repeating (an application's queries, across its sessions). */
const WORKING_SET = 8;

export async function clientLoop(ctx: ClientContext, idx: number, rng: () => number): Promise<void> {
  let sessionNo = 0;
  const recent: { spec: ReadSpec; how: ExtOptions | null }[] = [];
  while (!ctx.stopping()) {
    const login = pickLogin(rng);
    const options = randomStartupOptions(rng);
    const extra: Record<string, string> = Object.keys(options).length === 0 ? {} : { options: Object.entries(options).map(([k, v]) => `-c ${k}=${v}`).join(' ') };
    let opened: { c: Conn; s: SessionState };
    try {
      // Under the role's lock: no ALTER ROLE of it runs between the login and reading its defaults.
      opened = await ctx.roleLocks.with(login, async () => ({
        c: await Conn.open(ctx.port, login, extra),
        s: initialState(login, ctx.roleDefaults.get(login) ?? {}, options),
      }));
    } catch (e) {
      ctx.tally.count('session-errors', (e as Error).message.slice(0, 80));
      await sleep(100);
      continue;
    }
    sessionNo++;
    ctx.tally.sessions++;
    const history: string[] = [`login ${login}${extra['options'] ? ` options='${extra['options']}'` : ''}`];
    const note = (s: string): void => {
      history.push(s);
      if (history.length > HISTORY) history.shift();
    };
    const { c, s } = opened;
    // As applications do: the session's state is mostly set once, first (its tenant, say), then
    // it reads and writes, with a rare change of state on the way. Every change that pgscribe
    // cannot see is also a write of unknown tables to it (whole-database invalidation): were they
    // frequent, few answers would stay cached long enough to be judged.
    const ops = 30 + Math.floor(rng() * 220);
    try {
      if (rng() < 0.5) await changeState(ctx, c, s, rng, note, 'tenant');
      if (rng() < 0.15) await changeState(ctx, c, s, rng, note);
      for (let i = 0; i < ops && !ctx.stopping(); i++) {
        const x = rng();
        if (x < 0.89) await read(ctx, idx, sessionNo, c, s, rng, history, note, recent);
        else if (x < 0.99) await write(ctx, c, s, rng, note);
        else await changeState(ctx, c, s, rng, note);
      }
    } catch (e) {
      ctx.tally.count('session-errors', (e as Error).message.slice(0, 80));
    }
    c.close();
  }
}

async function read(
  ctx: ClientContext, idx: number, sessionNo: number, c: Conn, s: SessionState, rng: () => number,
  history: string[], note: (s: string) => void, recent: { spec: ReadSpec; how: ExtOptions | null }[],
): Promise<void> {
  // Mostly one of the client's recent reads again, as an application repeats its queries: the
  // same statement from many sessions is what a cache shares, rightly or wrongly.
  let spec: ReadSpec;
  let how: ExtOptions | null;
  if (recent.length > 0 && rng() < 0.75) ({ spec, how } = recent[Math.floor(rng() * recent.length)]!);
  else {
    spec = randomRead(rng, s, ctx.model);
    how = protocolFor(rng);
    recent.push({ spec, how });
    if (recent.length > WORKING_SET) recent.shift();
  }
  const snapshot = { ...s };
  const start = ctx.model.tick();
  ctx.inflight.set(idx, start);
  let reply;
  try {
    reply = await send(c, spec.sql, spec.params, how);
  } finally {
    ctx.inflight.delete(idx);
  }
  const end = ctx.model.tick();
  const a: Answer = reply.answers[0] ?? { cols: null, rows: [], tag: null, error: null, binary: false, binaryErrors: [] };
  ctx.tally.read(spec.name, a.error?.code ?? null);
  const j = judge(spec, snapshot, a, start, end, ctx.model);
  if (j.floors.length > 0) ctx.model.ack(j.floors);
  const statement = how === null ? inlineParams(spec.sql, spec.params) : spec.sql;
  note(`read ${spec.name} [${protocolName(how)}] ${statement}${how && spec.params.length ? ` [${spec.params.join(', ')}]` : ''} -> ${answerText(a).slice(0, 160)}`);
  // The direct connection of the shape oracle has no temp table: no shape to compare with then.
  const shape = snapshot.tempShelf ? [] : await ctx.shapes.check(spec.sql, snapshot.searchPath, a);
  const findings: Finding[] = [...j.findings, ...shape];
  const kinds = new Set<string>();
  for (const f of findings) {
    if (kinds.has(f.kind)) continue;
    kinds.add(f.kind);
    ctx.report({
      kind: f.kind,
      detail: findings.filter((x) => x.kind === f.kind).map((x) => x.detail).join('; '),
      client: idx,
      session: sessionNo,
      state: describeState(snapshot),
      template: spec.name,
      protocol: protocolName(how),
      statement,
      params: how === null ? [] : spec.params,
      answer: answerText(a),
      history: [...history],
    });
  }
}

async function write(ctx: ClientContext, c: Conn, s: SessionState, rng: () => number, note: (s: string) => void): Promise<void> {
  const p = randomPlan(rng, s, ctx.model);
  if (p === null) return;
  const r = await runPlan(c, p, { model: ctx.model, rng, ack: (f: Floor[]) => ctx.model.ack(f) });
  ctx.tally.write(r.name, r.ok, r.why);
  note(`write ${r.name} ${r.ok ? 'committed' : `failed (${r.why})`}: ${r.sent.join(' ; ').slice(0, 300)}`);
}

async function changeState(ctx: ClientContext, c: Conn, s: SessionState, rng: () => number, note: (s: string) => void, only?: 'tenant'): Promise<void> {
  const op = randomSettingOp(rng, s, only);
  const how = op.simpleOnly ? null : protocolFor(rng);
  const r = await send(c, op.sql, op.params, how);
  const err = r.answers.find((a) => a.error !== null)?.error ?? null;
  ctx.tally.setting(op.name, err?.code ?? null);
  if (err === null) op.apply(s);
  note(`${op.name} ${op.sql}${op.params.length ? ` [${op.params.join(', ')}]` : ''} -> ${err ? `ERROR ${err.code}` : 'ok'}`);
}
