// What the query log leaves out or hides, end to end (issue 19), against a real PostgreSQL:
// - log-sample under pgbench: every line is accounted for exactly (lines in the file = lines
//   counted; counted + sampled out = the Q/P/B/E messages received plus their done lines), and a
//   sampled session is whole: all its lines or none;
// - log-overflow drop behind a writer that does not keep up (a FIFO nobody reads for a while):
//   clients are not paused, every dropped line is counted and reported, and what was written
//   plus what was dropped is again every line;
// - redaction: card-number-like parameters and literals reach no log file, in text or JSON, nor
//   the done lines nor /queries.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { startCluster, PG_BIN, type PgCluster } from '../harness/pg-cluster';
import { run } from '../harness/run';
import { startProxy, type Proxy } from '../harness/proxy';
import { RawClient, enc, errorsIn } from '../harness/wire';
import { parseProm, value as promValue } from '../helpers/prom';
import { waitFor } from '../harness/time';

const PGBENCH = fs.existsSync(path.join(PG_BIN, 'pgbench')) ? path.join(PG_BIN, 'pgbench') : 'pgbench';

let pg: PgCluster;
const proxies: Proxy[] = [];

t.before(async () => {
  pg = await startCluster();
  const init = await run(PGBENCH, ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(pg.port), '-U', 'postgres', 'postgres'], { timeoutMs: 120_000 });
  if (init.code !== 0) throw new Error(`pgbench -i: ${init.stderr}`);
  await pg.psql('create table cards (number text, note text)');
});
t.teardown(async () => {
  for (const p of proxies) await p.stop('SIGKILL').catch(() => {});
  if (pg) await pg.stop();
});

async function launch(args: string[]): Promise<Proxy> {
  const p = await startProxy({ upstreamPort: pg.port, args: ['--admin', '127.0.0.1:0', ...args] });
  proxies.push(p);
  return p;
}

async function adminBase(p: Proxy): Promise<string> {
  const line = await p.waitStderr(/admin server listening admin=http:\/\/127\.0\.0\.1:(\d+)\//);
  return `http://127.0.0.1:${/admin=http:\/\/127\.0\.0\.1:(\d+)\//.exec(line)![1]}`;
}

/** The log's counters and the query messages received, from /metrics. */
async function counts(admin: string) {
  const m = parseProm(await (await fetch(`${admin}/metrics`)).text());
  const messages = ['Q', 'P', 'B', 'E'].map((type) => promValue(m, 'pgscribe_messages_total', { type }));
  return {
    lines: promValue(m, 'pgscribe_log_lines_total'),
    sampledOut: promValue(m, 'pgscribe_log_sampled_out_total'),
    dropped: promValue(m, 'pgscribe_log_dropped_total'),
    messages: messages.reduce((a, b) => a + b, 0),
    /** Q and E: each gets one done line (--log-completions). */
    answered: messages[0]! + messages[3]!,
  };
}

function pgbench(p: Proxy, app: string, args: string[], dir: string) {
  return run(PGBENCH, ['-n', '-h', '127.0.0.1', '-p', String(p.port), '-U', 'postgres', ...args, 'postgres'], { timeoutMs: 120_000, env: { ...process.env, PGAPPNAME: app }, cwd: dir });
}

t.test('log-sample under pgbench: every line accounted for, sampled sessions whole', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-sample-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'full.sql'), 'select 1 as full_marker;\n');
  const p = await launch(['--log-completions', '--log-sample', 'application_name=sampled,rate=0.5']);
  const admin = await adminBase(p);
  const full = await pgbench(p, 'full', ['-M', 'extended', '-c', '2', '-t', '50', '-f', path.join(dir, 'full.sql')], dir);
  t.equal(full.code, 0, full.stderr);
  const beforeSampled = await counts(admin);
  const sampled = await pgbench(p, 'sampled', ['-C', '-S', '-M', 'prepared', '-c', '4', '-t', '50'], dir);
  t.equal(sampled.code, 0, sampled.stderr);
  const c = await counts(admin);
  await p.stop('SIGTERM');
  const lines = p.logLines();
  t.equal(lines.length, c.lines, `lines in the file (${lines.length}) = lines counted`);
  t.equal(c.lines + c.sampledOut + c.dropped, c.messages + c.answered, `counted ${c.lines} + sampled out ${c.sampledOut} + dropped ${c.dropped} = ${c.messages} messages + ${c.answered} done lines`);
  t.equal(c.dropped, 0);

  const byConn = new Map<string, string[]>();
  for (const l of lines) {
    const conn = / conn=(\d+) /.exec(l)![1]!;
    byConn.set(conn, [...(byConn.get(conn) ?? []), l]);
  }
  const fullConns = [...byConn.values()].filter((ls) => ls.some((l) => l.includes('full_marker')));
  t.equal(fullConns.length, 2, 'both sessions no rule matches are there');
  t.ok(fullConns.every((ls) => ls.filter((l) => / E /.test(l)).length === 50), 'with all 50 of their Executes');
  const sampledConns = [...byConn.values()].filter((ls) => !ls.some((l) => l.includes('full_marker')));
  const shapeOf = (ls: string[]) => ls.map((l) => / (Q|P|B|E|done) /.exec(l)![1]).join(',');
  const transactions = sampledConns.filter((ls) => shapeOf(ls) === 'P,B,E,done');
  // 200 sessions at rate 0.5: 100 expected, sd 7; outside 60-140 has a chance below 1e-8.
  t.ok(transactions.length >= 60 && transactions.length <= 140, `${transactions.length} of pgbench's 200 -C sessions written`);
  // pgbench's own session before the run (it reads the scale with a simple query) is sampled like any other.
  const others = sampledConns.filter((ls) => shapeOf(ls) !== 'P,B,E,done');
  t.comment(`setup sessions written: ${others.length}; sampled out: ${c.sampledOut}`);
  t.ok(others.every((ls) => /^Q,done(,Q,done)*$/.test(shapeOf(ls))), `each written session whole: its Parse, Bind, Execute and done line, or pgbench's setup queries (${others.map(shapeOf).join(' | ')})`);
  const sampledRun = c.messages + c.answered - (beforeSampled.messages + beforeSampled.answered);
  t.equal(sampledConns.reduce((a, ls) => a + ls.length, 0) + c.sampledOut - beforeSampled.sampledOut, sampledRun, 'the sampled run: lines written + left out = its messages and done lines');
  t.equal(beforeSampled.sampledOut, 0, 'nothing of the run no rule matches was left out');
});

t.test('log-overflow drop: a writer that falls behind costs lines, counted and reported, never a paused client', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-drop-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const fifo = path.join(dir, 'queries.fifo');
  execFileSync('mkfifo', [fifo]);
  // The reader opens first (pgscribe's open of a FIFO waits for one), then reads nothing for a while.
  const reader = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  t.teardown(() => fs.closeSync(reader));
  const p = await launch(['--log', fifo, '--log-overflow', 'drop', '--log-buffer-bytes', '4096']);
  const admin = await adminBase(p);
  const r = await pgbench(p, 'flood', ['-S', '-M', 'prepared', '-c', '2', '-t', '3000'], dir);
  t.equal(r.code, 0, `pgbench finished with the log not read at all: no client paused (${r.stderr.trim().split('\n').pop()})`);
  await p.waitStderr(/WARN query log is behind: lines dropped in the last second \(log-overflow drop\).* dropped=\d+ dropped_total=\d+/, 5000);
  // Now read everything: what was queued reaches the file.
  let text = '';
  const buf = Buffer.alloc(1 << 16);
  const drain = () => {
    for (;;) {
      let n = 0;
      try {
        n = fs.readSync(reader, buf, 0, buf.length, null);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EAGAIN') return;
        throw e;
      }
      if (n === 0) return;
      text += buf.toString('utf8', 0, n);
    }
  };
  const c = await counts(admin);
  await waitFor(
    async () => {
      drain();
      const m = parseProm(await (await fetch(`${admin}/metrics`)).text());
      return promValue(m, 'pgscribe_log_queued_bytes') === 0 ? true : undefined;
    },
    { timeoutMs: 10_000, timeout: () => 'the queued lines were not written' },
  );
  await new Promise((res) => setTimeout(res, 100));
  drain();
  const lines = text.split('\n').filter((l) => l !== '');
  t.ok(c.dropped > 0, `${c.dropped} lines dropped`);
  t.equal(lines.length, c.lines, `lines read from the FIFO (${lines.length}) = lines counted`);
  t.equal(c.lines + c.dropped, c.messages, `counted ${c.lines} + dropped ${c.dropped} = ${c.messages} messages`);
  t.ok(lines.every((l) => /^\d{4}-\d\d-\d\dT[\d:.]+Z conn=\d+ /.test(l)), 'every line whole');
  const reported = [...p.stderr().matchAll(/dropped=(\d+) dropped_total=(\d+)/g)].map((m) => Number(m[1]));
  t.ok(reported.reduce((a, b) => a + b, 0) <= c.dropped, 'the reports add up to at most the drops so far (the last second may be still open)');
});

/** Card-number-like values: each must reach no log line and no /queries entry. */
const CARDS: readonly string[] = ['4111111111111111', '5500005555555559', '378282246310005', '6011-1111-1111-1117'];
const [VISA, MASTERCARD, AMEX, DISCOVER] = CARDS as [string, string, string, string];

async function sendCards(port: number): Promise<void> {
  const c = await RawClient.connect(port);
  c.write(enc.startup({ user: 'postgres', database: 'postgres' }));
  await c.readUntilReady();
  t.same(errorsIn(await c.query(`insert into cards values ('${VISA}', 'literal')`)), []);
  c.write(Buffer.concat([enc.parse('ins', `insert into cards values ($1, '${DISCOVER}')`), enc.bind('', 'ins', [MASTERCARD]), enc.execute(), enc.sync()]));
  t.same(errorsIn(await c.readUntilReady()), []);
  c.write(Buffer.concat([enc.parse('', 'select count(*) from cards where number = $1 or number = $2'), enc.bind('', '', [AMEX, VISA]), enc.execute(), enc.sync()]));
  t.same(errorsIn(await c.readUntilReady()), []);
  c.end();
}

t.test('redaction: no card number in any log line, text or JSON, done lines or /queries', async (t) => {
  for (const [name, args] of [
    ['text, log-redact cards', ['--log-redact', 'cards']],
    ['json, log-redact cards', ['--log-format', 'json', '--log-redact', '\\bcards\\b']],
    ['text, log-sql normalized', ['--log-sql', 'normalized']],
  ] as const) {
    const p = await launch(['--log-completions', ...args]);
    const admin = await adminBase(p);
    await sendCards(p.port);
    await waitFor(async () => (p.logLines().length >= 10 ? true : undefined), { timeoutMs: 5000, timeout: () => `${name}: ${p.logLines().length} lines` });
    const queries = await (await fetch(`${admin}/queries`)).text();
    await p.stop('SIGTERM');
    const log = p.logLines();
    t.equal(log.length, 10, `${name}: Q, P B E, P B E, each with its done line: ${log.join('\n')}`);
    t.equal(log.filter((l) => /done|"type":"done"/.test(l)).length, 3, `${name}: the done lines`);
    for (const card of CARDS) {
      t.notOk(log.some((l) => l.includes(card)), `${name}: ${card} in no log line`);
      t.notOk(queries.includes(card), `${name}: ${card} not in /queries`);
    }
    t.ok(log.some((l) => /params=1:redacted|"paramCount":1,"redacted":true/.test(l)), `${name}: the parameters as a count`);
    t.ok(queries.includes('insert into cards values'), `${name}: /queries has the statements, in the normal form`);
  }
});
