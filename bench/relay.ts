/**
 * The floor for any Node.js proxy: a bare `net` relay that pipes bytes both ways without looking
 * at them. bench/run.ts measures pgscribe against it.
 *
 * Usage: node build/bench/relay.js LISTEN_PORT UPSTREAM_HOST:UPSTREAM_PORT
 * Prints "listening PORT" on stdout once bound (LISTEN_PORT 0 picks a free port).
 */
import * as net from 'node:net';

const [listenArg, upstreamArg] = process.argv.slice(2);
if (listenArg === undefined || upstreamArg === undefined) {
  process.stderr.write('usage: relay LISTEN_PORT UPSTREAM_HOST:UPSTREAM_PORT\n');
  process.exit(2);
}
const sep = upstreamArg.lastIndexOf(':');
const upHost = upstreamArg.slice(0, sep);
const upPort = Number(upstreamArg.slice(sep + 1));

const server = net.createServer({ noDelay: true }, (client) => {
  const upstream = net.connect({ host: upHost, port: upPort });
  upstream.setNoDelay(true);
  client.pipe(upstream);
  upstream.pipe(client);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close);
  upstream.on('error', close);
  client.on('close', close);
  upstream.on('close', close);
});
server.listen({ host: '127.0.0.1', port: Number(listenArg) }, () => {
  process.stdout.write(`listening ${(server.address() as net.AddressInfo).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
