/**
 * The two loops besides the clients:
 *  - the admin, a superuser session through pgscribe, changes role defaults under live sessions
 *    (ALTER ROLE app_c SET search_path ...: sessions logged in before keep the old value, new ones
 *    get the new one) and refreshes the materialized view, reading it back in its transaction;
 *  - writes from elsewhere (off unless asked for): a direct connection, past pgscribe, makes
 *    random writes; their versions count from `lagMs` after their COMMIT (the time pgscribe's
 *    change stream may take to see them).
 */
import { sleep } from '../../test/harness/time';
import type { ClientContext } from './client';
import { Conn } from './conn';
import type { Floor } from './model';
import { SUPERUSER } from './schema';
import { randomRoleDefaultChange } from './settings-ops';
import { initialState } from './state';
import { REFRESH_PLAN, randomPlan } from './write-plans';
import { runPlan } from './writes';

export async function adminLoop(ctx: ClientContext, rng: () => number): Promise<void> {
  let c: Conn | null = null;
  while (!ctx.stopping()) {
    await sleep(1000 + rng() * 3000);
    if (ctx.stopping()) break;
    try {
      if (c === null || c.closed) c = await Conn.open(ctx.port, SUPERUSER, {});
      if (rng() < 0.7) {
        const ch = randomRoleDefaultChange(rng);
        await ctx.roleLocks.with(ch.role, async () => {
          const r = await c!.simple(ch.sql);
          const err = r.answers.find((a) => a.error !== null)?.error;
          if (err) {
            ctx.tally.count('admin-errors', `${ch.sql}: ${err.code}`);
            return;
          }
          const d = { ...(ctx.roleDefaults.get(ch.role) ?? {}) };
          if (ch.value === null) delete d[ch.key];
          else d[ch.key] = ch.value;
          ctx.roleDefaults.set(ch.role, d);
          ctx.tally.admin(`alter-role-${ch.key}`);
        });
      } else {
        const r = await runPlan(c, REFRESH_PLAN, { model: ctx.model, rng, ack: (f: Floor[]) => ctx.model.ack(f) });
        ctx.tally.write(r.name, r.ok, r.why);
      }
    } catch (e) {
      ctx.tally.count('admin-errors', (e as Error).message.slice(0, 80));
      c?.destroy();
      c = null;
    }
  }
  c?.close();
}

export async function elsewhereLoop(ctx: ClientContext, directPort: number, lagMs: number, rng: () => number): Promise<void> {
  let c: Conn | null = null;
  const state = initialState(SUPERUSER, {}, {});
  const ack = (f: Floor[]): void => {
    setTimeout(() => ctx.model.ack(f), lagMs);
  };
  while (!ctx.stopping()) {
    await sleep(20 + rng() * 200);
    try {
      if (c === null || c.closed) c = await Conn.open(directPort, SUPERUSER, {});
      const p = randomPlan(rng, state, ctx.model);
      // Not a refresh: what a refresh removes from the materialized view is judged against the
      // rows the model knows when its read-back is checked, and with the acknowledgement delayed
      // by lagMs a refresh acknowledged meanwhile through pgscribe can add a row this one removed,
      // which the model then keeps as present (DIRECT=1 ELSEWHERE=1, seed 1605: 26 false
      // stale-missing in 300 s). A matview is never cached in wal mode, and in ttl mode a write
      // from elsewhere is outside what the cache promises.
      if (p === null || p.whole !== undefined) continue;
      const r = await runPlan(c, p, { model: ctx.model, rng, ack });
      ctx.tally.write(`elsewhere-${r.name}`, r.ok, r.why);
    } catch (e) {
      ctx.tally.count('elsewhere-errors', (e as Error).message.slice(0, 80));
      c?.destroy();
      c = null;
    }
  }
  c?.close();
}
