// Rotation by size of the query log file (issue 19): FileSink with rotateBytes/rotateKeep.
// Every line written is in exactly one file, whole, in order; files stay under the limit unless
// one line alone is longer; rotation happens only between writes; a failed rename loses nothing.
import t, { type Test as Tap } from 'tap';
import fs = require('node:fs');
import * as os from 'node:os';
import * as path from 'node:path';
import { FileSink } from '../../src/log/file-sink';
import { prng } from '../harness/prng';
import { sleep } from '../harness/time';

type WriteCb = (err: NodeJS.ErrnoException | null, written: number, buffer: Buffer) => void;
type WriteFn = (fd: number, buffer: Buffer, offset: number, length: number, position: number | null, cb: WriteCb) => void;
type RenameFn = (from: string, to: string, cb: (err: NodeJS.ErrnoException | null) => void) => void;

// `import fs = require()` gives the real module object, so patching it is seen by the sink.
const mutableFs = fs as unknown as { write: WriteFn; rename: RenameFn };

function patch<K extends 'write' | 'rename'>(tt: { teardown(fn: () => void): void }, key: K, make: (real: (typeof mutableFs)[K]) => (typeof mutableFs)[K]): void {
  const real = mutableFs[key];
  mutableFs[key] = make(real);
  tt.teardown(() => {
    mutableFs[key] = real;
  });
}

function tmpDir(tt: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-rotate-'));
  tt.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Line i: varied length (10 to ~400 bytes), multi-byte characters so byte/char confusion shows. */
function makeLines(n: number, seed: number, long: Map<number, number> = new Map()): string[] {
  const rnd = prng(seed);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const len = long.get(i) ?? Math.floor(rnd() * rnd() * 400);
    out.push(`${i} SELECT 'é日😀' ${'x'.repeat(len)}\n`);
  }
  return out;
}

interface FileInfo {
  name: string;
  size: number;
  lines: string[];
  /** Ends with a newline (or is empty): no line split across two files. */
  whole: boolean;
}

function readFile(p: string): FileInfo {
  const buf = fs.readFileSync(p);
  const text = buf.toString('utf8');
  const whole = text === '' || text.endsWith('\n');
  return { name: path.basename(p), size: buf.length, lines: text === '' ? [] : text.replace(/\n$/, '').split('\n').map((l) => l + '\n'), whole };
}

/** The rotated files oldest first (.N .. .1), then the current one. */
function filesInOrder(file: string): FileInfo[] {
  const dir = path.dirname(file);
  const base = path.basename(file);
  const nums = fs
    .readdirSync(dir)
    .filter((f) => f.startsWith(base + '.') && /^\d+$/.test(f.slice(base.length + 1)))
    .map((f) => Number(f.slice(base.length + 1)))
    .sort((a, b) => b - a);
  return [...nums.map((n) => readFile(`${file}.${n}`)), readFile(file)];
}

/** The checks every test makes: whole lines, at most `limit` bytes a file unless one line alone. */
function checkFiles(tt: Tap, files: FileInfo[], limit: number): void {
  const split = files.filter((f) => !f.whole).map((f) => f.name);
  tt.same(split, [], 'every file ends with a whole line');
  const over = files.filter((f) => f.size > limit && f.lines.length !== 1).map((f) => `${f.name}: ${f.size} bytes, ${f.lines.length} lines`);
  tt.same(over, [], `no file over ${limit} bytes unless it holds a single longer line`);
}

const LIMIT = 4096;

t.test('many varied lines, one longer than the limit: each exactly once, in order, whole', async (tt) => {
  const file = path.join(tmpDir(tt), 'queries.log');
  const lines = makeLines(5000, 19, new Map([[777, 3 * LIMIT], [778, LIMIT - 40], [4000, LIMIT * 10]]));
  const sink = new FileSink({ path: file, rotateBytes: LIMIT, rotateKeep: 100_000, minWrite: 0 });
  let writes = 0;
  for (const l of lines) {
    sink.write(l);
    // Let the sink write now and then, so chunks of every size meet the limit.
    if (++writes % 97 === 0) await sleep(0);
  }
  await sink.close();
  const files = filesInOrder(file);
  const all = files.flatMap((f) => f.lines);
  tt.equal(all.length, lines.length, `${lines.length} lines across ${files.length} files`);
  tt.ok(all.every((l, i) => l === lines[i]), 'the same lines, in order');
  checkFiles(tt, files, LIMIT);
  const longAlone = files.filter((f) => f.size > LIMIT).map((f) => f.lines[0]!.split(' ')[0]);
  tt.same(longAlone, ['777', '4000'], 'the two lines longer than the limit each fill a file alone');
  tt.equal(sink.rotations, files.length - 1, 'one rotation per rotated file');
  const early = files.slice(0, -1).filter((f, i) => f.size + Buffer.byteLength(files[i + 1]!.lines[0]!) <= LIMIT).map((f) => f.name);
  tt.same(early, [], 'each rotation came when the next line did not fit');
});

t.test('keep: only FILE.1..FILE.keep remain, the newest lines, in order', async (tt) => {
  const file = path.join(tmpDir(tt), 'queries.log');
  const lines = makeLines(5000, 7);
  const sink = new FileSink({ path: file, rotateBytes: LIMIT, rotateKeep: 3 });
  for (const l of lines) sink.write(l);
  await sink.close();
  const files = filesInOrder(file);
  tt.same(
    files.map((f) => f.name),
    ['queries.log.3', 'queries.log.2', 'queries.log.1', 'queries.log'],
    'three rotated files and the current one',
  );
  tt.ok(sink.rotations > 10, `${sink.rotations} rotations`);
  const all = files.flatMap((f) => f.lines);
  tt.same(all, lines.slice(lines.length - all.length), 'they hold the last lines written, in order, none missing between them');
  checkFiles(tt, files, LIMIT);
});

t.test('rotation while writes are in flight: never with a write outstanding; every line counted', async (tt) => {
  const file = path.join(tmpDir(tt), 'queries.log');
  let inFlight = 0;
  let renamesDuringWrite = 0;
  let renames = 0;
  // A slow disk: each write takes 0-3 ms and takes at most 700 bytes (partial writes).
  patch(tt, 'write', (real) => (fd, buffer, offset, length, position, cb) => {
    inFlight++;
    setTimeout(() => {
      real(fd, buffer, offset, Math.min(length, 700), position, (err, n, b) => {
        inFlight--;
        cb(err, n, b);
      });
    }, Math.floor(Math.random() * 4));
  });
  patch(tt, 'rename', (real) => (from, to, cb) => {
    renames++;
    if (inFlight > 0) renamesDuringWrite++;
    real(from, to, cb);
  });
  const lines = makeLines(8000, 3, new Map([[6_789, 2 * LIMIT]]));
  const sink = new FileSink({ path: file, rotateBytes: LIMIT, rotateKeep: 100_000, highWaterMark: 64 * 1024, maxWrite: 16 * 1024, minWrite: 1024, maxDelayMs: 1 });
  let paused = 0;
  let reopens = 0;
  for (let i = 0; i < lines.length; i++) {
    // Faster than the fd drains: the producer waits only when the sink says so.
    if (!sink.write(lines[i]!)) {
      paused++;
      await new Promise<void>((r) => sink.onDrain(r));
    }
    // SIGHUP without a rename (reopen of the same file) mixed in: the counter goes on from fstat.
    if (i % 2000 === 1000) {
      sink.reopen();
      reopens++;
    }
  }
  await sink.close();
  const files = filesInOrder(file);
  const all = files.flatMap((f) => f.lines);
  tt.equal(all.length, lines.length, `${lines.length} lines across ${files.length} files (${paused} pauses for backpressure, ${reopens} reopens)`);
  tt.ok(all.every((l, i) => l === lines[i]), 'the same lines, in order');
  checkFiles(tt, files, LIMIT);
  tt.ok(renames > 100, `${renames} renames`);
  tt.equal(renamesDuringWrite, 0, 'no rename while a write was in flight');
  tt.ok(paused > 0, 'the producer outran the disk');
});

t.test("logrotate's rename + SIGHUP mixed with size rotation: nothing lost or doubled", async (tt) => {
  const dir = tmpDir(tt);
  const file = path.join(dir, 'queries.log');
  patch(tt, 'write', (real) => (fd, buffer, offset, length, position, cb) => setTimeout(() => real(fd, buffer, offset, length, position, cb), 1));
  const lines = makeLines(6000, 11);
  const sink = new FileSink({ path: file, rotateBytes: LIMIT, rotateKeep: 100_000, maxWrite: 8192, minWrite: 512, maxDelayMs: 1 });
  const external: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!sink.write(lines[i]!)) await new Promise<void>((r) => sink.onDrain(r));
    if (i % 1000 === 500) {
      // logrotate (no copytruncate): move the file away, then SIGHUP.
      await sleep(2);
      const to = path.join(dir, `external-${external.length}.log`);
      // A size rotation may be between its rename and its open: logrotate would fail and try
      // again at its next run; here, a moment later.
      for (;;) {
        try {
          fs.renameSync(file, to);
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
          await sleep(1);
        }
      }
      external.push(to);
      sink.reopen();
    }
    if (i % 200 === 0) await sleep(0);
  }
  await sink.close();
  const files = [...external.map(readFile), ...filesInOrder(file)];
  const all = files.flatMap((f) => f.lines);
  tt.equal(all.length, lines.length, `${lines.length} lines across ${files.length} files`);
  tt.equal(new Set(all).size, lines.length, 'each line once');
  tt.same([...all].sort(), [...lines].sort(), 'exactly the lines written');
  for (const f of files) {
    const ids = f.lines.map((l) => Number(l.split(' ')[0]));
    if (!ids.every((v, i) => i === 0 || v > ids[i - 1]!)) tt.fail(`${f.name}: lines out of order`);
  }
  checkFiles(tt, files, LIMIT);
});

t.test('an existing file counts: the size at open starts the counter', async (tt) => {
  const file = path.join(tmpDir(tt), 'queries.log');
  const old = 'old line\n'.repeat(450); // 4050 bytes
  fs.writeFileSync(file, old);
  const sink = new FileSink({ path: file, rotateBytes: LIMIT, rotateKeep: 2 });
  sink.write('0 a line that does not fit in the 46 bytes left\n');
  await sink.close();
  tt.equal(fs.readFileSync(`${file}.1`, 'utf8'), old, 'the old file was rotated before the line');
  tt.equal(fs.readFileSync(file, 'utf8'), '0 a line that does not fit in the 46 bytes left\n');
});

t.test('a failing rename: reported once, lines go on into the current file, rotation resumes', async (tt) => {
  const file = path.join(tmpDir(tt), 'queries.log');
  let failing = true;
  let refused = 0;
  patch(tt, 'rename', (real) => (from, to, cb) => {
    if (failing) {
      refused++;
      const err: NodeJS.ErrnoException = new Error(`EACCES: permission denied, rename '${from}' -> '${to}'`);
      err.code = 'EACCES';
      process.nextTick(cb, err);
      return;
    }
    real(from, to, cb);
  });
  const errors: string[] = [];
  const recovered: number[] = [];
  const sink = new FileSink({
    path: file,
    rotateBytes: LIMIT,
    rotateKeep: 1000,
    minWrite: 0,
    onError: (err, context) => errors.push(`${context} ${err.code}`),
    onRotateRecover: (ms) => recovered.push(ms),
  });
  const lines = makeLines(3000, 5);
  for (let i = 0; i < 1500; i++) {
    sink.write(lines[i]!);
    if (i % 50 === 0) await sleep(1);
  }
  await sink.flush();
  tt.same(errors, ['rotate EACCES'], 'one report for the episode');
  tt.ok(refused >= 1, `${refused} rename attempts refused`);
  tt.equal(fs.readFileSync(file, 'utf8'), lines.slice(0, 1500).join(''), 'every line so far is in the current file, past the limit');
  failing = false;
  await sleep(1100); // the first retry comes a second after the failure
  for (let i = 1500; i < 3000; i++) {
    sink.write(lines[i]!);
    if (i % 50 === 0) await sleep(1);
  }
  await sink.close();
  tt.equal(recovered.length, 1, 'the recovery is said once');
  const files = filesInOrder(file);
  tt.same(files.flatMap((f) => f.lines), lines, 'all lines, in order');
  tt.ok(files.length > 5, `${files.length} files after rotation resumed`);
  checkFiles(tt, files.slice(1), LIMIT);
});

t.test('a new file that cannot be created: the old one is put back and keeps taking lines', async (tt) => {
  const dir = tmpDir(tt);
  const file = path.join(dir, 'queries.log');
  const errors: string[] = [];
  const sink = new FileSink({ path: file, rotateBytes: LIMIT, rotateKeep: 3, minWrite: 0, onError: (err, context) => errors.push(`${context} ${err.code}`) });
  const mutableOpen = fs as unknown as { open: (...a: unknown[]) => void };
  const realOpen = mutableOpen.open;
  mutableOpen.open = (...a: unknown[]) => {
    const cb = a[a.length - 1] as (err: NodeJS.ErrnoException) => void;
    const err: NodeJS.ErrnoException = new Error('EMFILE: too many open files');
    err.code = 'EMFILE';
    process.nextTick(cb, err);
  };
  tt.teardown(() => {
    mutableOpen.open = realOpen;
  });
  const lines = makeLines(400, 9);
  for (const l of lines) sink.write(l);
  await sink.flush();
  mutableOpen.open = realOpen;
  await sink.close();
  tt.same(errors, ['rotate EMFILE'], 'reported once');
  tt.equal(fs.readFileSync(file, 'utf8'), lines.join(''), 'every line in the file at its own path');
  tt.notOk(fs.existsSync(`${file}.1`), 'no rotated file left behind');
});

t.test('flushSync rotates synchronously on the exit path', async (tt) => {
  const file = path.join(tmpDir(tt), 'queries.log');
  const sink = new FileSink({ path: file, rotateBytes: LIMIT, rotateKeep: 1000 });
  const lines = makeLines(2000, 13);
  for (const l of lines) sink.write(l);
  sink.flushSync();
  tt.equal(sink.bufferedBytes, 0, 'everything written');
  const files = filesInOrder(file);
  tt.same(files.flatMap((f) => f.lines), lines, 'all lines, in order');
  tt.ok(files.length > 10, `${files.length} files`);
  checkFiles(tt, files, LIMIT);
  await sink.close();
});

t.test('option validation', async (tt) => {
  const file = path.join(tmpDir(tt), 'queries.log');
  tt.throws(() => new FileSink({ path: file, rotateBytes: -1 }), RangeError);
  tt.throws(() => new FileSink({ path: file, rotateBytes: 4096, rotateKeep: 0 }), RangeError);
});
