/**
 * The hostile-upstream fuzzer's run (issue 15, part 2; bench/fuzz-upstream.ts, `make
 * fuzz-upstream`, and a short run in the e2e tests): a throwaway PostgreSQL, a fake upstream in
 * this process between pgscribe and it, pgscribe (query log, cache and singleflight on) pointed at
 * the fake upstream, a few valid sessions that keep checking their answers, and fuzzed client
 * connections, each with a case from upstream-cases.ts.
 *
 * The fake upstream reads the StartupMessage pgscribe relays: a session whose application_name is
 * `fuzz-<case seed>` gets its case (its backend stream corrupted, or a synthetic server with no
 * PostgreSQL behind); any other session is relayed byte for byte. The ssl cases need pgscribe to
 * send an SSLRequest, which comes before any marker: they run on a second pgscribe (--upstream-tls
 * prefer, --workers 2) in front of a second fake upstream, one case at a time, so that this one
 * knows whose SSLRequest it answers.
 *
 * The oracle:
 * - both pgscribe processes stay up, and neither writes a stack trace, an uncaught error or an
 *   "internal error" (what an upstream sends is its own violation, never pgscribe's bug);
 * - every valid session's answer is right, all along (honest cases share their queries, flights
 *   and cache entries; a lying case asks its own);
 * - a fuzzed client is closed by pgscribe within CLOSE_BOUND_MS of the upstream ending the
 *   connection, and, when the fault is one pgscribe must refuse (a length its framer cannot
 *   accept), within DETECT_BOUND_MS of the fault while the upstream stays open: never a hang;
 * - RSS stays bounded: the result has its start, peak and end, for the caller to judge.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { startCluster, USERS, type PgCluster } from '../../test/harness/pg-cluster';
import { startProxy, type Proxy } from '../../test/harness/proxy';
import { enc } from '../../test/harness/wire';
import { sleep } from '../../test/harness/time';
import { SHARED_RANGE, upstreamCase, type Kind, type UpstreamCase } from './upstream-cases';
import { RssSampler, validLoop, type FuzzFinding, type FuzzRunOptions } from './shared';

export type UpstreamFuzzOptions = FuzzRunOptions;
export type Finding = FuzzFinding<Kind>;

export interface UpstreamFuzzResult {
  seed: number;
  durationS: number;
  cases: number;
  byKind: Record<Kind, number>;
  /** Cases whose fault pgscribe had to refuse by itself. */
  mustDetect: number;
  /** Cases in which pgscribe closed the upstream before the fake upstream ended it. */
  pgscribeClosedFirst: number;
  /** Fuzzed clients that got an ErrorResponse before the close, and their SQLSTATEs. */
  closedWithError: number;
  sqlstates: Record<string, number>;
  /** Fuzzed connections pgscribe left open past the bound. */
  hangs: Finding[];
  /** Valid sessions that got a wrong answer or lost their connection. */
  wrongAnswers: string[];
  validQueries: number;
  pgscribeExited: string | null;
  /** stderr lines of either pgscribe with a stack trace or an uncaught error. */
  stderrTraces: string[];
  /** stderr lines where pgscribe says it met an internal error (a state it thought impossible). */
  internalErrors: string[];
  rssStartBytes: number;
  rssMaxBytes: number;
  rssEndBytes: number;
  /** The ssl cases' pgscribe. */
  sslRssStartBytes: number;
  sslRssMaxBytes: number;
}

/** After the upstream ended the connection, pgscribe must have closed the client within this. */
const CLOSE_BOUND_MS = 5000;
/** After a fault pgscribe must refuse, it must have closed the client within this... */
const DETECT_BOUND_MS = 4000;
/** ...while the fake upstream keeps the connection open this long. */
const DETECT_HOLD_MS = 10_000;
/** A case's upstream connection ends at the latest this long after it came, whatever it waits for. */
const MAX_CASE_MS = 15_000;
/** A case that never reached the upstream (pgscribe refused the client) must be closed by then. */
const UNREACHED_MS = 20_000;
/** A fault whose message never comes fires unsolicited after the stream was quiet this long. */
const QUIET_MS = 300;
/** pgscribe's connect timeout: the ssl cases' 'S' with no handshake ends with it. */
const CONNECT_TIMEOUT_MS = 1500;
const USER = USERS.trust.user;
/** Answers of the valid sessions' and honest cases' query (and the lying cases' own) may be cached. */
const CACHE_RULES = JSON.stringify([{ pattern: '::int \\+ [12]$', ttl: 2000 }]);

const noop = (): void => {};

/** What the fake upstream saw and did of one case. */
interface Track {
  c: UpstreamCase;
  reachedAt: number | null;
  faultAt: number | null;
  /** When the upstream connection ended: the fake upstream ended it, or pgscribe closed it first. */
  endedAt: number | null;
  pgscribeClosedFirst: boolean;
}

/** Reads one startup-phase packet (length-prefixed) off a socket; resolves with it and the rest. */
function readPacket(sock: net.Socket, first: Buffer = Buffer.alloc(0)): Promise<{ packet: Buffer; rest: Buffer } | null> {
  return new Promise((resolve) => {
    let got = first;
    const settle = (): boolean => {
      if (got.length < 4) return false;
      const len = got.readUInt32BE(0);
      if (len < 8 || len > 10_000) {
        done(null);
        return true;
      }
      if (got.length < len) return false;
      done({ packet: got.subarray(0, len), rest: got.subarray(len) });
      return true;
    };
    const onData = (d: Buffer): void => {
      got = Buffer.concat([got, d]);
      settle();
    };
    const onClose = (): void => done(null);
    const done = (v: { packet: Buffer; rest: Buffer } | null): void => {
      sock.off('data', onData);
      sock.off('close', onClose);
      sock.pause();
      resolve(v);
    };
    if (settle()) return;
    sock.on('data', onData);
    sock.on('close', onClose);
    sock.resume();
  });
}

/** The StartupMessage's application_name marker: the case seed, or null. */
function markedSeed(packet: Buffer): number | null {
  const parts = packet.toString('utf8', 8).split('\0');
  for (let i = 0; i + 1 < parts.length; i += 2) {
    if (parts[i] === 'application_name') {
      const m = /^fuzz-(\d+)$/.exec(parts[i + 1]!);
      return m === null ? null : Number(m[1]);
    }
  }
  return null;
}

/**
 * The fake upstream. Marked sessions get their case; the rest are relayed to PostgreSQL as they
 * are. With ssl, it answers pgscribe's SSLRequest with the case in `current` (one at a time).
 */
class FakeUpstream {
  readonly tracks = new Map<number, Track>();
  /** The ssl case being run (ssl mode). */
  current: Track | null = null;
  port = 0;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly pgPort: number, private readonly ssl: boolean) {
    // Half-open: a half-close case ends its writing side and goes on reading pgscribe.
    this.server = net.createServer({ allowHalfOpen: true }, (down) => void this.accept(down));
  }

  listen(): Promise<void> {
    return new Promise((resolve) => {
      this.server.listen(0, '127.0.0.1', () => {
        this.port = (this.server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private own(s: net.Socket): net.Socket {
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
    s.on('error', noop);
    return s;
  }

  private async accept(down: net.Socket): Promise<void> {
    this.own(down);
    down.setNoDelay(true);
    if (this.ssl) {
      const t = this.current;
      const req = await readPacket(down);
      if (t === null || req === null) {
        down.destroy();
        return;
      }
      this.play(down, t, req.rest);
      return;
    }
    const first = await readPacket(down);
    if (first === null) {
      down.destroy();
      return;
    }
    const seed = markedSeed(first.packet);
    const t = seed === null ? undefined : this.tracks.get(seed);
    if (t === undefined) this.relay(down, first.packet, first.rest);
    else if (t.c.kind === 'session') this.corrupt(down, first.packet, first.rest, t);
    else this.play(down, t, first.rest);
  }

  /** A valid session: byte for byte, both ways. */
  private relay(down: net.Socket, packet: Buffer, rest: Buffer): void {
    const up = this.own(net.connect({ port: this.pgPort, host: '127.0.0.1' }));
    up.setNoDelay(true);
    up.write(Buffer.concat([packet, rest]));
    down.pipe(up);
    up.pipe(down);
    down.resume();
    up.on('close', () => down.destroy());
    down.on('close', () => up.destroy());
  }

  /** The case's connection came: note it, and end it by MAX_CASE_MS whatever happens. */
  private reached(down: net.Socket, t: Track): void {
    t.reachedAt = Date.now();
    // pgscribe's close is its FIN ('end': this server is half-open) or a reset ('close').
    const closedByPgscribe = (): void => {
      if (t.endedAt === null) {
        t.endedAt = Date.now();
        t.pgscribeClosedFirst = true;
      }
    };
    down.on('end', closedByPgscribe);
    down.on('close', closedByPgscribe);
    setTimeout(() => this.end(down, t), MAX_CASE_MS).unref();
  }

  /** End the upstream connection the case's way. */
  private end(down: net.Socket, t: Track): void {
    if (down.destroyed || t.endedAt !== null) return;
    t.endedAt = Date.now();
    switch (t.c.ending) {
      case 'reset':
        down.resetAndDestroy();
        return;
      case 'half-close':
        // pgscribe sees EOF; this side keeps reading until pgscribe closes (or 5 s).
        down.end();
        down.resume();
        setTimeout(() => down.destroy(), 5000).unref();
        return;
      default:
        down.end();
        setTimeout(() => down.destroy(), 2000).unref();
    }
  }

  /** After the fault or the script: live on (relaying or silent) for thenMs, or DETECT_HOLD_MS, then end. */
  private endLater(down: net.Socket, t: Track): void {
    setTimeout(() => this.end(down, t), t.c.mustDetect ? DETECT_HOLD_MS : t.c.thenMs).unref();
  }

  /** A synthetic server: the case's script, with no PostgreSQL behind. */
  private play(down: net.Socket, t: Track, rest: Buffer): void {
    this.reached(down, t);
    let pending = rest.length;
    const waiters: (() => void)[] = [];
    down.on('data', (d: Buffer) => {
      pending += d.length;
      for (const w of waiters.splice(0)) w();
    });
    down.resume();
    const nextBytes = (): Promise<void> =>
      new Promise((resolve) => {
        if (pending > 0) {
          pending = 0;
          resolve();
          return;
        }
        const timer = setTimeout(resolve, 1000);
        waiters.push(() => {
          clearTimeout(timer);
          pending = 0;
          resolve();
        });
      });
    void (async () => {
      for (const step of t.c.script) {
        if (down.destroyed || t.endedAt !== null) return;
        if (step === 'await') await nextBytes();
        else down.write(step);
      }
      t.faultAt = Date.now();
      this.endLater(down, t);
    })();
  }

  /** A real session whose backend stream gets the case's fault. */
  private corrupt(down: net.Socket, packet: Buffer, rest: Buffer, t: Track): void {
    this.reached(down, t);
    const fault = t.c.fault!;
    const up = this.own(net.connect({ port: this.pgPort, host: '127.0.0.1' }));
    up.setNoDelay(true);
    up.write(Buffer.concat([packet, rest]));
    down.on('data', (d: Buffer) => {
      if (!up.destroyed) up.write(d);
    });
    down.resume();
    down.on('close', () => up.destroy());
    let index = 0;
    let held: Buffer = Buffer.alloc(0);
    let fired = false;
    let silent = false;
    let quiet: NodeJS.Timeout | null = null;
    const fire = (m: Buffer): void => {
      fired = true;
      if (quiet !== null) clearTimeout(quiet);
      if (!down.destroyed && t.endedAt === null) down.write(fault.emit(m));
      t.faultAt = Date.now();
      if (fault.then === 'stall') {
        silent = true;
        up.destroy();
      }
      this.endLater(down, t);
    };
    // Answers that stop before the fault's message: it comes unsolicited (a CommandComplete with no query).
    const armQuiet = (): void => {
      if (quiet !== null) clearTimeout(quiet);
      quiet = setTimeout(() => {
        if (!fired && t.endedAt === null) fire(enc.raw('C', Buffer.from('SELECT 1\0')));
      }, QUIET_MS);
    };
    up.on('data', (d: Buffer) => {
      if (silent) return;
      held = held.length === 0 ? d : Buffer.concat([held, d]);
      while (held.length >= 5 && !silent) {
        const len = held.readUInt32BE(1);
        if (held.length < len + 1) break;
        const m = held.subarray(0, len + 1);
        held = held.subarray(len + 1);
        if (!fired && index === fault.at) fire(m);
        else if (!down.destroyed && t.endedAt === null) down.write(m);
        index++;
      }
      if (!fired) armQuiet();
    });
    up.on('close', () => {
      // PostgreSQL ended the session (the client's Terminate, or an error): the fake upstream ends too.
      if (!silent && !fired) fire(enc.raw('C', Buffer.from('SELECT 1\0')));
    });
    armQuiet();
  }
}

interface CaseOutcome {
  problem: string | null;
  sqlstates: string[];
  started: number;
  /** When the client saw pgscribe's close (or gave up on it). */
  closedAt: number;
}

/**
 * The SQLSTATE (C field) of an ErrorResponse body, or '?': read leniently, since the fake upstream
 * sends malformed ones that pgscribe relays (wire.ts's errorFields expects a well-formed body).
 */
function sqlstateOf(body: Buffer): string {
  for (let off = 0; off < body.length && body[off] !== 0; ) {
    const end = body.indexOf(0, off + 1);
    if (end < 0) break;
    if (body[off] === 0x43 /* 'C' */) return body.toString('latin1', off + 1, end);
    off = end + 1;
  }
  return '?';
}

/** The fuzzed client of one case: its startup with the marker, then its batches, until pgscribe closes it. */
function runCase(port: number, t: Track): Promise<CaseOutcome> {
  const c = t.c;
  return new Promise((resolve) => {
    const started = Date.now();
    const sock = net.connect({ port, host: '127.0.0.1' });
    sock.setNoDelay(true);
    const sqlstates: string[] = [];
    let buf: Buffer = Buffer.alloc(0);
    /** The stream stopped parsing (a length no client would follow): only a close is awaited. */
    let lost = false;
    let nextBatch = 0;
    let done = false;
    const finish = (problem: string | null): void => {
      if (done) return;
      done = true;
      clearInterval(watch);
      sock.destroy();
      resolve({ problem, sqlstates, started, closedAt: Date.now() });
    };
    const onMessage = (type: number, body: Buffer): void => {
      if (type === 0x45 /* 'E' */) sqlstates.push(sqlstateOf(body));
      else if (type === 0x52 /* 'R' */ && body.length >= 4 && [3, 5].includes(body.readInt32BE(0))) sock.write(enc.raw('p', Buffer.from('password\0')));
      else if (type === 0x5a /* 'Z' */ && nextBatch < c.batches.length) sock.write(c.batches[nextBatch++]!);
    };
    sock.on('data', (d: Buffer) => {
      if (lost) return;
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      while (buf.length >= 5) {
        const len = buf.readUInt32BE(1);
        if (len < 4 || len > 64 << 20) {
          lost = true;
          buf = Buffer.alloc(0);
          return;
        }
        if (buf.length < len + 1) return;
        onMessage(buf[0]!, buf.subarray(5, len + 1));
        buf = buf.subarray(len + 1);
      }
    });
    sock.on('error', noop);
    // pgscribe's FIN is its close (this side would only answer it with its own).
    sock.on('end', () => finish(null));
    sock.on('close', () => finish(null));
    sock.on('connect', () => sock.write(enc.startup({ user: USER, database: 'postgres', application_name: `fuzz-${c.seed}` })));
    const watch = setInterval(() => {
      const now = Date.now();
      if (t.reachedAt === null && now > started + UNREACHED_MS) {
        finish(`neither closed nor passed upstream ${UNREACHED_MS} ms after connecting`);
      } else if (c.mustDetect && t.faultAt !== null && now > t.faultAt + DETECT_BOUND_MS) {
        finish(`still open ${DETECT_BOUND_MS} ms after a fault pgscribe must refuse, the upstream still open`);
      } else if (t.endedAt !== null && now > t.endedAt + CLOSE_BOUND_MS) {
        finish(`still open ${CLOSE_BOUND_MS} ms after the upstream ${t.pgscribeClosedFirst ? 'was closed by pgscribe' : `ended (${c.ending})`}`);
      }
    }, 100);
  });
}


/** stderr lines that are a finding: a stack frame, an uncaught error, an exit on an internal error. */
const TRACE = /uncaught|unhandled|internal error; exiting|^\s+at \S.*:\d+:\d+\)?$/i;
const INTERNAL = /internal error/i;

export async function runUpstreamFuzz(o: UpstreamFuzzOptions): Promise<UpstreamFuzzResult> {
  let pg: PgCluster | null = null;
  let proxy: Proxy | null = null;
  let sslProxy: Proxy | null = null;
  let fake: FakeUpstream | null = null;
  let sslFake: FakeUpstream | null = null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgscribe-fuzz-upstream-'));
  const byKind: Record<Kind, number> = { session: 0, startup: 0, ssl: 0 };
  const sqlstates: Record<string, number> = {};
  const hangs: Finding[] = [];
  const wrongAnswers: string[] = [];
  const stderrTraces: string[] = [];
  const internalErrors: string[] = [];
  const onStderrLine = (line: string): void => {
    if (TRACE.test(line) && stderrTraces.length < 50) stderrTraces.push(line.slice(0, 2000));
    else if (INTERNAL.test(line) && internalErrors.length < 50) internalErrors.push(line.slice(0, 2000));
  };
  let cases = 0;
  let mustDetect = 0;
  let pgscribeClosedFirst = 0;
  let closedWithError = 0;
  let validQueries = 0;
  try {
    pg = await startCluster();
    await pg.psql('create table fuzz_t (id int, v text); grant all on fuzz_t to public');
    fake = new FakeUpstream(pg.port, false);
    sslFake = new FakeUpstream(pg.port, true);
    await fake.listen();
    await sslFake.listen();
    // The cache is kept small: filled to its default bounds by the valid sessions' distinct answers
    // (64 MiB, a million entries) it alone took RSS from 54 to 275 MiB in 60 s, hiding what the
    // hostile upstream costs.
    const common = ['--cache', '--singleflight', '--cache-rules', CACHE_RULES, '--cache-max-bytes', String(8 << 20), '--cache-max-entries', '20000', '--connect-timeout', String(CONNECT_TIMEOUT_MS), '--max-connections', String(o.concurrency + o.validSessions + 20)];
    proxy = await startProxy({ upstreamPort: fake.port, args: ['--log', path.join(dir, 'queries.log'), ...common, ...o.args], stderrLimit: 1 << 20, onStderrLine });
    sslProxy = await startProxy({ upstreamPort: sslFake.port, args: ['--log', path.join(dir, 'queries-ssl.log'), ...common, '--upstream-tls', 'prefer', '--workers', '2'], stderrLimit: 1 << 20, onStderrLine });
    const pid = proxy.proc.pid!;
    const sslPid = sslProxy.proc.pid!;
    const rss = new RssSampler(pid);
    const sslRss = new RssSampler(sslPid);
    const started = Date.now();
    const deadline = started + o.durationS * 1000;
    const alive = (): boolean => proxy!.alive && sslProxy!.alive;
    /** The fuzzing is over (a replayed case ran): the valid sessions stop too. */
    let over = false;
    const stop = (): boolean => over || Date.now() >= deadline || !alive();
    o.log(`fuzz-upstream: seed ${o.seed}, ${o.durationS} s, ${o.concurrency} fuzzed connections at once, ${o.validSessions} valid sessions; replay one case with FUZZ_ONLY=<case seed>`);

    const valid = Array.from({ length: o.validSessions }, (_, i) => validLoop(proxy!.port, USER, o.seed * 7 + i, stop, wrongAnswers, () => validQueries++, (r) =>
          // Half of them in the range the honest cases ask too: shared flights and cache entries.
          r() < 0.5 ? Math.floor(r() * SHARED_RANGE) : Math.floor(r() * 1_000_000),
        ));
    /** The ssl cases run one at a time: their fake upstream answers the SSLRequest of `current`. */
    let sslTurn: Promise<void> = Promise.resolve();
    const runOne = async (c: UpstreamCase): Promise<void> => {
      const t: Track = { c, reachedAt: null, faultAt: null, endedAt: null, pgscribeClosedFirst: false };
      let outcome: CaseOutcome;
      if (c.kind === 'ssl') {
        const prev = sslTurn;
        let release = noop;
        sslTurn = new Promise((r) => (release = r));
        await prev;
        sslFake!.current = t;
        outcome = await runCase(sslProxy!.port, t);
        sslFake!.current = null;
        release();
      } else {
        fake!.tracks.set(c.seed, t);
        outcome = await runCase(proxy!.port, t);
        fake!.tracks.delete(c.seed);
      }
      // pgscribe closes its two sockets at once; the upstream's close may be seen a moment later.
      for (let i = 0; i < 20 && t.reachedAt !== null && t.endedAt === null; i++) await sleep(50);
      if (o.only !== undefined) {
        const at = (ms: number | null): string => (ms === null ? 'never' : `+${ms - outcome.started} ms`);
        o.log(`fuzz-upstream: reached the upstream ${at(t.reachedAt)}, fault ${at(t.faultAt)}${c.mustDetect ? ' (pgscribe must refuse it)' : ''}, upstream ended ${at(t.endedAt)}${t.pgscribeClosedFirst ? ' by pgscribe' : ` by the fake (${c.ending})`}, client closed ${at(outcome.closedAt)}, SQLSTATEs ${JSON.stringify(outcome.sqlstates)}`);
      }
      if (c.mustDetect) mustDetect++;
      if (t.pgscribeClosedFirst) pgscribeClosedFirst++;
      if (outcome.sqlstates.length > 0) closedWithError++;
      for (const s of outcome.sqlstates) sqlstates[s] = (sqlstates[s] ?? 0) + 1;
      if (outcome.problem !== null) {
        hangs.push({ seed: c.seed, kind: c.kind, what: c.what, problem: outcome.problem });
        if (hangs.length <= 5) o.log(`fuzz-upstream: HANG case ${c.seed} (${c.what}): ${outcome.problem}`);
      }
    };
    let next = 0;
    const worker = async (): Promise<void> => {
      while (!stop()) {
        const caseSeed = o.only ?? (o.seed * 1_000_003 + next++) >>> 0;
        const c = upstreamCase(caseSeed);
        cases++;
        byKind[c.kind]++;
        if (o.only !== undefined) o.log(`fuzz-upstream: case ${caseSeed}: ${c.what}`);
        await runOne(c);
        if (o.only !== undefined) return;
      }
    };
    const progress = setInterval(
      () => o.log(`fuzz-upstream: ${Math.round((deadline - Date.now()) / 1000)} s left, ${cases} cases, ${hangs.length} hangs, ${validQueries} valid queries, ${wrongAnswers.length} wrong, rss ${(rss.maxBytes / 2 ** 20).toFixed(0)} MiB max`),
      30_000,
    );
    await Promise.all(Array.from({ length: o.only !== undefined ? 1 : o.concurrency }, worker));
    over = true;
    await Promise.all(valid);
    clearInterval(progress);
    rss.stop();
    sslRss.stop();
    await sleep(1000);
    const rssEndBytes = rss.sample();
    const exited = [proxy, sslProxy].filter((p) => !p.alive).map((p) => `${JSON.stringify(p.exit)}: ${p.stderr().slice(-2000)}`);
    return {
      seed: o.seed,
      durationS: Math.round((Date.now() - started) / 1000),
      cases,
      byKind,
      mustDetect,
      pgscribeClosedFirst,
      closedWithError,
      sqlstates,
      hangs,
      wrongAnswers,
      validQueries,
      pgscribeExited: exited.length === 0 ? null : exited.join('\n'),
      stderrTraces,
      internalErrors,
      rssStartBytes: rss.startBytes,
      rssMaxBytes: rss.maxBytes,
      rssEndBytes,
      sslRssStartBytes: sslRss.startBytes,
      sslRssMaxBytes: sslRss.maxBytes,
    };
  } finally {
    if (proxy?.alive) await proxy.stop('SIGTERM', { killAfterMs: 5000 });
    if (sslProxy?.alive) await sslProxy.stop('SIGTERM', { killAfterMs: 5000 });
    await fake?.close();
    await sslFake?.close();
    await pg?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

