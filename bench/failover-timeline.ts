/**
 * The failover timeline of a real run (issue 18: "detection time, first new session on the new
 * primary"), for the README's failover section. `node build/bench/failover-timeline.js`.
 *
 * A primary and one streaming standby (test/harness/pg-replication.ts), pgscribe in front of both
 * with the default health settings, pgbench -M prepared -c 4 writing through it, and a probe that
 * opens a new session every PROBE_EVERY_MS: startup, `select pg_is_in_recovery(),
 * inet_server_port()`, terminate. After LOAD_BEFORE_MS of load the primary crashes (T0:
 * pg_ctl stop -m immediate); PROMOTE_DELAY_MS later (the operator, or Patroni) the standby is
 * promoted (T1: pg_ctl promote -w, and until pg_is_in_recovery() is false). The probe runs on
 * until AFTER_MS past its first session on the new primary.
 *
 * From pgscribe's stderr (each line starts with its ISO timestamp) it takes the lines about the
 * failover; from the probe, the last session on the old primary, the first failure, the first
 * session on the new primary, and every failed attempt's SQLSTATE (a session that waited and
 * then connected is a success, with its wait); from pgbench, how many of its 4 clients aborted.
 * Output: a table of the timeline in ms after T0 on stdout, and everything as JSON in
 * bench/results/failover-YYYY-MM-DD-HHMM-<LABEL>.json.
 *
 * Knobs (environment): HEALTH_INTERVAL_MS (2000), HEALTH_FAILURES (3), PROMOTE_DELAY_MS (1000),
 * HEALTH_LOGIN (`catalog`: checks log in as catalog-user; `probe`: no catalog-user, so the checks
 * are a startup only, as a role that does not exist, and the roles come from the sessions),
 * LABEL (default `interval<ms>-failures<n>`, `-probe` added with HEALTH_LOGIN=probe). health-timeout-ms (1000) and primary-wait-ms
 * (10000) stay at their defaults.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PG_BIN } from '../test/harness/pg-cluster';
import { startReplicaSet, type ReplicaSet } from '../test/harness/pg-replication';
import { MAIN, startProxy, type Proxy } from '../test/harness/proxy';
import { run, type RunResult } from '../test/harness/run';
import { sleep } from '../test/harness/time';
import { RawClient, enc, errorsIn, firstRow } from '../test/harness/wire';
import { envInt, machineInfo, median, repoRoot } from './lib/common';

const HEALTH_INTERVAL_MS = envInt('HEALTH_INTERVAL_MS', 2000);
const HEALTH_FAILURES = envInt('HEALTH_FAILURES', 3);
const PROMOTE_DELAY_MS = envInt('PROMOTE_DELAY_MS', 1000, 0);
/** catalog: health checks log in as catalog-user; probe: no credentials, roles from the sessions. */
const HEALTH_LOGIN = process.env['HEALTH_LOGIN'] === 'probe' ? 'probe' : 'catalog';
const LABEL = process.env['LABEL'] || `interval${HEALTH_INTERVAL_MS}-failures${HEALTH_FAILURES}${HEALTH_LOGIN === 'probe' ? '-probe' : ''}`;
const LOAD_BEFORE_MS = 3000;
const PROBE_EVERY_MS = 50;
const DIRECT_EVERY_MS = 200;
/** The probe goes on this long after its first session on the new primary. */
const AFTER_MS = 3000;
/** A startup may wait primary-wait-ms (10 s) for a primary: give it more. */
const ATTEMPT_TIMEOUT_MS = 15_000;
const PGBENCH = fs.existsSync(path.join(PG_BIN, 'pgbench')) ? path.join(PG_BIN, 'pgbench') : 'pgbench';

/** One new session of the probe. Times are Date.now() values. */
interface Attempt {
  start: number;
  end: number;
  /** ReadyForQuery, then pg_is_in_recovery() false. */
  ok: boolean;
  /** The PostgreSQL port that answered (inet_server_port()), when the query ran. */
  serverPort: number | null;
  inRecovery: boolean | null;
  /** The first ErrorResponse's SQLSTATE; null when there was none (see error). */
  sqlstate: string | null;
  /** What went wrong without a SQLSTATE (a close, a refused connection, a timeout), or the error's message. */
  error: string | null;
}

function medianOf(xs: number[]): number | null {
  const m = median(xs);
  return Number.isNaN(m) ? null : m;
}

async function probeOnce(port: number, host = '127.0.0.1'): Promise<Attempt> {
  const a: Attempt = { start: Date.now(), end: 0, ok: false, serverPort: null, inRecovery: null, sqlstate: null, error: null };
  let c: RawClient | null = null;
  try {
    c = await RawClient.connect(port, host);
    c.write(enc.startup({ user: 'postgres', database: 'postgres', application_name: 'failover-probe' }));
    const startup = await c.readUntilReady(ATTEMPT_TIMEOUT_MS);
    const e = errorsIn(startup)[0];
    if (e !== undefined || startup[startup.length - 1]?.type !== 'Z') {
      a.sqlstate = e?.C ?? null;
      a.error = e?.M ?? 'closed during the startup';
      return a;
    }
    // readUntilReady, not query(): an ErrorResponse followed by a close still gives its SQLSTATE.
    c.write(enc.query('select pg_is_in_recovery()::text, inet_server_port()::text'));
    const r = await c.readUntilReady(ATTEMPT_TIMEOUT_MS);
    const qe = errorsIn(r)[0];
    if (qe !== undefined || r[r.length - 1]?.type !== 'Z') {
      a.sqlstate = qe?.C ?? null;
      a.error = qe?.M ?? 'closed during the query';
      return a;
    }
    const [rec, serverPort] = firstRow(r);
    a.inRecovery = rec === 'true';
    a.serverPort = Number(serverPort);
    a.ok = rec === 'false';
    c.write(enc.terminate());
    return a;
  } catch (err) {
    a.error = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    return a;
  } finally {
    a.end = Date.now();
    c?.sock.destroy();
  }
}

/** A stderr line of pgscribe with its own timestamp (ms) and when this process read it. */
interface OpsLine {
  at: number;
  readAt: number;
  line: string;
}

interface TimelineRow {
  event: string;
  /** ms after T0 (null: did not happen). */
  ms: number | null;
  detail?: string | undefined;
}

async function main(): Promise<void> {
  if (!fs.existsSync(MAIN)) throw new Error('dist/main.js missing: build first');
  const root = repoRoot();
  const loadAtStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const started = new Date();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-failover-bench-'));
  fs.chmodSync(dir, 0o755);
  let rs: ReplicaSet | null = null;
  let proxy: Proxy | null = null;
  const cleanup = async () => {
    await proxy?.stop('SIGTERM', { killAfterMs: 5000 });
    await rs?.stopAll();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    rs = await startReplicaSet({ standbys: 1 });
    const [oldP, newP] = [rs.primary, rs.standbys[0]!];
    await oldP.psql('create table t (id bigserial primary key, at timestamptz not null default now(), who text)');
    await newP.catchUpWith(oldP);
    const oldNode = `127.0.0.1:${oldP.port}`;
    const newNode = `127.0.0.1:${newP.port}`;

    const ops: OpsLine[] = [];
    const logPath = path.join(dir, 'queries.log');
    proxy = await startProxy({
      upstreamPort: null,
      detached: true,
      args: [
        '--upstream', `${oldNode},${newNode}`,
        ...(HEALTH_LOGIN === 'probe' ? ['--health-user', 'no_such_prober'] : ['--catalog-user', 'postgres']),
        '--log', logPath,
        '--health-interval-ms', String(HEALTH_INTERVAL_MS),
        '--health-timeout-ms', '1000',
        '--health-failures', String(HEALTH_FAILURES),
        '--primary-wait-ms', '10000',
      ],
      onStderrLine: (line) => {
        const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z) /.exec(line);
        if (m) ops.push({ at: Date.parse(m[1]!), readAt: Date.now(), line });
      },
    });
    const p = proxy;
    // Without credentials no node is known to be primary before a session says so: one does.
    if (HEALTH_LOGIN === 'probe') {
      await p.waitStderr(/new sessions try this one/, 15_000);
      const c = await RawClient.connect(p.port);
      c.write(enc.startup({ user: 'postgres', database: 'postgres' }));
      await c.readUntilReady(15_000);
      c.end();
    }
    await p.waitStderr(new RegExp(`upstream primary chosen: new sessions go to it primary=${oldNode.replace(/\./g, '\\.')}`), 15_000);

    fs.writeFileSync(path.join(dir, 'w.sql'), "insert into t (who) values ('pgbench');\n");
    const benchStart = Date.now();
    let benchEnd = 0;
    const bench: Promise<RunResult> = run(
      PGBENCH,
      ['-n', '-M', 'prepared', '-f', path.join(dir, 'w.sql'), '-c', '4', '-j', '1', '-T', '60',
        '-h', '127.0.0.1', '-p', String(p.port), '-U', 'postgres', 'postgres'],
      { timeoutMs: 120_000 },
    ).then((r) => {
      benchEnd = Date.now();
      return r;
    });

    // The probe: a new session every PROBE_EVERY_MS, on a fixed schedule (not after the last one
    // ended: sessions waiting for a primary pile up, as an application's would).
    const attempts: Attempt[] = [];
    const inFlight = new Set<Promise<void>>();
    let probing = true;
    let firstOnNew: Attempt | null = null;
    const probeLoop = (async () => {
      const t0 = Date.now();
      for (let i = 0; probing; i++) {
        const done: Promise<void> = probeOnce(p.port).then((a) => {
          attempts.push(a);
          if (a.ok && a.serverPort === newP.port && (firstOnNew === null || a.end < firstOnNew.end)) firstOnNew = a;
          inFlight.delete(done);
        });
        inFlight.add(done);
        await sleep(Math.max(0, t0 + (i + 1) * PROBE_EVERY_MS - Date.now()));
      }
    })();

    // The control: the same session straight to the primary of the moment (none between the crash
    // and the end of the promotion), every DIRECT_EVERY_MS: what a session costs without pgscribe.
    const direct: { start: number; ms: number; ok: boolean; node: 'old' | 'new' }[] = [];
    let phase = 'old' as 'old' | 'none' | 'new';
    const directLoop = (async () => {
      while (probing) {
        const node = phase;
        if (node !== 'none') {
          const a = await probeOnce(node === 'old' ? oldP.port : newP.port);
          direct.push({ start: a.start, ms: a.end - a.start, ok: a.ok, node });
        }
        await sleep(DIRECT_EVERY_MS);
      }
    })();

    await sleep(LOAD_BEFORE_MS);
    phase = 'none';
    const T0 = Date.now();
    await oldP.stopImmediate();
    const crashReturned = Date.now();
    await sleep(PROMOTE_DELAY_MS);
    const T1 = Date.now();
    await newP.promote();
    const T1end = Date.now();
    phase = 'new';
    // Until the first session on the new primary, then AFTER_MS more (30 s at most).
    const giveUp = T0 + 30_000;
    while (Date.now() < giveUp && (firstOnNew === null || Date.now() < (firstOnNew as Attempt).end + AFTER_MS)) await sleep(50);
    probing = false;
    await probeLoop;
    await directLoop;
    await Promise.all(inFlight);
    const pb = await bench;

    // --- what happened ---
    const rel = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : ms - T0);
    const after = ops.filter((o) => o.at >= T0 - 100);
    const firstLine = (re: RegExp) => after.find((o) => re.test(o.line)) ?? null;
    const esc = (s: string) => s.replace(/\./g, '\\.');
    const l = {
      sessionRefused: firstLine(new RegExp(`upstream primary did not take the session.* upstream=${esc(oldNode)}`)),
      cannotConnect: firstLine(new RegExp(`cannot connect to upstream.* upstream=${esc(oldNode)}`)),
      noPrimary: firstLine(/ no upstream primary: new sessions wait/),
      oldDown: firstLine(new RegExp(`upstream node is down: .* node=${esc(oldNode)}`)),
      newIsPrimary: firstLine(new RegExp(`upstream node state changed node=${esc(newNode)} from=standby to=primary`)),
      chosen: firstLine(new RegExp(`upstream primary chosen: new sessions go to it primary=${esc(newNode)} previous=${esc(oldNode)}`)),
    };
    const refused08001 = after.filter((o) => /refusing the client with 08001/.test(o.line)).length;
    const reachedStandby = after.filter((o) => /a session reached an upstream node in recovery/.test(o.line));

    attempts.sort((a, b) => a.start - b.start);
    const okOld = attempts.filter((a) => a.ok && a.serverPort === oldP.port);
    const lastOldBeforeT0 = okOld.filter((a) => a.end < T0).pop() ?? null;
    const okOldAfterT0 = okOld.filter((a) => a.end >= T0);
    const failed = attempts.filter((a) => !a.ok);
    const firstFailed = failed[0] ?? null;
    const okNew = attempts.filter((a) => a.ok && a.serverPort === newP.port);
    const onStandbyBeforePromotion = attempts.filter((a) => a.serverPort === newP.port && (a.inRecovery === true || a.end < T1));
    const byCause = new Map<string, number>();
    for (const a of failed) {
      const k = a.sqlstate ?? a.error ?? 'unknown';
      byCause.set(k, (byCause.get(k) ?? 0) + 1);
    }
    // Sessions begun while there was no primary that then connected: how long they waited.
    const gapStart = T0;
    const gapEnd = l.chosen?.at ?? Infinity;
    const waited = okNew.filter((a) => a.start >= gapStart && a.start < gapEnd).map((a) => a.end - a.start);
    const waitMax = waited.length ? Math.max(...waited) : null;
    const waitMin = waited.length ? Math.min(...waited) : null;

    // Session times (startup to the answer), ms: through pgscribe and straight to the node.
    const ms = (xs: Attempt[]) => xs.map((a) => a.end - a.start);
    const sessionMs = {
      viaPgscribeOldPrimaryBeforeT0: medianOf(ms(okOld.filter((a) => a.end < T0))),
      viaPgscribeNewPrimaryStartedAfterChosen: medianOf(ms(okNew.filter((a) => a.start >= gapEnd))),
      directOldPrimaryBeforeT0: medianOf(direct.filter((d) => d.node === 'old' && d.ok).map((d) => d.ms)),
      directNewPrimaryAfterPromotion: medianOf(direct.filter((d) => d.node === 'new' && d.ok).map((d) => d.ms)),
    };
    const aborted = new Set([...pb.stderr.matchAll(/client (\d+) (?:script \d+ )?aborted/g)].map((m) => m[1]));
    const processed = /number of transactions actually processed: (\d+)/.exec(pb.stdout)?.[1] ?? null;
    const pbErrors = [...new Set(pb.stderr.split('\n').filter((x) => /aborted|error|FATAL|server closed/i.test(x)).map((x) => x.replace(/client \d+/, 'client N')))];
    const everything = pb.stderr + pb.stdout + p.stderr() + failed.map((a) => `${a.sqlstate ?? ''} ${a.error ?? ''}`).join('\n');
    const saw25006 = /25006|read-only transaction/.test(everything);

    const timeline: TimelineRow[] = [
      { event: 'last new session on the old primary (ended)', ms: rel(lastOldBeforeT0?.end), detail: lastOldBeforeT0 ? `began ${rel(lastOldBeforeT0.start)}` : undefined },
      { event: 'T0: primary crashed (pg_ctl stop -m immediate begun)', ms: 0 },
      { event: 'pg_ctl stop -m immediate returned', ms: rel(crashReturned) },
      { event: 'first failed probe attempt (ended)', ms: rel(firstFailed?.end), detail: firstFailed ? `began ${rel(firstFailed.start)}: ${firstFailed.sqlstate ?? ''} ${firstFailed.error ?? ''}`.trim() : undefined },
      { event: 'pgscribe: a session refused by the old primary waits', ms: rel(l.sessionRefused?.at) },
      { event: 'pgscribe: "no upstream primary"', ms: rel(l.noPrimary?.at) },
      { event: 'pgbench exited (its clients aborted)', ms: benchEnd ? rel(benchEnd) : null, detail: `${aborted.size}/4 aborted` },
      { event: 'T1: promote begun', ms: rel(T1) },
      { event: 'T1 end: promote returned (out of recovery)', ms: rel(T1end) },
      { event: `pgscribe: old primary down (${HEALTH_FAILURES} failures)`, ms: rel(l.oldDown?.at) },
      { event: 'pgscribe: standby seen as primary', ms: rel(l.newIsPrimary?.at) },
      { event: 'pgscribe: "upstream primary chosen ... previous=old"', ms: rel(l.chosen?.at) },
      {
        event: 'first new session on the new primary (ended)',
        ms: rel(okNew[0] ? Math.min(...okNew.map((a) => a.end)) : null),
        detail: okNew[0] ? `began ${rel(okNew.reduce((x, y) => (y.end < x.end ? y : x)).start)}` : undefined,
      },
    ];

    const out = {
      kind: 'failover-timeline',
      label: LABEL,
      started: started.toISOString(),
      t0: new Date(T0).toISOString(),
      settings: {
        healthIntervalMs: HEALTH_INTERVAL_MS,
        healthTimeoutMs: 1000,
        healthFailures: HEALTH_FAILURES,
        healthLogin: HEALTH_LOGIN,
        primaryWaitMs: 10000,
        promoteDelayMs: PROMOTE_DELAY_MS,
        loadBeforeMs: LOAD_BEFORE_MS,
        probeEveryMs: PROBE_EVERY_MS,
        pgbench: '-M prepared -c 4 -j 1 -T 60, insert into t',
      },
      machine: machineInfo(loadAtStart),
      pgVersion: await newP.psql('show server_version'),
      timelineMsAfterT0: timeline,
      probe: {
        attempts: attempts.length,
        succeeded: attempts.length - failed.length,
        failed: failed.length,
        failedBy: Object.fromEntries(byCause),
        successesOnOldPrimaryEndingAfterT0: okOldAfterT0.length,
        waitedThenConnected: { count: waited.length, minMs: waitMin, maxMs: waitMax },
        reachedStandbyBeforePromotion: onStandbyBeforePromotion.length,
        /** Medians, startup through the probe query's answer. */
        sessionMs,
        directAttempts: direct.map((d) => [rel(d.start), d.ms, d.ok ? d.node : 'failed']),
        failedAttempts: failed.map((a) => ({ startMs: rel(a.start), endMs: rel(a.end), sqlstate: a.sqlstate, error: a.error })),
        /** Every attempt from 500 ms before T0: [began, ended] ms after T0, and 'old', 'new' or its SQLSTATE/error. */
        attemptsAroundT0: attempts
          .filter((a) => a.start >= T0 - 500)
          .map((a) => [rel(a.start), rel(a.end), a.ok ? (a.serverPort === oldP.port ? 'old' : a.serverPort === newP.port ? 'new' : String(a.serverPort)) : (a.sqlstate ?? a.error)]),
      },
      pgscribe: {
        refused08001,
        sessionsClosedOnAStandby: reachedStandby.length,
        /** Its lines from 100 ms before T0, relative times. */
        lines: after.filter((o) => !/ INFO stats /.test(o.line)).slice(0, 60).map((o) => ({ ms: o.at - T0, line: o.line })),
      },
      pgbench: {
        exitCode: pb.code,
        ranMs: (benchEnd || Date.now()) - benchStart,
        abortedClients: aborted.size,
        transactionsProcessed: processed === null ? null : Number(processed),
        errors: pbErrors.slice(0, 10),
      },
      saw25006,
    };

    const stamp = `${started.toISOString().slice(0, 10)}-${started.toISOString().slice(11, 13)}${started.toISOString().slice(14, 16)}`;
    const file = path.join(root, 'bench/results', `failover-${stamp}-${LABEL}.json`);
    fs.writeFileSync(file, JSON.stringify(out, null, 2) + '\n');

    const w = (s: string) => process.stdout.write(s + '\n');
    w(`\nfailover timeline (${LABEL}): health-interval-ms ${HEALTH_INTERVAL_MS}, health-failures ${HEALTH_FAILURES}, health checks ${HEALTH_LOGIN === 'probe' ? 'without credentials' : 'as catalog-user'}, promote ${PROMOTE_DELAY_MS} ms after the crash\n`);
    w('| event | ms after the crash |');
    w('| --- | ---: |');
    for (const r of timeline) w(`| ${r.event}${r.detail ? ` (${r.detail})` : ''} | ${r.ms ?? '-'} |`);
    w('');
    w(`probe: ${attempts.length} attempts, ${failed.length} failed ${JSON.stringify(Object.fromEntries(byCause))}; ` +
      `${waited.length} began with no primary and connected after waiting ${waitMin ?? '-'}-${waitMax ?? '-'} ms; ` +
      `${onStandbyBeforePromotion.length} reached the standby before promotion`);
    w(`session time, median ms (startup to the answer): via pgscribe ${sessionMs.viaPgscribeOldPrimaryBeforeT0} on the old primary before the crash, ` +
      `${sessionMs.viaPgscribeNewPrimaryStartedAfterChosen} on the new one once chosen; direct ${sessionMs.directOldPrimaryBeforeT0} / ${sessionMs.directNewPrimaryAfterPromotion}`);
    w(`pgbench: ${aborted.size}/4 clients aborted, ${processed ?? '?'} transactions, exit ${pb.code}`);
    w(`pgscribe: ${refused08001} refused with 08001, ${reachedStandby.length} sessions closed on a node in recovery`);
    if (saw25006) w('!!! 25006 (read-only transaction) seen: a write reached a node in recovery');
    w(`\nJSON: ${path.relative(root, file)}`);
  } finally {
    await cleanup();
  }
}

main().catch((err: Error) => {
  process.stderr.write(`failover-timeline failed: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
