// The normaliser against pg_stat_statements on a real server: pgbench runs its built-in scripts
// and a script of trickier statements (casts with type modifiers, E'' strings, TRUE/NULL, unary
// and binary minus, ORDER BY / GROUP BY positions, FILTER, dollar quotes, placeholders mixed with
// literals) in -M simple and -M extended. The server logs each statement it ran with its query id
// (compute_query_id, %Q in log_line_prefix), so every text pgbench sent is paired with the entry
// pg_stat_statements made for it, and normalizeSql(sent) must equal that entry's text lower-cased
// with whitespace folded. Comments are taken out of the server's text first: pg_stat_statements
// keeps them, the normaliser drops them (by design). IN lists are not exercised: the normaliser
// collapses them, pg_stat_statements 15 does not.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startCluster, PG_BIN, type PgCluster } from '../harness/pg-cluster';
import { run } from '../harness/run';
import { normalizeSql } from '../../src/insight/fingerprint';

const PGBENCH = fs.existsSync(path.join(PG_BIN, 'pgbench')) ? path.join(PG_BIN, 'pgbench') : 'pgbench';

const CUSTOM = String.raw`\set aid random(1, 100000)
\set bid 1
SELECT abalance FROM pgbench_accounts WHERE aid = :aid AND bid <> -7 LIMIT 1;
SELECT 'x'::varchar(3), E'a\'b', true, null::int, 1.5e3, -.5, CAST(2 AS numeric(10,2)) FROM pgbench_branches WHERE bid = :bid ORDER BY 1;
SELECT a.aid FROM pgbench_accounts a JOIN pgbench_branches b ON b.bid = a.bid WHERE a.aid BETWEEN :aid AND :aid + 10 AND a.abalance <> - 1 AND a.filler IS NOT NULL ORDER BY a.aid DESC, 1 LIMIT 5 OFFSET 0;
SELECT CASE WHEN :aid > 5 THEN 'big' ELSE 'small' END, $$dollar$$, interval '1 day', x'1F'::int, B'101'::int, 2*-3, 4 - -2, :aid-1;
/* lead */ SELECT   count(*) ,  max(aid)   FROM pgbench_accounts WHERE aid < 10   -- tail
;
SELECT "bid", count(*) FILTER (WHERE abalance > 0) FROM pgbench_accounts WHERE aid <= 100 GROUP BY 1 HAVING count(*) > 1;
SELECT 1 FROM pgbench_tellers WHERE tid = :bid AND tbalance IS NOT DISTINCT FROM NULL OR tbalance = -:bid::int OR (tbalance IS NULL) IS TRUE;
`;

/** The 7 statements of pgbench's TPC-B-like script, as the normaliser (and pg_stat_statements) write them. */
const TPCB = [
  'begin',
  'update pgbench_accounts set abalance = abalance + $1 where aid = $2',
  'select abalance from pgbench_accounts where aid = $1',
  'update pgbench_tellers set tbalance = tbalance + $1 where tid = $2',
  'update pgbench_branches set bbalance = bbalance + $1 where bid = $2',
  'insert into pgbench_history (tid, bid, aid, delta, mtime) values ($1, $2, $3, $4, current_timestamp)',
  'end',
];

/** pg_stat_statements' text, comments out, lower-cased, whitespace folded the normaliser's way. */
function canon(q: string): string {
  return q.replace(/\/\*.*?\*\//gs, ' ').replace(/--[^\n]*/g, ' ').toLowerCase().replace(/\s+/g, ' ').trim()
    .replace(/\( /g, '(').replace(/ ([,);])/g, '$1').replace(/;+$/, '');
}

let pg: PgCluster;
let dir: string;

t.before(async () => {
  pg = await startCluster({
    conf: { compute_query_id: 'on', log_min_duration_statement: '0', log_statement: 'none', log_line_prefix: 'qid=%Q app=%a ' },
  });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-insight-'));
  fs.writeFileSync(path.join(dir, 'custom.sql'), CUSTOM);
  const r = await run(PGBENCH, ['-i', '-s', '1', '-q', '-I', 'dtgp'], { env: pg.env(), timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`pgbench -i failed: ${r.stderr}`);
});
t.teardown(async () => {
  if (pg) await pg.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

for (const mode of ['simple', 'extended'] as const) {
  t.test(`pgbench -M ${mode}: normalizeSql(sent) = pg_stat_statements' text`, async (t) => {
    await pg.psql('SELECT pg_stat_statements_reset()');
    const app = `insight_${mode}`;
    const env = { ...pg.env(), PGAPPNAME: app };
    for (const script of [['-b', 'tpcb-like'], ['-b', 'select-only'], ['-f', path.join(dir, 'custom.sql')]]) {
      const r = await run(PGBENCH, ['-n', '-M', mode, '-c', '2', '-t', '5', ...script], { env, timeoutMs: 60_000 });
      t.equal(r.code, 0, `pgbench ${script.join(' ')}: ${r.stderr}`);
    }
    const pgss = new Map<string, string>(JSON.parse(await pg.psql(
      "SELECT coalesce(json_agg(json_build_array(queryid::text, query)), '[]') FROM pg_stat_statements")));

    // Log entries (a statement may span lines) of this run: query id and the text as sent.
    const entry = new RegExp(`^qid=(-?\\d+) app=${app} LOG:  duration: \\S+ ms  (?:statement|execute [^:]*): (.*)$`, 's');
    const pairs = new Map<string, string>(); // sent text -> query id
    for (const e of fs.readFileSync(pg.logFile, 'utf8').split(/\n(?=qid=)/)) {
      const m = entry.exec(e.replace(/\n$/, ''));
      if (m) pairs.set(m[2]!, m[1]!);
    }
    const shapes = new Set<string>();
    for (const [sent, qid] of pairs) {
      const q = pgss.get(qid);
      if (q === undefined) {
        t.fail(`no pg_stat_statements entry for query id ${qid}: ${sent}`);
        continue;
      }
      const mine = normalizeSql(sent);
      t.equal(mine, canon(q), sent);
      shapes.add(mine);
    }
    for (const s of TPCB) t.ok(shapes.has(s), `seen: ${s}`);
    t.ok(shapes.size >= TPCB.length + 7, `${shapes.size} shapes compared (${pairs.size} texts)`);
    if (mode === 'simple') t.ok(pairs.size > shapes.size, 'texts with different literals shared a shape');
  });
}
