/**
 * The second reference relay (issue 21): what Node itself allows a relay that still does not look
 * at the bytes. bench/relay.ts is the naive pipe() relay; this one reads both legs with
 * net.Socket's `onread` option (one preallocated buffer per connection instead of a Buffer
 * allocated per read, and no Readable stream in between) and writes each read straight to the
 * other socket (bench/lib/onread-relay.ts).
 *
 * Usage: node build/bench/relay-onread.js LISTEN_PORT UPSTREAM_HOST:UPSTREAM_PORT
 * Prints "listening PORT" on stdout once bound (LISTEN_PORT 0 picks a free port).
 */
import { startOnreadRelay } from './lib/onread-relay';

const [listenArg, upstreamArg] = process.argv.slice(2);
if (listenArg === undefined || upstreamArg === undefined) {
  process.stderr.write('usage: relay-onread LISTEN_PORT UPSTREAM_HOST:UPSTREAM_PORT\n');
  process.exit(2);
}
startOnreadRelay(Number(listenArg), upstreamArg);
