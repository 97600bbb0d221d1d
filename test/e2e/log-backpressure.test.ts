// When the query log cannot be written, pgscribe stops reading from clients instead of dropping
// lines or buffering without bound; when the disk catches up, everything flows and no line is
// lost. A FIFO stands in for a stalled disk: until the test reads it, the proxy's writes block.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { clusterAndProxies } from '../helpers/fixture';
import { enc } from '../harness/wire';
import { sleep } from '../harness/time';

const { fx } = clusterAndProxies(t);

t.test('a stalled log pauses the client; no line is lost when it drains', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-fifo-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const fifo = path.join(dir, 'queries.log');
  execFileSync('mkfifo', [fifo]);
  // Open the reading end first (the proxy's open for writing would block without a reader),
  // and do not read yet: the pipe (64 KiB) fills and the proxy's log writes stall.
  const rfd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  t.teardown(() => fs.closeSync(rfd));

  const p = await fx.launch(['--log', fifo, '--log-buffer-bytes', '4096']);
  const c = await fx.session(p.port);
  // 3000 queries of ~1 KiB: ~3 MiB, which the proxy receives in many reads (it pauses between
  // reads, not within one), and ~3 MiB of log: far more than the pipe plus the 4 KiB buffer.
  const N = 3000;
  const pad = 'x'.repeat(1000);
  const sql = (i: number) => `select ${i} as n /* ${pad} */`;
  const qs: Buffer[] = [];
  for (let i = 0; i < N; i++) qs.push(enc.query(sql(i)));
  c.write(Buffer.concat(qs));

  let answered = 0;
  const reading = (async () => {
    while (answered < N) {
      const m = await c.read(60_000);
      if (m.type === 'Z') answered++;
    }
  })();
  await sleep(1000);
  const whileStalled = answered;
  t.ok(whileStalled < N, `while the log is stalled the proxy stops reading the client (${whileStalled}/${N} answered)`);

  // Drain the FIFO until every query is answered and every line has arrived.
  let text = '';
  const buf = Buffer.alloc(1 << 16);
  const deadline = Date.now() + 60_000;
  while ((answered < N || text.split('\n').length - 1 < N) && Date.now() < deadline) {
    try {
      const n = fs.readSync(rfd, buf, 0, buf.length, null);
      if (n > 0) text += buf.toString('utf8', 0, n);
      else await sleep(5);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      await sleep(5);
    }
  }
  await reading;
  t.equal(answered, N, 'every query answered once the log drains');
  const lines = text.split('\n').filter((l) => l !== '');
  t.equal(lines.length, N, 'one line per query, none lost');
  t.ok(lines.every((l, i) => l.endsWith(` Q sql=${sql(i)}`)), 'in order');
});
