// One session's rate gate (src/limits/rate-gate.ts) on a scripted bucket and a fake session: what
// goes on at once, what is held and delivered after its timer (and nothing else meanwhile), how a
// Query and an Execute are refused, the discard up to Sync, and what is never gated.
import t from 'tap';
import { RateGate, type GatedSession } from '../../src/limits/rate-gate';
import { newLimitCounters } from '../../src/limits/counters';
import { ClientState } from '../../src/client/states';
import { decodeClientMessage, type ClientMessage } from '../../src/protocol/client-messages';
import { enc, errorFields } from '../harness/wire';
import { sleep } from '../harness/time';

class FakeSession implements GatedSession {
  state: ClientState = ClientState.Idle;
  readonly events: string[] = [];
  readonly group = { refusal: null as Buffer | null };
  readonly ledger = { discarding: false, openGroup: () => this.group };
  readonly lines: string[] = [];
  readonly recorder = {
    recording: true,
    record: (msg: ClientMessage, ann: { refused: 'rate-limit' }) => this.lines.push(`${String.fromCharCode(msg.type)} ${ann.refused}`),
  };
  request(type: number): void {
    this.events.push(`request ${String.fromCharCode(type)}`);
  }
  holdForRate(on: boolean): void {
    this.events.push(on ? 'hold' : 'resume');
  }
  forward(type: number): void {
    this.events.push(`forward ${String.fromCharCode(type)}`);
  }
  flushToUpstream(): void {}
  flushToClient(): void {}
  decode(type: number, buf: Buffer, start: number, end: number): ClientMessage | null | undefined {
    return decodeClientMessage(type, buf, start, end);
  }
}

/** A gate whose bucket answers from `script` (ms to wait, -1: past the bound). */
function gate(script: number[], cache: { holdsClient: boolean } | null = null) {
  const s = new FakeSession();
  const counters = newLimitCounters();
  const refused: string[] = [];
  let released = 0;
  const rate = {
    rule: 'rate-limits rule 0 (user=flood)',
    qps: 2,
    take: () => {
      if (script.length === 0) throw new Error('take() called more often than scripted');
      return script.shift()!;
    },
    release: () => released++,
  };
  const g = new RateGate(s, rate, 40, counters, cache, (rule) => refused.push(rule));
  const offer = (b: Buffer) => g.takes(b[0]!, b, 0, b.length);
  return { s, g, counters, refused, offer, released: () => released };
}

t.test('a token at once: the message goes on', async (t) => {
  const { s, g, offer } = gate([0, 0]);
  t.notOk(offer(enc.query('select 1')));
  t.notOk(offer(enc.execute()));
  t.notOk(offer(enc.parse('', 'select 1')), 'only Q and E take tokens');
  t.notOk(offer(enc.sync()));
  t.same(s.events, []);
  t.notOk(g.holding);
});

t.test('a token later: held, the session stops, then the message goes on and the session resumes', async (t) => {
  const { s, g, counters, offer } = gate([20]);
  const q = enc.query('select 1');
  t.ok(offer(q), 'the gate took it');
  t.ok(g.holding);
  t.same(s.events, ['hold']);
  q.fill(0); // the socket chunk is not kept: the gate held a copy
  await sleep(60);
  t.same(s.events, ['hold', 'request Q', 'resume'], 'delivered (its own copy, type Q), then resumed');
  t.notOk(g.holding);
  t.equal(counters.rateDelayed, 1);
  t.ok(counters.rateDelayMs >= 15, `delay counted (${counters.rateDelayMs.toFixed(1)} ms)`);
  t.equal(counters.rateRefused, 0);
});

t.test('a Query past the bound: held for the bound, then a Sync in its place, the error on its group, a marked log line', async (t) => {
  const { s, g, counters, refused, offer } = gate([-1]);
  t.ok(offer(enc.query('select 2')));
  t.same(s.events, ['hold'], 'held first: a client over its rate gets its refusal only after the bound (40 ms)');
  t.equal(s.group.refusal, null, 'not refused yet');
  t.equal(counters.rateRefused, 0);
  await sleep(80);
  t.same(s.events, ['hold', 'forward S', 'resume'], 'then a Sync goes upstream instead, and the session resumes');
  t.notOk(g.holding);
  t.equal(counters.rateDelayed, 0, 'a refused query is not counted as delayed');
  const err = errorFields(s.group.refusal!.subarray(5));
  t.equal(err['C'], '53400');
  t.equal(err['S'], 'ERROR');
  t.equal(err['M'], 'pgscribe: rate limit exceeded: rate-limits rule 0 (user=flood) allows 2 queries per second; this query would have waited more than 40 ms (rate-limit-max-delay-ms)');
  t.same(s.lines, ['Q rate-limit']);
  t.same(refused, ['rate-limits rule 0 (user=flood)']);
  t.equal(counters.rateRefused, 1);
});

t.test('an Execute past the bound: after the bound, dropped with everything up to the Sync, which goes on', async (t) => {
  const { s, g, offer } = gate([-1]);
  t.ok(offer(enc.execute()));
  t.notOk(g.discarding, 'held for the bound first');
  await sleep(80);
  t.ok(g.discarding);
  t.same(s.events, ['hold', 'resume'], 'nothing goes upstream for it');
  t.ok(s.group.refusal !== null, "the error waits for the group's ReadyForQuery");
  t.ok(offer(enc.parse('', 'select 9')), 'a Parse after it is dropped');
  t.ok(offer(enc.execute()), 'an Execute after it is dropped, and takes no token');
  t.ok(offer(enc.query('select 9')), 'even a Query (PostgreSQL ignores it until Sync too)');
  t.notOk(offer(enc.sync()), 'the Sync goes on');
  t.notOk(g.discarding);
  t.same(s.lines, ['E rate-limit'], 'only the refused Execute has a line');
});

t.test('Terminate while discarding goes on', async (t) => {
  const { offer } = gate([-1]);
  offer(enc.execute());
  await sleep(80);
  t.notOk(offer(enc.terminate()));
});

t.test('close while a refusal waits for the bound: nothing is refused or sent', async (t) => {
  const { s, g, counters, offer } = gate([-1]);
  offer(enc.query('select 3'));
  g.close();
  await sleep(80);
  t.same(s.events, ['hold'], 'no Sync, no resume');
  t.equal(counters.rateRefused, 0);
  t.equal(s.group.refusal, null);
});

t.test('never gated: during COPY, or while the server discards a failed batch', async (t) => {
  const { s, offer } = gate([]);
  s.state = ClientState.CopyIn;
  t.notOk(offer(enc.query('select 1')), 'copy-in: the server answers the mistake');
  s.state = ClientState.Idle;
  s.ledger.discarding = true;
  t.notOk(offer(enc.execute()), 'a failed batch: it costs nothing');
});

t.test('the cache holds the batch: past the bound is delayed by the bound instead', async (t) => {
  const { s, counters, offer } = gate([-1], { holdsClient: true });
  t.ok(offer(enc.execute()));
  t.same(s.events, ['hold']);
  t.equal(s.group.refusal, null, 'no refusal');
  await sleep(80);
  t.same(s.events, ['hold', 'request E', 'resume']);
  t.equal(counters.rateDelayed, 1);
  t.equal(counters.rateRefused, 0);
});

t.test('close: the held message is dropped, its timer cleared, the bucket released once', async (t) => {
  const { s, g, offer, released } = gate([20]);
  offer(enc.query('select 1'));
  g.close();
  g.close();
  await sleep(50);
  t.same(s.events, ['hold'], 'never delivered');
  t.equal(released(), 2, 'each close releases (the limiter makes it idempotent)');
});
