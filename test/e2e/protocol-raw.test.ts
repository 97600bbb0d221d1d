// Raw-socket protocol tests: the real proxy (dist/main.js) in front of a real PostgreSQL 15,
// driven byte by byte with the independent encoder in harness/wire.ts.
import t from 'tap';
import * as crypto from 'node:crypto';
import * as net from 'node:net';
import { startCluster, USERS, type PgCluster } from '../harness/pg-cluster';
import { freePort } from '../harness/free-port';
import { proxyFixture } from '../helpers/fixture';
import { type Proxy } from '../harness/proxy';
import { expectFatalAndClose, type Tap } from '../helpers/expect';
import { describeMessages as describe, enc, errorsIn as errors, i32, normalizeMessages as normalize, value as firstValue, type BackendMessage, type RawClient } from '../harness/wire';
import { sleep } from '../harness/time';

const USER = USERS.trust.user;

let pg: PgCluster;
let proxy: Proxy;
/** Every proxy and raw client a test starts, so teardown can release them whatever happened. */
const fx = proxyFixture({ upstreamPort: () => pg.port, user: USER });
const { launch, stopProxy, connect, sessionWithKey: session } = fx;

t.before(async () => {
  pg = await startCluster();
  proxy = await launch([]);
});

t.teardown(async () => {
  await fx.cleanup();
  await pg?.stop();
});

// ---- helpers --------------------------------------------------------------------------------

/** Everything the peer sends until it closes the connection. */
async function readUntilClosed(c: RawClient, timeoutMs = 8000): Promise<BackendMessage[]> {
  const r = await c.readUntilClosed(timeoutMs);
  if (!r.closed) throw new Error(`connection not closed in ${timeoutMs} ms; got ${describe(r.msgs)}`);
  return r.msgs;
}

async function assertUsable(t: Tap, c: RawClient, what: string): Promise<void> {
  const r = await c.query("select 'still here'");
  t.equal(firstValue(r), 'still here', `${what}: other client still works`);
}

// ---- startup phase --------------------------------------------------------------------------

t.test('startup negotiation', async (t) => {
  await t.test('SSLRequest is refused with N, then the startup works', async (t) => {
    const c = await connect(proxy.port);
    c.write(enc.sslRequest());
    t.equal(await c.readByte(), 'N');
    const msgs = await c.startup(USER);
    t.equal(msgs[0]?.type, 'R', 'Authentication first');
    t.equal(msgs[0]?.body.readInt32BE(0), 0, 'AuthenticationOk');
    t.equal(msgs[msgs.length - 1]?.type, 'Z');
    t.equal(errors(msgs).length, 0);
    t.equal(firstValue(await c.query('select 1')), '1');
    c.end();
  });

  await t.test('GSSENCRequest is refused with N, then the startup works', async (t) => {
    const c = await connect(proxy.port);
    c.write(enc.gssencRequest());
    t.equal(await c.readByte(), 'N');
    const msgs = await c.startup(USER);
    t.equal(msgs[msgs.length - 1]?.type, 'Z');
    t.equal(firstValue(await c.query('select 2')), '2');
    c.end();
  });

  await t.test('SSLRequest then GSSENCRequest on one connection', async (t) => {
    const c = await connect(proxy.port);
    c.write(enc.sslRequest());
    t.equal(await c.readByte(), 'N');
    c.write(enc.gssencRequest());
    t.equal(await c.readByte(), 'N');
    const msgs = await c.startup(USER);
    t.equal(msgs[msgs.length - 1]?.type, 'Z');
    c.end();
  });

  // The postmaster only logs these (COMMERROR) and closes without a word; so does pgscribe.
  // test/e2e/startup-conformance.test.ts compares every startup fault with PostgreSQL's answer.
  for (const len of [4, 0, 7, 100000, 0x7fffffff]) {
    await t.test(`startup packet length ${len}: closed without a reply`, async (t) => {
      const c = await connect(proxy.port);
      c.write(Buffer.concat([i32(len), i32(0x00030000)]));
      const r = await c.readUntilClosed(8000);
      t.ok(r.closed, `length ${len}: closed`);
      t.equal(r.msgs.length, 0, `length ${len}: nothing sent (got ${describe(r.msgs)})`);
    });
  }
  await proxy.waitStderr(/client startup packet refused; closing it without a reply, as PostgreSQL does conn=\d+ client=127\.0\.0\.1:\d+ reason=/);

  await t.test("StartupMessage without a user gets PostgreSQL's FATAL 28000", async (t) => {
    const c = await connect(proxy.port);
    c.write(enc.startup({ database: 'postgres' }));
    await expectFatalAndClose(t, c, '28000', 'no user');
  });

  t.equal(proxy.proc.exitCode, null, 'proxy still running');
  const { c } = await session(proxy.port);
  t.equal(firstValue(await c.query('select 3')), '3', 'proxy still serves');
  c.end();
});

// ---- pipelined extended protocol --------------------------------------------------------------

/** P/B/D/E/S twice plus a Q; three ReadyForQuery in the answer. Leaves no named statement behind. */
function pipelinedBatch(): Buffer {
  return Buffer.concat([
    enc.parse('s1', 'select $1::int + 1 as x, $2::text as t'),
    enc.bind('', 's1', ['41', 'hello']),
    enc.describe('P', ''),
    enc.execute(''),
    enc.close('S', 's1'),
    enc.sync(),
    enc.parse('', 'select g, repeat(chr(64 + g), g) from generate_series(1, 4) g'),
    enc.bind('p1', '', []),
    enc.describe('P', 'p1'),
    enc.execute('p1', 2),
    enc.execute('p1', 0),
    enc.sync(),
    enc.query("select 1 as a; select 'b' as b, null as c; select 1/0"),
  ]);
}

t.test('pipelined extended batch: same answer through the proxy as directly', async (t) => {
  const batch = pipelinedBatch();

  const direct = await session(pg.port);
  const via = await session(proxy.port);
  t.same(
    normalize(via.startup).filter((s) => !s.startsWith('S:')),
    normalize(direct.startup).filter((s) => !s.startsWith('S:')),
    'startup sequence (Authentication, BackendKeyData, ReadyForQuery) matches',
  );
  t.same(
    via.startup.filter((m) => m.type === 'S').map(normalize1).sort(),
    direct.startup.filter((m) => m.type === 'S').map(normalize1).sort(),
    'same ParameterStatus names',
  );

  direct.c.write(batch);
  const expected = await direct.c.readZ(3);
  via.c.write(batch);
  const got = await via.c.readZ(3);

  t.match(expected.map((m) => m.type).join(''), /^12TDC3Z12TDDsDDCZTDCTDCEZ$/, 'direct answer has the expected shape');
  t.same(normalize(got), normalize(expected), 'identical message sequence, types and bodies');

  // Nothing extra arrives afterwards.
  t.equal(firstValue(await via.c.query('select 42')), '42');
  direct.c.end();
  via.c.end();

  function normalize1(m: BackendMessage): string {
    return normalize([m])[0]!;
  }
});

t.test('the batch split at every byte offset gives the same answer', async (t) => {
  const batch = pipelinedBatch();
  const direct = await session(pg.port);
  direct.c.write(batch);
  const expected = normalize(await direct.c.readZ(3));
  direct.c.end();

  const { c } = await session(proxy.port);
  let mismatches = 0;
  for (let off = 1; off < batch.length; off++) {
    c.write(batch.subarray(0, off));
    // A short pause so that the two halves reach the proxy as separate reads.
    if (off % 2 === 0) await sleep(1);
    else await new Promise((r) => setImmediate(r));
    c.write(batch.subarray(off));
    const got = normalize(await c.readZ(3));
    if (JSON.stringify(got) !== JSON.stringify(expected)) {
      mismatches++;
      if (mismatches <= 3) t.same(got, expected, `split at offset ${off}`);
    }
  }
  t.equal(mismatches, 0, `all ${batch.length - 1} split offsets answered identically`);

  // Three-way split around every message boundary as well.
  const bounds: number[] = [];
  for (let off = 0; off < batch.length; ) {
    bounds.push(off);
    off += 1 + batch.readUInt32BE(off + 1);
  }
  for (const b of bounds.slice(1)) {
    for (const [x, y] of [
      [b - 1, b + 1],
      [b - 3, b + 2],
    ] as const) {
      c.write(batch.subarray(0, x));
      await sleep(1);
      c.write(batch.subarray(x, y));
      await sleep(1);
      c.write(batch.subarray(y));
      t.same(normalize(await c.readZ(3)), expected, `three pieces at ${x}/${y}`);
    }
  }
  c.end();
});

// ---- messages larger than one socket read ------------------------------------------------------

t.test('messages larger than one socket read', async (t) => {
  const { c } = await session(proxy.port);

  await t.test('5 MB Bind parameter', async (t) => {
    const param = crypto.randomBytes(5 * 1024 * 1024 * 0.75).toString('base64'); // 5 MiB of ASCII
    t.equal(param.length, 5 * 1024 * 1024);
    const md5 = crypto.createHash('md5').update(param).digest('hex');
    c.write(
      Buffer.concat([
        enc.parse('', 'select length($1::text), md5($1::text)'),
        enc.bind('', '', [param]),
        enc.execute(''),
        enc.sync(),
      ]),
    );
    const msgs = await c.readZ(1, 30000);
    t.same(errors(msgs), []);
    const d = msgs.find((m) => m.type === 'D');
    t.ok(d, 'a DataRow');
    if (d) {
      const l1 = d.body.readInt32BE(2);
      const v1 = d.body.toString('utf8', 6, 6 + l1);
      const l2 = d.body.readInt32BE(6 + l1);
      const v2 = d.body.toString('utf8', 10 + l1, 10 + l1 + l2);
      t.equal(v1, String(param.length), 'server saw the whole parameter');
      t.equal(v2, md5, 'server saw the exact bytes');
    }
  });

  await t.test('5 MB result row', async (t) => {
    const n = 655360; // 8 bytes each: 5 MiB
    const msgs = await c.query(`select string_agg(lpad(i::text, 8, '0'), '' order by i) from generate_series(1, ${n}) i`, 30000);
    t.same(errors(msgs), []);
    const v = firstValue(msgs);
    t.equal(v?.length, n * 8, 'whole value');
    const parts: string[] = [];
    for (let i = 1; i <= n; i++) parts.push(String(i).padStart(8, '0'));
    const expected = parts.join('');
    t.ok(v === expected, 'exact bytes, in order');
    t.same(
      msgs.map((m) => m.type),
      ['T', 'D', 'C', 'Z'],
    );
  });

  await t.test('5 MB result row then a small query in the same write', async (t) => {
    c.write(Buffer.concat([enc.query("select repeat('y', 5242880)"), enc.query("select 'after'")]));
    const msgs = await c.readZ(2, 30000);
    const d = msgs.filter((m) => m.type === 'D');
    t.equal(d.length, 2);
    t.equal(d[0]?.body.length, 2 + 4 + 5242880);
    t.equal(d[1]?.body.toString('utf8', 6), 'after');
  });
  c.end();
});

// ---- bad client bytes ------------------------------------------------------------------------------

t.test('malformed and oversized client messages', async (t) => {
  await t.test('message length 2 after a good session: 08P01, others unaffected', async (t) => {
    const other = await session(proxy.port);
    const bad = await session(proxy.port);
    t.equal(firstValue(await bad.c.query('select 5')), '5', 'bad client had a good session first');
    bad.c.write(Buffer.concat([Buffer.from('Q'), i32(2)]));
    await expectFatalAndClose(t, bad.c, '08P01', 'length 2');
    await assertUsable(t, other.c, 'length 2');
    other.c.end();
  });

  await t.test('message over --max-message-bytes: 08P01, others unaffected', async (t) => {
    const small = await launch(['--max-message-bytes', '100000']);
    const other = await session(small.port);
    const fine = await other.c.query(`select length('${'a'.repeat(90000)}')`);
    t.equal(firstValue(fine), '90000', 'a message under the limit passes');
    const bad = await session(small.port);
    bad.c.write(enc.query(`select '${'z'.repeat(200 * 1024)}'`));
    const f = await expectFatalAndClose(t, bad.c, '08P01', '200 KB Query');
    t.match(f['M'], /100000/, 'message names the limit');
    await assertUsable(t, other.c, 'oversized');
    // Also a passthrough type (CopyData is not inspected) is bounded.
    const bad2 = await session(small.port);
    bad2.c.write(enc.copyData(Buffer.alloc(150000, 0x61)));
    await expectFatalAndClose(t, bad2.c, '08P01', '150 KB CopyData outside COPY');
    await assertUsable(t, other.c, 'oversized CopyData');
    other.c.end();
    await stopProxy(small);
  });

  await t.test('Bind truncated inside a parameter (consistent length): 08P01', async (t) => {
    const other = await session(proxy.port);
    const bad = await session(proxy.port);
    bad.c.write(Buffer.concat([enc.parse('', 'select $1::text'), enc.sync()]));
    await bad.c.readZ(1);
    // portal "", statement "", 0 formats, 1 parameter of declared length 10 with only 3 bytes.
    const body = Buffer.concat([Buffer.from([0, 0]), Buffer.from([0, 0]), Buffer.from([0, 1]), i32(10), Buffer.from('abc')]);
    bad.c.write(Buffer.concat([enc.raw('B', body), enc.execute(''), enc.sync()]));
    await expectFatalAndClose(t, bad.c, '08P01', 'truncated Bind');
    await assertUsable(t, other.c, 'truncated Bind');
    other.c.end();
  });

  await t.test('Bind with a negative parameter count: 08P01', async (t) => {
    const bad = await session(proxy.port);
    const body = Buffer.concat([Buffer.from([0, 0]), Buffer.from([0, 0]), Buffer.from([0xff, 0xff])]);
    bad.c.write(enc.raw('B', body));
    await expectFatalAndClose(t, bad.c, '08P01', 'negative count');
  });

  await t.test('Query without its terminating NUL: 08P01', async (t) => {
    const bad = await session(proxy.port);
    bad.c.write(enc.raw('Q', Buffer.from('select 1')));
    await expectFatalAndClose(t, bad.c, '08P01', 'unterminated Query');
  });

  t.equal(proxy.proc.exitCode, null, 'proxy still running');
});

// ---- upstream problems ------------------------------------------------------------------------------

t.test('upstream down: FATAL 08001 and the proxy keeps running', async (t) => {
  const dead = await freePort();
  const p = await launch([], dead);
  for (const attempt of [1, 2]) {
    const c = await connect(p.port);
    c.write(enc.startup({ user: USER, database: 'postgres' }));
    const f = await expectFatalAndClose(t, c, '08001', `attempt ${attempt}`);
    t.match(f['M'], new RegExp(String(dead)), 'message names the upstream');
  }
  t.equal(p.proc.exitCode, null, 'proxy still running');
  await stopProxy(p);
});

t.test('connection limit', async (t) => {
  const p = await launch(['--max-connections', '2']);
  const a = await session(p.port);
  const b = await session(p.port);
  const c = await connect(p.port);
  c.write(enc.startup({ user: USER, database: 'postgres' }));
  await expectFatalAndClose(t, c, '53300', 'third session');
  t.equal(firstValue(await a.c.query('select 1')), '1', 'first session unaffected');
  t.equal(firstValue(await b.c.query('select 2')), '2', 'second session unaffected');

  a.c.write(enc.terminate());
  a.c.end();
  await a.c.waitClosed();
  // The proxy releases the slot when it sees the close; allow it a moment.
  let d: RawClient | null = null;
  const deadline = Date.now() + 5000;
  for (;;) {
    const x = await connect(p.port);
    const msgs = await x.startup(USER);
    if (msgs[msgs.length - 1]?.type === 'Z') {
      d = x;
      break;
    }
    t.equal(errors(msgs)[0]?.['C'], '53300', 'only the limit may refuse while the slot frees up');
    if (Date.now() > deadline) break;
    await sleep(50);
  }
  t.ok(d, 'a new session succeeds after one closed');
  if (d) t.equal(firstValue(await d.query('select 3')), '3');
  d?.end();
  b.c.end();
  await stopProxy(p);
});

// At the startup timeout the client is dropped without a word, as the postmaster's child exits at
// authentication_timeout.
t.test('startup timeout', async (t) => {
  const p = await launch(['--startup-timeout', '300']);
  const droppedSilently = async (c: RawClient, what: string): Promise<void> => {
    const r = await c.readUntilClosed(5000);
    t.ok(r.closed, `${what}: closed (the timeout is 300 ms)`);
    t.equal(r.msgs.length, 0, `${what}: nothing sent (got ${describe(r.msgs)})`);
  };
  const silent = await connect(p.port);
  await droppedSilently(silent, 'silent client');
  // A client that sent half a startup packet is dropped too.
  const half = await connect(p.port);
  half.write(enc.startup({ user: USER, database: 'postgres' }).subarray(0, 10));
  await droppedSilently(half, 'half a startup packet');
  // SSLRequest answered, then silence: the timeout still applies.
  const ssl = await connect(p.port);
  ssl.write(enc.sslRequest());
  t.equal(await ssl.readByte(), 'N');
  await droppedSilently(ssl, 'silent after SSLRequest');
  await p.waitStderr(/client did not send a startup packet in time; dropping it conn=\d+ client=127\.0\.0\.1:\d+ timeout_ms=300/);
  const ok = await session(p.port);
  t.equal(firstValue(await ok.c.query('select 7')), '7', 'proxy keeps working');
  await sleep(500);
  t.equal(firstValue(await ok.c.query('select 8')), '8', 'the timeout does not hit established sessions');
  ok.c.end();
  await stopProxy(p);
});

/** A TCP relay between the proxy and PostgreSQL whose connections the test can cut. */
async function startRelay(target: number): Promise<{ port: number; pairs: { down: net.Socket; up: net.Socket }[]; close(): Promise<void> }> {
  const pairs: { down: net.Socket; up: net.Socket }[] = [];
  const srv = net.createServer((down) => {
    const up = net.connect({ port: target, host: '127.0.0.1' });
    down.on('error', () => {});
    up.on('error', () => {});
    down.pipe(up);
    up.pipe(down);
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
    pairs.push({ down, up });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    port: (srv.address() as net.AddressInfo).port,
    pairs,
    close: () =>
      new Promise<void>((r) => {
        for (const p of pairs) {
          p.down.destroy();
          p.up.destroy();
        }
        srv.close(() => r());
      }),
  };
}

t.test('upstream lost mid-session', async (t) => {
  await t.test('pg_terminate_backend: the server FATAL 57P01 and nothing from the proxy', async (t) => {
    const s = await session(proxy.port);
    t.ok(s.pid > 0, 'BackendKeyData relayed');
    t.equal(firstValue(await s.c.query('select pg_backend_pid()')), String(s.pid), 'relayed key is the real backend pid');
    const other = await session(proxy.port);
    t.equal(await pg.psql(`select pg_terminate_backend(${s.pid})`), 't');
    const f = await expectFatalAndClose(t, s.c, '57P01', 'terminated backend');
    t.notMatch(f['M'], /pgscribe/, 'the error is the server one');
    await assertUsable(t, other.c, 'terminated backend');
    other.c.end();
  });

  await t.test('pg_terminate_backend during a running query', async (t) => {
    const s = await session(proxy.port);
    s.c.write(enc.query('select pg_sleep(30)'));
    await waitActive(s.pid);
    t.equal(await pg.psql(`select pg_terminate_backend(${s.pid})`), 't');
    const f = await expectFatalAndClose(t, s.c, '57P01', 'terminated while active');
    t.notMatch(f['M'], /pgscribe/);
  });

  await t.test('upstream TCP connection cut: FATAL 08006', async (t) => {
    const relay = await startRelay(pg.port);
    t.teardown(() => relay.close());
    const p = await launch([], relay.port);
    const other = await session(p.port);

    // FIN from upstream while idle.
    const idle = await session(p.port);
    t.equal(firstValue(await idle.c.query('select 1')), '1');
    t.equal(relay.pairs.length, 2);
    relay.pairs[1]!.down.destroy();
    await expectFatalAndClose(t, idle.c, '08006', 'upstream FIN while idle');
    await assertUsable(t, other.c, 'FIN');

    // RST from upstream while idle.
    const reset = await session(p.port);
    relay.pairs[2]!.down.resetAndDestroy();
    await expectFatalAndClose(t, reset.c, '08006', 'upstream RST while idle');

    // Upstream gone while a query is running.
    const busy = await session(p.port);
    busy.c.write(enc.query('select pg_sleep(30)'));
    await waitActive(busy.pid);
    relay.pairs[3]!.down.destroy();
    const msgs = await readUntilClosed(busy.c);
    const errs = errors(msgs);
    t.equal(errs.length, 1, `one error (got ${describe(msgs)})`);
    t.equal(errs[0]?.['C'], '08006', 'upstream gone during a query');
    t.equal(errs[0]?.['S'], 'FATAL');

    await assertUsable(t, other.c, 'RST and mid-query');
    other.c.end();
    t.equal(p.proc.exitCode, null, 'proxy still running');
    await stopProxy(p);
    // The sleeping backend notices its client is gone only when it next writes; end it now.
    await pg.psql(`select pg_terminate_backend(${busy.pid})`);
  });
});

async function waitActive(pid: number): Promise<void> {
  const deadline = Date.now() + 10000;
  for (;;) {
    const s = await pg.psql(`select state from pg_stat_activity where pid = ${pid}`);
    if (s === 'active') return;
    if (Date.now() > deadline) throw new Error(`backend ${pid} not active (state ${s})`);
    await sleep(30);
  }
}

// ---- CancelRequest ------------------------------------------------------------------------------

t.test('CancelRequest through the proxy', async (t) => {
  const s = await session(proxy.port);
  t.ok(s.pid > 0 && s.secret !== 0, 'client got BackendKeyData');

  await t.test('right key cancels a running query with 57014', async (t) => {
    s.c.write(enc.query('select pg_sleep(30)'));
    await waitActive(s.pid);
    const canceller = await connect(proxy.port);
    canceller.write(enc.cancel(s.pid, s.secret));
    const none = await readUntilClosed(canceller);
    t.same(none.map((m) => m.type), [], 'no reply on the cancel connection');
    const msgs = await s.c.readZ(1, 5000);
    const errs = errors(msgs);
    t.equal(errs.length, 1);
    t.equal(errs[0]?.['C'], '57014', 'query cancelled');
    t.equal(errs[0]?.['S'], 'ERROR');
    t.equal(firstValue(await s.c.query('select 9')), '9', 'session usable after the cancel');
  });

  await t.test('wrong key does nothing', async (t) => {
    s.c.write(enc.query('select pg_sleep(1.5), 1'));
    await waitActive(s.pid);
    for (const [pid, secret] of [
      [s.pid, s.secret ^ 1],
      [s.pid + 1, s.secret],
      [0, 0],
    ] as const) {
      const canceller = await connect(proxy.port);
      canceller.write(enc.cancel(pid, secret));
      await readUntilClosed(canceller);
    }
    const msgs = await s.c.readZ(1, 10000);
    t.same(errors(msgs), [], 'no error');
    t.same(
      msgs.map((m) => m.type),
      ['T', 'D', 'C', 'Z'],
      'query ran to completion',
    );
  });

  s.c.end();
  t.equal(proxy.proc.exitCode, null, 'proxy still running');
});
