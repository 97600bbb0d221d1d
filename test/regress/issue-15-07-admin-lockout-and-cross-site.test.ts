// Issue 15, security findings 7 and 13, and the admin part of 18:
// - 7: after the headers timeout, clientError only half-closed the socket, and Node checked the
//   timeout every 30 s: 64 silent sockets held every admin slot, /health stopped answering, and an
//   orchestrator would have restarted the proxy.
// - 13: the token-less loopback admin answered any Host (DNS rebinding: a web page whose name
//   resolves to 127.0.0.1 could read /queries) and any Origin (a cross-site form POST flushed the
//   cache).
// - 18: the dashboard could be framed by another site.
import t from 'tap';
import * as http from 'node:http';
import * as net from 'node:net';
import { clusterAndProxies } from '../helpers/fixture';
import { type Proxy } from '../harness/proxy';
import { sleep } from '../harness/time';

const { fx } = clusterAndProxies(t);

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(port: number, path: string, o: { method?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: o.method ?? 'GET', headers: o.headers ?? {}, timeout: 3000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 3 s')));
    req.on('error', reject);
    req.end();
  });
}

async function withAdmin(args: string[] = []): Promise<{ p: Proxy; port: number }> {
  const p = await fx.launch(['--admin', '127.0.0.1:0', '--cache', ...args]);
  const line = await p.waitStderr(/admin server listening admin=http:\/\/127\.0\.0\.1:(\d+)\//);
  return { p, port: Number(/:(\d+)\/$/.exec(line)![1]) };
}

t.test('without a token: only loopback Host names are answered (DNS rebinding)', async (t) => {
  const { port } = await withAdmin();
  for (const host of ['attacker.example', `attacker.example:${port}`, 'localhost.attacker.example', '127.0.0.1.nip.io']) {
    const r = await request(port, '/queries', { headers: { host } });
    t.equal(r.status, 403, `Host ${JSON.stringify(host)}: 403`);
    t.match(r.body, /not a loopback name/, 'with the reason');
  }
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'localhost', '127.1.2.3', `[::1]:${port}`]) {
    const r = await request(port, '/queries', { headers: { host } });
    t.equal(r.status, 200, `Host ${host}: 200`);
  }
});

t.test('with a token any Host is answered (the admin may be reached by name), the token still required', async (t) => {
  const { port } = await withAdmin(['--admin-token', 's3cret']);
  t.equal((await request(port, '/stats', { headers: { host: 'pgscribe.internal:9999', authorization: 'Bearer s3cret' } })).status, 200);
  t.equal((await request(port, '/stats', { headers: { host: 'pgscribe.internal:9999' } })).status, 401);
});

t.test('POST /cache/flush from another Origin is refused; from the page itself it works (CSRF)', async (t) => {
  const { p, port } = await withAdmin();
  const host = `127.0.0.1:${port}`;
  for (const origin of ['http://attacker.example', 'null', `http://localhost:${port}.attacker.example`, `http://127.0.0.1:${port + 1}`]) {
    const r = await request(port, '/cache/flush', { method: 'POST', headers: { host, origin, 'content-type': 'application/x-www-form-urlencoded' } });
    t.equal(r.status, 403, `Origin ${origin}: 403`);
    t.match(r.body, /another origin/);
  }
  t.notMatch(p.stderr(), /admin: cache flushed/, 'nothing was flushed');
  t.equal((await request(port, '/cache/flush', { method: 'POST', headers: { host, origin: `http://${host}` } })).status, 200, 'same origin: flushed');
  t.equal((await request(port, '/cache/flush', { method: 'POST', headers: { host } })).status, 200, 'no Origin (curl): flushed');
});

t.test('the dashboard cannot be framed by another site', async (t) => {
  const { port } = await withAdmin();
  const r = await request(port, '/', { headers: { host: `127.0.0.1:${port}` } });
  t.equal(r.status, 200);
  t.equal(r.headers['content-security-policy'], "frame-ancestors 'none'");
  t.equal(r.headers['x-frame-options'], 'DENY');
});

t.test('70 silent sockets do not lock /health out: each is closed after the headers timeout', async (t) => {
  const { p, port } = await withAdmin();
  const silent: net.Socket[] = [];
  for (let i = 0; i < 70; i++) {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => {});
    // Half a request line, then nothing: never read, never closed by this side.
    s.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    s.pause();
    silent.push(s);
  }
  t.teardown(() => silent.forEach((s) => s.destroy()));
  await sleep(500);
  // The slots are full until the headers timeout (5 s) frees them; then /health answers again.
  let status = 0;
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    status = await request(port, '/health', { headers: { host: `127.0.0.1:${port}` } }).then((r) => r.status, () => 0);
    if (status === 200) break;
    await sleep(500);
  }
  t.equal(status, 200, '/health answers again while the silent sockets are still open on their side');
  t.ok(p.alive, 'the proxy is running');
});
