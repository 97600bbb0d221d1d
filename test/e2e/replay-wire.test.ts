// Replay at the wire (issue 20): one extended-protocol session through pgscribe with
// --log-replay, its answers recorded as the client got them; then `pgscribe replay` against a
// fresh copy of the data, through a recording relay, and the answers the replay got compared with
// the original's message by message (type and bytes; only BackendKeyData and ParameterStatus
// values differ between two sessions). The session has named and unnamed statements, binary
// parameters and results, Describe of both kinds, a row-limited portal run to its end, Close,
// Flush, and a pipeline with an error in it (and the Executes the server skips after it).
import t from 'tap';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { startCluster, USERS, type PgCluster } from '../harness/pg-cluster';
import { MAIN } from '../harness/proxy';
import { run } from '../harness/run';
import { enc, i32, normalizeMessages, type BackendMessage } from '../harness/wire';
import { proxyFixture } from '../helpers/fixture';
import type { ReplayReport } from '../../src/replay/report-types';

const USER = USERS.trust.user;
let src: PgCluster;
let dst: PgCluster;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-replay-wire-'));
const fx = proxyFixture({ upstreamPort: () => src.port, user: USER });

t.before(async () => {
  [src, dst] = await Promise.all([startCluster(), startCluster()]);
  const setup = 'create table w(id int primary key, v text); insert into w select g, \'v\' || g from generate_series(1, 20) g';
  for (const pg of [src, dst]) {
    const r = await run('psql', ['-X', '-q', '-h', '127.0.0.1', '-p', String(pg.port), '-U', USER, '-d', 'postgres', '-c', setup]);
    if (r.code !== 0) throw new Error(r.stderr);
  }
});
t.teardown(async () => {
  await fx.cleanup();
  await Promise.all([src?.stop(), dst?.stop()]);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Whole backend messages of a byte stream (the relay's recording), from the first ReadyForQuery on. */
function messagesAfterStartup(bytes: Buffer): BackendMessage[] {
  const out: BackendMessage[] = [];
  let off = 0;
  let started = false;
  while (off + 5 <= bytes.length) {
    const len = bytes.readUInt32BE(off + 1);
    const m = { type: String.fromCharCode(bytes[off]!), body: Buffer.from(bytes.subarray(off + 5, off + 1 + len)) };
    off += 1 + len;
    if (started) out.push(m);
    else if (m.type === 'Z') started = true;
  }
  return out;
}

/** A TCP relay to `port` that records what the server sends on each connection. */
async function recordingRelay(port: number): Promise<{ port: number; recorded: Buffer[][]; close(): void }> {
  const recorded: Buffer[][] = [];
  const server = net.createServer((client) => {
    const rec: Buffer[] = [];
    recorded.push(rec);
    const upstream = net.connect(port, '127.0.0.1');
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      rec.push(Buffer.from(d));
      client.write(d);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('error', () => {});
    upstream.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, recorded, close: () => server.close() };
}

t.test('an extended-protocol session replays with the same answers, message for message', async (t) => {
  const p = await fx.launch(['--log-format', 'json', '--log-replay']);
  const c = await fx.connect(p.port);
  const startup = await c.startup(USER, 'postgres', { application_name: 'wire-replay' });
  t.equal(startup[startup.length - 1]?.type, 'Z', 'session up');
  const got: BackendMessage[] = [];
  const step = async (bytes: Buffer, zs: number): Promise<void> => {
    c.write(bytes);
    got.push(...(await c.readZ(zs)));
  };
  // A named statement, described, then a binary parameter and binary results through a portal
  // read 3 rows at a time to its end, and closed.
  await step(Buffer.concat([enc.parse('s1', 'select id, v from w where id <= $1 order by id', [23]), enc.describe('S', 's1'), enc.sync()]), 1);
  await step(Buffer.concat([
    enc.bind('p1', 's1', [i32(7)], [1], [1, 0]),
    enc.describe('P', 'p1'),
    enc.execute('p1', 3),
    enc.execute('p1', 3),
    enc.execute('p1', 3),
    enc.close('P', 'p1'),
    enc.sync(),
  ]), 1);
  // The unnamed statement, text parameters, Flush before the rest.
  c.write(Buffer.concat([enc.parse('', 'select $1::text || v from w where id = $2', []), enc.flush()]));
  got.push(await c.read());
  await step(Buffer.concat([enc.bind('', '', ['x-', '5']), enc.describe('P', ''), enc.execute(), enc.sync()]), 1);
  // A pipeline with an error: the duplicate key fails, the server skips what follows up to Sync;
  // then a second segment in the same write runs.
  await step(Buffer.concat([
    enc.parse('ins', 'insert into w values ($1, $2)', [23, 25]),
    enc.bind('', 'ins', ['100', 'a']),
    enc.execute(),
    enc.bind('', 'ins', ['100', 'dup']),
    enc.execute(),
    enc.bind('', 'ins', ['101', 'skipped']),
    enc.execute(),
    enc.sync(),
    enc.bind('', 'ins', ['102', 'after']),
    enc.execute(),
    enc.sync(),
  ]), 2);
  await step(Buffer.concat([enc.close('S', 's1'), enc.sync()]), 1);
  await step(enc.query('select count(*), string_agg(v, \',\' order by id) from w where id >= 100'), 1);
  c.write(enc.terminate());
  await c.waitClosed();
  await fx.stopProxy(p);
  t.ok(got.some((m) => m.type === 's'), 'the portal was suspended');
  t.ok(got.some((m) => m.type === 'E'), 'the pipeline had its error');

  const relay = await recordingRelay(dst.port);
  t.teardown(relay.close);
  const json = path.join(dir, 'report.json');
  const r = await run(process.execPath, [MAIN, 'replay', p.logPath, '--target', `127.0.0.1:${relay.port}`, '--speed', 'max', '--json', json, '--quiet'], { timeoutMs: 60_000 });
  t.equal(r.code, 0, `replay: ${r.stderr}`);
  // The relay saw the safety check's own connection, then the session.
  const sessions = relay.recorded.map((chunks) => messagesAfterStartup(Buffer.concat(chunks))).filter((m) => m.length > 0);
  const replayed = sessions[sessions.length - 1] ?? [];
  t.same(normalizeMessages(replayed), normalizeMessages(got), 'the same answers, in the same order, byte for byte');
  const report = JSON.parse(fs.readFileSync(json, 'utf8')) as ReplayReport;
  t.equal(report.statements.changed, 0, 'the comparison agrees: no outcome changed');
  t.equal(report.statements.errors, 1, 'one error, as in the original');
  const dup = report.digests.find((d) => /^insert into w/.test(d.sql));
  t.equal(dup?.original, 4, 'four inserts in the log (one failed, one skipped)');
  t.equal(dup?.replayed, 4);
});
