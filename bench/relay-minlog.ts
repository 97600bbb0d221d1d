/**
 * The third reference relay (issue 21): the least a Node relay can do and still log every query.
 * It is bench/relay-onread.ts (bench/lib/onread-relay.ts: reads in place, each read written on as
 * it is) plus, on the client side, pgscribe's Framer over the reads and one line per Q, P, B and
 * E, written with pgscribe's own file writer (FileSink's reserve/commit, as the text log's byte
 * path does) and the same batching.
 *
 * What it leaves out is everything pgscribe does beyond that: no decoding (a line is the message
 * body with every byte outside printable ASCII shown as '.'), so no SQL for a Bind or an Execute,
 * no escaping, no parameters as values; no session ledger, states, completions or cache; no log
 * backpressure on the client (the bench never fills the writer); no startup checks. Not a tool to
 * use: set against node-relay it says what logging alone costs in Node, the floor under issue
 * 21's bar "pgscribe with the log on at most 1.0x node-relay's CPU per transaction".
 *
 * Usage: node build/bench/relay-minlog.js LISTEN_PORT UPSTREAM_HOST:UPSTREAM_PORT LOG_FILE
 * Prints "listening PORT" on stdout once bound (LISTEN_PORT 0 picks a free port).
 */
import { Framer } from '../src/protocol/framer';
import { FileSink } from '../src/log/file-sink';
import { isoTime } from '../src/log/format';
import { startOnreadRelay } from './lib/onread-relay';

const [listenArg, upstreamArg, logPath] = process.argv.slice(2);
if (listenArg === undefined || upstreamArg === undefined || logPath === undefined) {
  process.stderr.write('usage: relay-minlog LISTEN_PORT UPSTREAM_HOST:UPSTREAM_PORT LOG_FILE\n');
  process.exit(2);
}
const Q = 0x51;
const P = 0x50;
const B = 0x42;
const E = 0x45;
/** SSLRequest and GSSENCRequest: the startup packet is still to come. */
const ENCRYPTION_REQUESTS = new Set([80877103, 80877104]);

const sink = new FileSink({ path: logPath });
const stamp = Buffer.alloc(24);
let stampMs = -1;

/** One line: timestamp, the connection's prefix, the type, the body shown byte for byte. */
function logLine(prefix: Buffer, type: number, buf: Buffer, start: number, end: number): void {
  const out = sink.reserve(stamp.length + prefix.length + 2 + (end - start));
  if (out === null) return; // longer than a chunk: the reference does not log it
  const now = Date.now();
  if (now !== stampMs) {
    stamp.write(isoTime(now), 0, 'latin1');
    stampMs = now;
  }
  let at = sink.reservedAt;
  out.set(stamp, at);
  at += stamp.length;
  out.set(prefix, at);
  at += prefix.length;
  out[at++] = type;
  for (let k = start + 5; k < end; k++) {
    const b = buf[k]!;
    out[at++] = b < 0x20 || b > 0x7e ? 0x2e : b;
  }
  out[at++] = 0x0a;
  sink.commit(at);
}

/** The client's reads, seen message by message: the lines, and the switch out of startup packets. */
function observer(prefix: Buffer): Framer {
  const framer: Framer = new Framer(
    {
      onMessage(type, buf, start, end) {
        if (type === 0) {
          if (end - start >= 8 && !ENCRYPTION_REQUESTS.has(buf.readInt32BE(start + 4))) framer.setStartup(false);
        } else if (type === Q || type === P || type === B || type === E) logLine(prefix, type, buf, start, end);
      },
      onPassthrough() {},
      onFramingError() {},
    },
    { maxLength: 1 << 30, inspect: [Q, P, B, E], startup: true },
  );
  return framer;
}

let connections = 0;
startOnreadRelay(Number(listenArg), upstreamArg, () => {
  const framer = observer(Buffer.from(` conn=${++connections} `, 'latin1'));
  return (chunk) => framer.push(chunk);
});
