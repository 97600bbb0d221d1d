// The query log's disk fills up (issue 15, part 3): pgscribe writes its log into a small tmpfs
// mounted here, most of it taken by a filler file, while four sessions run many small queries.
// What must hold: clients pause (backpressure) instead of lines being dropped; pgscribe stays up
// and answers every query right; the operational line says the disk is full, where, and what to
// do; once space returns (the filler is deleted) everything resumes by itself, one line says so,
// and at shutdown the file holds exactly the lines pgscribe counted: one whole line per query
// answered, none lost, none twice, none torn.
//
// Mounting needs root (CI runs as root); elsewhere the test is skipped with that reason.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { clusterAndProxies } from '../helpers/fixture';
import { RawClient, errorsIn, value } from '../harness/wire';
import { sleep } from '../harness/time';
import { USERS } from '../harness/pg-cluster';

const ROOT = process.getuid?.() === 0;
const CLIENTS = 4;
/** Queries per client: about 4 x 400 x 200 bytes = 320 KiB of log, twenty times the room left beside the filler. */
const QUERIES = 400;
/** Free space left beside the filler: the log fills it within the first few hundred queries. */
const FREE_BYTES = 16 * 1024;
const PAD = 'x'.repeat(80);
const sql = (client: number, i: number): string => `select ${i} as n, '${client}:${PAD}' as c`;

if (!ROOT) {
  t.pass('skipped: mounting a small tmpfs for the log needs root (CI runs as root)');
} else {
  const { fx } = clusterAndProxies(t);

  t.test('a full disk pauses clients; when space returns no line is lost, torn or written twice', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-disk-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0755', 'tmpfs', dir]);
    t.teardown(() => {
      // Unmount even when the test failed (a lazy unmount if a file is still open), then the dir.
      try {
        execFileSync('umount', [dir]);
      } catch {
        execFileSync('umount', ['-l', dir]);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    });
    // Take all the space, then give FREE_BYTES back: the log has room for a few dozen lines only.
    const filler = path.join(dir, 'filler');
    const fd = fs.openSync(filler, 'w');
    const block = Buffer.alloc(4096, 0x61);
    let size = 0;
    try {
      for (;;) size += fs.writeSync(fd, block);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
    }
    fs.ftruncateSync(fd, Math.max(0, size - FREE_BYTES));
    fs.closeSync(fd);

    const log = path.join(dir, 'queries.log');
    const p = await fx.launch(['--log', log, '--log-buffer-bytes', '4096']);
    const answered = new Array<number>(CLIENTS).fill(0);
    const wrong: string[] = [];
    const client = async (n: number): Promise<void> => {
      const c = await RawClient.connect(p.port);
      try {
        await c.startup(USERS.trust.user);
        for (let i = 0; i < QUERIES; i++) {
          // Paused while the disk is full: a long bound, the test frees the space within seconds.
          const r = await c.query(sql(n, i), 60_000);
          if (errorsIn(r).length > 0 || value(r) !== String(i)) wrong.push(`client ${n}, query ${i}: ${JSON.stringify(errorsIn(r))} ${value(r)}`);
          answered[n] = i + 1;
        }
      } finally {
        c.end();
      }
    };
    const clients = Array.from({ length: CLIENTS }, (_, n) => client(n));
    const total = (): number => answered.reduce((a, b) => a + b, 0);

    const opsLine = await p.waitStderr(/.*ENOSPC.*/, 30_000);
    t.match(opsLine, /disk is full/, `the ops line says the disk is full: ${opsLine}`);
    t.ok(opsLine.includes(log), 'and names the log file');
    t.match(opsLine, /free space/, 'and says what to do');
    await sleep(500);
    const before = total();
    await sleep(1500);
    const after = total();
    t.ok(before < CLIENTS * QUERIES, `clients stopped short of the end while the disk was full (${before} of ${CLIENTS * QUERIES} answered)`);
    t.equal(after, before, 'and were paused: nothing answered for 1.5 s');
    t.ok(p.alive, 'pgscribe is up');

    fs.unlinkSync(filler);
    await Promise.all(clients);
    t.same(wrong.slice(0, 5), [], 'every answer right, no error');
    t.equal(total(), CLIENTS * QUERIES, 'every query answered once space returned');
    const back = await p.waitStderr(/.*query log is writable again.*/, 10_000);
    t.ok(back.includes(log), `one line says the log recovered: ${back}`);
    t.equal(p.stderr().match(/ENOSPC/g)?.length, 1, 'the problem was said once, not per retry');

    await p.stop('SIGTERM');
    const done = /shutdown complete .*query_log_lines=(\d+)/.exec(p.stderr());
    t.ok(done !== null, 'pgscribe shut down cleanly');
    const text = fs.readFileSync(log, 'utf8');
    t.ok(text.endsWith('\n'), 'the file ends with a whole line');
    const lines = text.slice(0, -1).split('\n');
    t.equal(lines.length, Number(done?.[1]), `the file holds as many lines as pgscribe counted (${done?.[1]})`);
    const seen = new Map<string, number>();
    const torn: string[] = [];
    for (const l of lines) {
      const m = / Q sql=select (\d+) as n, '(\d+):x{80}' as c$/.exec(l);
      if (m === null || !/^\d{4}-\d\d-\d\dT[\d:.]+Z conn=\d+ /.test(l)) torn.push(l);
      else seen.set(`${m[2]}:${m[1]}`, (seen.get(`${m[2]}:${m[1]}`) ?? 0) + 1);
    }
    t.same(torn.slice(0, 3), [], 'every line whole');
    const missing: string[] = [];
    const twice: string[] = [];
    for (let n = 0; n < CLIENTS; n++) {
      for (let i = 0; i < QUERIES; i++) {
        const k = seen.get(`${n}:${i}`) ?? 0;
        if (k === 0) missing.push(`${n}:${i}`);
        if (k > 1) twice.push(`${n}:${i}`);
      }
    }
    t.same(missing.slice(0, 5), [], `every answered query has its line (${missing.length} missing)`);
    t.same(twice.slice(0, 5), [], `no line written twice (${twice.length})`);
  });
}
