import t from 'tap';
import fs = require('node:fs');
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { setImmediate as tick } from 'node:timers/promises';
import { FileSink } from '../../src/log/file-sink';
import { sleep } from '../harness/time';

type WriteCb = (err: NodeJS.ErrnoException | null, written: number, buffer: Buffer) => void;
type WriteFn = (
  fd: number,
  buffer: Buffer,
  offset: number,
  length: number,
  position: number | null,
  cb: WriteCb,
) => void;

// `import fs = require()` gives the real module object, so patching it is seen by the sink.
const mutableFs = fs as unknown as { write: WriteFn };

/** Replace fs.write for the duration of test `tt`. `impl` receives the real fs.write. */
function patchWrite(
  tt: { teardown(fn: () => void): void },
  impl: (real: WriteFn, ...args: Parameters<WriteFn>) => void,
): void {
  const real = mutableFs.write;
  mutableFs.write = (fd, buffer, offset, length, position, cb) =>
    impl(real, fd, buffer, offset, length, position, cb);
  tt.teardown(() => {
    mutableFs.write = real;
  });
}

function tmpDir(tt: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-sink-'));
  tt.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Line i, with multi-byte characters so byte/char confusion would show. */
function line(i: number): string {
  return `${i} SELECT 'é日本😀' FROM t WHERE id = ${i}\n`;
}

function expected(from: number, to: number): string {
  let s = '';
  for (let i = from; i < to; i++) s += line(i);
  return s;
}

function errno(code: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${code}: simulated`);
  err.code = code;
  return err;
}

t.test('100k lines arrive exactly, in order; new file has mode 0600', async (tt) => {
  const p = path.join(tmpDir(tt), 'q.log');
  const sink = new FileSink({ path: p });
  const N = 100_000;
  for (let i = 0; i < N; i++) sink.write(line(i));
  tt.ok(sink.bufferedBytes > 0, 'write() does not write synchronously');
  await sink.close();
  tt.equal(sink.bufferedBytes, 0);
  tt.equal(fs.readFileSync(p, 'utf8'), expected(0, N));
  tt.equal(fs.statSync(p).mode & 0o777, 0o600);
});

t.test('existing file: appended to, mode left alone', async (tt) => {
  const p = path.join(tmpDir(tt), 'q.log');
  fs.writeFileSync(p, 'old\n', { mode: 0o644 });
  fs.chmodSync(p, 0o644);
  const sink = new FileSink({ path: p });
  sink.write(line(1));
  await sink.close();
  tt.equal(fs.readFileSync(p, 'utf8'), 'old\n' + line(1));
  tt.equal(fs.statSync(p).mode & 0o777, 0o644);
});

t.test('constructor fails fast with the path in the message', async (tt) => {
  const p = path.join(tmpDir(tt), 'missing-dir', 'q.log');
  tt.throws(() => new FileSink({ path: p }), { code: 'ENOENT', message: /missing-dir/ });
});

t.test('batching: far fewer fs.write calls than lines', async (tt) => {
  const p = path.join(tmpDir(tt), 'q.log');
  let calls = 0;
  patchWrite(tt, (real, ...args) => {
    calls++;
    real(...args);
  });
  const sink = new FileSink({ path: p });
  const N = 20_000;
  // A producer that yields to the event loop every 100 lines, like a proxy under load.
  for (let i = 0; i < N; i++) {
    sink.write(line(i));
    if (i % 100 === 99) await tick();
  }
  await sink.close();
  tt.equal(fs.readFileSync(p, 'utf8'), expected(0, N));
  tt.ok(calls > 0 && calls <= N / 100, `${calls} fs.write calls for ${N} lines`);
});

t.test('maxWrite splits writes on line boundaries; a longer line is written whole', async (tt) => {
  const p = path.join(tmpDir(tt), 'q.log');
  const sizes: number[] = [];
  patchWrite(tt, (real, fd, buf, off, len, pos, cb) => {
    sizes.push(len);
    real(fd, buf, off, len, pos, cb);
  });
  const sink = new FileSink({ path: p, maxWrite: 100 });
  const big = 'x'.repeat(300) + '\n';
  for (let i = 0; i < 50; i++) sink.write(line(i));
  sink.write(big);
  for (let i = 50; i < 60; i++) sink.write(line(i));
  await sink.close();
  tt.equal(fs.readFileSync(p, 'utf8'), expected(0, 50) + big + expected(50, 60));
  tt.ok(sizes.includes(big.length), 'the long line went out in one write');
  tt.ok(
    sizes.every((s) => s <= 100 || s === big.length),
    'other writes are at most maxWrite bytes',
  );
});

t.test('lines formatted in place (reserve, commit) and written as text keep their order, across chunks', async (tt) => {
  // The text log's byte path (line-bytes.ts) reserves room in the buffer being filled and
  // commits what it wrote; a reservation given up commits nothing. maxWrite 100 forces new
  // chunks often, partial writes and awaits let writes complete in between.
  const p = path.join(tmpDir(tt), 'q.log');
  patchWrite(tt, (real, fd, buf, off, len, pos, cb) => real(fd, buf, off, Math.min(len, 13), pos, cb));
  const sink = new FileSink({ path: p, maxWrite: 100 });
  tt.equal(sink.reserve(101), null, 'a line longer than a chunk cannot be reserved');
  const N = 3_000;
  let verdicts = 0;
  for (let i = 0; i < N; i++) {
    if (i % 5 === 0) {
      sink.write(line(i));
      continue;
    }
    const text = line(i);
    const buf = sink.reserve(Buffer.byteLength(text) + (i % 7) * 5)!;
    if (i % 11 === 0) {
      // Given up after writing part of it: nothing of it may reach the file.
      buf.write('garbage that must not appear\n'.slice(0, 20), sink.reservedAt, 'latin1');
      sink.write(text);
      continue;
    }
    const end = sink.reservedAt + buf.write(text, sink.reservedAt, 'utf8');
    if (sink.commit(end)) verdicts++;
    if (i % 500 === 0) await tick();
  }
  await sink.close();
  tt.equal(fs.readFileSync(p, 'utf8'), expected(0, N), 'every line once, in order');
  tt.ok(verdicts > 0, 'commit gives the backpressure verdict');
});

t.test('partial writes (at most 7 bytes per call): content still exact', async (tt) => {
  const p = path.join(tmpDir(tt), 'q.log');
  let calls = 0;
  patchWrite(tt, (real, fd, buf, off, len, pos, cb) => {
    calls++;
    real(fd, buf, off, Math.min(len, 7), pos, cb);
  });
  const sink = new FileSink({ path: p });
  const N = 2_000;
  for (let i = 0; i < N; i++) {
    sink.write(line(i));
    if (i % 250 === 0) await tick();
  }
  await sink.flush();
  tt.equal(fs.readFileSync(p, 'utf8'), expected(0, N));
  tt.ok(calls >= Buffer.byteLength(expected(0, N)) / 7, 'writes really were partial');
  await sink.close();
});

t.test('backpressure: write() returns false, onDrain fires, nothing lost', async (tt) => {
  const p = path.join(tmpDir(tt), 'q.log');
  const hwm = 1024;
  const lwm = 256;
  const sink = new FileSink({ path: p, highWaterMark: hwm, lowWaterMark: lwm });
  const N = 5_000;
  let falses = 0;
  let drains = 0;
  for (let i = 0; i < N; i++) {
    if (!sink.write(line(i))) {
      falses++;
      tt.ok(sink.bufferedBytes > hwm);
      await new Promise<void>((resolve) =>
        sink.onDrain(() => {
          drains++;
          if (sink.bufferedBytes > lwm) tt.fail(`drain at ${sink.bufferedBytes} bytes`);
          resolve();
        }),
      );
    }
  }
  await sink.close();
  tt.ok(falses > 0, `write() returned false ${falses} times`);
  tt.equal(drains, falses, 'one drain per pause');
  tt.equal(fs.readFileSync(p, 'utf8'), expected(0, N));
});

t.test('onDrain when already drained fires asynchronously', async (tt) => {
  const p = path.join(tmpDir(tt), 'q.log');
  const sink = new FileSink({ path: p });
  let fired = false;
  const done = new Promise<void>((resolve) =>
    sink.onDrain(() => {
      fired = true;
      resolve();
    }),
  );
  tt.equal(fired, false);
  await done;
  tt.equal(fired, true);
  await sink.close();
});

t.test('reopen under load (logrotate rename + reopen)', async (tt) => {
  const dir = tmpDir(tt);
  const p = path.join(dir, 'q.log');
  const rotated = path.join(dir, 'q.log.1');
  const sink = new FileSink({ path: p });
  const BATCH = 100;
  const BATCHES = 100;
  let reopenAt = -1;
  let i = 0;
  for (let b = 0; b < BATCHES; b++) {
    for (let k = 0; k < BATCH; k++) sink.write(line(i++));
    if (b === 25) await sink.flush(); // the old file surely has something
    if (b === 50) {
      fs.renameSync(p, rotated);
      sink.reopen();
      reopenAt = i;
    }
    await tick();
  }
  await sink.close();
  const oldText = fs.readFileSync(rotated, 'utf8');
  const newText = fs.readFileSync(p, 'utf8');
  tt.equal(oldText + newText, expected(0, i), 'every line exactly once, in order');
  const oldLines = oldText.split('\n').length - 1;
  tt.ok(oldLines > 0, 'old file got the lines before the rotation');
  tt.ok(oldLines <= reopenAt, 'lines queued after reopen() are all in the new file');
  tt.ok(newText.startsWith(line(oldLines)), 'new file continues where the old one stopped');
  tt.equal(fs.statSync(p).mode & 0o777, 0o600);
});

t.test('reopen is deferred until the in-flight write completes', async (tt) => {
  const dir = tmpDir(tt);
  const p = path.join(dir, 'q.log');
  const rotated = path.join(dir, 'q.log.1');
  let held: (() => void) | null = null;
  let hold = true;
  patchWrite(tt, (real, fd, buf, off, len, pos, cb) => {
    real(fd, buf, off, len, pos, (err, n, b) => {
      if (hold) held = () => cb(err, n, b);
      else cb(err, n, b);
    });
  });
  const sink = new FileSink({ path: p });
  sink.write(line(0));
  sink.write(line(1));
  while (held === null) await tick(); // write of lines 0-1 is in flight
  sink.write(line(2));
  fs.renameSync(p, rotated);
  sink.reopen();
  sink.write(line(3));
  for (let k = 0; k < 20; k++) await tick();
  tt.notOk(fs.existsSync(p), 'not reopened while a write is in flight');
  hold = false;
  (held as () => void)();
  await sink.close();
  tt.equal(fs.readFileSync(rotated, 'utf8'), line(0) + line(1));
  tt.equal(fs.readFileSync(p, 'utf8'), line(2) + line(3));
});

t.test('reopen failure: reported, old fd kept, next reopen() retries', async (tt) => {
  const dir = tmpDir(tt);
  const p = path.join(dir, 'q.log');
  const rotated = path.join(dir, 'q.log.1');
  const errors: Array<[string | undefined, string]> = [];
  const sink = new FileSink({ path: p, onError: (err, ctx) => errors.push([err.code, ctx]) });
  sink.write(line(0));
  await sink.flush();
  fs.renameSync(p, rotated);
  fs.mkdirSync(p); // opening a directory for append fails (EISDIR), even as root
  sink.reopen();
  sink.write(line(1));
  await sink.flush();
  tt.same(errors, [['EISDIR', 'reopen']]);
  tt.equal(fs.readFileSync(rotated, 'utf8'), line(0) + line(1), 'kept writing to the old fd');
  fs.rmdirSync(p);
  sink.reopen();
  sink.write(line(2));
  await sink.close();
  tt.equal(fs.readFileSync(rotated, 'utf8'), line(0) + line(1));
  tt.equal(fs.readFileSync(p, 'utf8'), line(2));
  tt.equal(errors.length, 1);
});

t.test('EAGAIN a few times: retried, nothing lost, not reported', async (tt) => {
  const p = path.join(tmpDir(tt), 'q.log');
  let failures = 3;
  patchWrite(tt, (real, fd, buf, off, len, pos, cb) => {
    if (failures > 0) {
      failures--;
      process.nextTick(() => cb(errno('EAGAIN'), 0, buf));
      return;
    }
    real(fd, buf, off, len, pos, cb);
  });
  const errors: unknown[] = [];
  const sink = new FileSink({ path: p, onError: (err) => errors.push(err) });
  const N = 1_000;
  for (let i = 0; i < N; i++) {
    sink.write(line(i));
    if (i % 100 === 0) await tick();
  }
  await sink.close();
  tt.equal(failures, 0);
  tt.same(errors, []);
  tt.equal(fs.readFileSync(p, 'utf8'), expected(0, N));
});

t.test('ENOSPC episode: onError once, data kept and written after recovery', async (tt) => {
  const p = path.join(tmpDir(tt), 'q.log');
  let failures = 0;
  patchWrite(tt, (real, fd, buf, off, len, pos, cb) => {
    if (failures > 0) {
      failures--;
      process.nextTick(() => cb(errno('ENOSPC'), 0, buf));
      return;
    }
    real(fd, buf, off, len, pos, cb);
  });
  const errors: Array<[string | undefined, string]> = [];
  const recovered: number[] = [];
  const sink = new FileSink({ path: p, onError: (err, ctx) => errors.push([err.code, ctx]), onRecover: (ms) => recovered.push(ms) });
  sink.write(line(0));
  await sink.flush();
  tt.same(recovered, [], 'no recovery without a failure');
  failures = 2; // two consecutive failures = one episode (retried after 100 ms, then 200 ms)
  const began = Date.now();
  sink.write(line(1));
  await tick();
  sink.write(line(2));
  await sink.flush();
  tt.equal(failures, 0);
  tt.same(errors, [['ENOSPC', 'write']], 'reported once per episode, not per retry');
  tt.equal(recovered.length, 1, 'and its end once');
  tt.ok(recovered[0]! >= 250 && Date.now() - began < 900, `retried with a backoff from 100 ms (episode ${Math.round(recovered[0]!)} ms)`);
  tt.equal(fs.readFileSync(p, 'utf8'), expected(0, 3));
  await sink.close();
});

t.test('a disk that fills mid-write: the prefix it took is not written again, the rest goes first', async (tt) => {
  const p = path.join(tmpDir(tt), 'q.log');
  let calls = 0;
  patchWrite(tt, (real, fd, buf, off, len, pos, cb) => {
    calls++;
    if (calls === 1) real(fd, buf, off, Math.floor(len / 2), pos, cb); // a short write: the disk is full now
    else if (calls <= 3) process.nextTick(() => cb(errno('ENOSPC'), 0, buf));
    else real(fd, buf, off, len, pos, cb);
  });
  const errors: string[] = [];
  const sink = new FileSink({ path: p, onError: (err) => errors.push(err.code ?? '') });
  for (let i = 0; i < 50; i++) sink.write(line(i));
  await sink.flush();
  tt.same(errors, ['ENOSPC']);
  tt.equal(fs.readFileSync(p, 'utf8'), expected(0, 50), 'every line once, whole, in order');
  await sink.close();
});

t.test('flushSync writes everything synchronously', async (tt) => {
  const p = path.join(tmpDir(tt), 'q.log');
  const sink = new FileSink({ path: p, maxWrite: 4096 });
  const N = 10_000;
  for (let i = 0; i < N; i++) sink.write(line(i));
  sink.flushSync();
  tt.equal(sink.bufferedBytes, 0);
  tt.equal(fs.readFileSync(p, 'utf8'), expected(0, N));
  await sink.flush(); // resolves at once
  for (let i = N; i < N + 10; i++) sink.write(line(i));
  await sink.close();
  tt.equal(fs.readFileSync(p, 'utf8'), expected(0, N + 10));
});

t.test('flushSync with partial synchronous writes and EAGAIN', async (tt) => {
  const p = path.join(tmpDir(tt), 'q.log');
  const fsw = fs as unknown as { writeSync: (...args: unknown[]) => number };
  const realSync = fsw.writeSync;
  let calls = 0;
  fsw.writeSync = (fd: unknown, buf: unknown, off: unknown, len: unknown, pos: unknown) => {
    calls++;
    if (calls % 10 === 0) throw errno('EAGAIN');
    return realSync(fd, buf, off, Math.min(len as number, 5), pos);
  };
  tt.teardown(() => {
    fsw.writeSync = realSync;
  });
  const sink = new FileSink({ path: p });
  for (let i = 0; i < 60; i++) sink.write(line(i));
  sink.flushSync();
  tt.equal(sink.bufferedBytes, 0);
  tt.equal(fs.readFileSync(p, 'utf8'), expected(0, 60));
  await sink.close();
});

t.test('flushSync while an async write is in flight: writes nothing, order kept', async (tt) => {
  const p = path.join(tmpDir(tt), 'q.log');
  let held: (() => void) | null = null;
  patchWrite(tt, (real, fd, buf, off, len, pos, cb) => {
    real(fd, buf, off, len, pos, (err, n, b) => {
      held = () => cb(err, n, b);
    });
  });
  const sink = new FileSink({ path: p });
  sink.write(line(0));
  while (held === null) await tick();
  sink.write(line(1));
  sink.flushSync();
  tt.ok(sink.bufferedBytes > 0, 'data behind the in-flight write stays queued');
  const release = held as () => void;
  held = null;
  release();
  const closed = sink.close();
  while (held === null) await tick();
  (held as () => void)();
  await closed;
  tt.equal(fs.readFileSync(p, 'utf8'), line(0) + line(1));
});

t.test('close(): flushes; then write() throws; close/flush idempotent', async (tt) => {
  const p = path.join(tmpDir(tt), 'q.log');
  const sink = new FileSink({ path: p });
  sink.write(line(0));
  const c1 = sink.close();
  tt.throws(() => sink.write(line(1)), /after close/);
  await c1;
  await sink.close();
  await sink.flush();
  sink.flushSync();
  sink.reopen(); // no-op after close
  tt.throws(() => sink.write(line(1)), /after close/);
  tt.equal(fs.readFileSync(p, 'utf8'), line(0));
});

t.test('option validation', async (tt) => {
  const p = path.join(tmpDir(tt), 'q.log');
  tt.throws(() => new FileSink({ path: p, highWaterMark: 0 }), RangeError);
  tt.throws(() => new FileSink({ path: p, highWaterMark: 10, lowWaterMark: 11 }), RangeError);
  tt.throws(() => new FileSink({ path: p, maxWrite: 0 }), RangeError);
  tt.notOk(fs.existsSync(p), 'no file created for invalid options');
});

t.test('StdoutSink writes to fd 1 through a pipe, with backpressure', async (tt) => {
  const modulePath = require.resolve('../../src/log/file-sink');
  const N = 50_000;
  const script = `
    const { StdoutSink } = require(${JSON.stringify(modulePath)});
    const line = ${line.toString()};
    const sink = new StdoutSink({ highWaterMark: 64 * 1024 });
    (async () => {
      for (let i = 0; i < ${N}; i++) {
        if (!sink.write(line(i))) await new Promise((r) => sink.onDrain(r));
      }
      await sink.close();
    })();
  `;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const parts: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => parts.push(d));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  tt.equal(code, 0);
  tt.equal(Buffer.concat(parts).toString('utf8'), expected(0, N));
});

t.test('an idle sink keeps no timers or I/O: the process exits without close()', async (tt) => {
  const p = path.join(tmpDir(tt), 'q.log');
  const modulePath = require.resolve('../../src/log/file-sink');
  const script = `
    const { FileSink } = require(${JSON.stringify(modulePath)});
    const sink = new FileSink({ path: ${JSON.stringify(p)} });
    for (let i = 0; i < 1000; i++) sink.write(i + '\\n');
    sink.flush().then(() => sink.write('last\\n'));
  `;
  const child = spawn(process.execPath, ['-e', script], { stdio: 'inherit', timeout: 20_000 });
  const [code, signal] = await new Promise<[number | null, string | null]>((resolve) =>
    child.on('close', (c, s) => resolve([c, s])),
  );
  tt.same([code, signal], [0, null], 'exited on its own');
  const text = fs.readFileSync(p, 'utf8');
  tt.ok(text.startsWith('0\n1\n') && text.includes('\n999\n'), 'lines flushed before exit');
  tt.ok(text.endsWith('\n999\nlast\n'), 'queued data kept the process alive until written');
});

t.test('batching delay: a small batch waits for the timer or flush(); a full one is written at once', async (tt) => {
  const p = path.join(tmpDir(tt), 'q.log');
  let writes = 0;
  patchWrite(tt, (real, ...args) => {
    writes++;
    real(...args);
  });
  const sink = new FileSink({ path: p, minWrite: 4096, maxDelayMs: 60_000 });
  tt.teardown(() => sink.close());
  for (let i = 0; i < 10; i++) sink.write(line(i));
  for (let i = 0; i < 5; i++) await tick();
  tt.equal(writes, 0, 'under minWrite: nothing written yet (the 60 s timer has not fired)');
  await sink.flush();
  tt.equal(fs.readFileSync(p, 'utf8'), expected(0, 10), 'flush() does not wait for the timer');
  tt.equal(writes, 1, 'one write for the batch');

  let n = 10;
  while (Buffer.byteLength(expected(10, n)) < 4096) sink.write(line(n++));
  // Over minWrite: written without waiting for the 60 s timer.
  for (let i = 0; i < 200 && fs.statSync(p).size < Buffer.byteLength(expected(0, n)); i++) await sleep(10);
  tt.equal(fs.readFileSync(p, 'utf8'), expected(0, n), 'a full batch goes out at once');
});
