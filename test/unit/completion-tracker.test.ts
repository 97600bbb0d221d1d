// The completion tracker (--log-completions) on its own: how each Q and E ends, from the server's
// messages. The done lines through the real proxy are e2e/completions.test.ts.
import t from 'tap';
import { CompletionTracker, errorCode, summarizeAnswer, tagRows, type Completed } from '../../src/client/completions';
import { SessionLedger } from '../../src/client/ledger';

// ---- the tracker ----------------------------------------------------------------------------

function m(type: string, body: Buffer): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b.write(type, 0, 'latin1');
  b.writeUInt32BE(body.length + 4, 1);
  body.copy(b, 5);
  return b;
}
const C = (tag: string) => m('C', Buffer.from(tag + '\0'));
const E = (code: string) => m('E', Buffer.from(`SERROR\0C${code}\0Mboom\0\0`));
const Z = m('Z', Buffer.from('I'));
const I = m('I', Buffer.alloc(0));
const s = m('s', Buffer.alloc(0));

/**
 * A tracker over its session ledger, driven as the session drives it: a Q or E goes into the
 * ledger's open group, Query/Sync/FunctionCall seal it, ReadyForQuery ends the oldest group.
 */
function tracker() {
  const done: Completed[] = [];
  const ledger = new SessionLedger();
  const tr = new CompletionTracker(ledger, (c) => done.push(c));
  const feed = (...msgs: Buffer[]) => {
    for (const b of msgs) {
      if (b[0] === 0x5a) tr.ended(ledger.readyForQuery(b[5]! as 0x49));
      else tr.server(b[0]!, b, 0, b.length);
    }
  };
  const query = (seq: number, sql: string) => {
    tr.sent('Q', seq, sql, 0, undefined, undefined);
    ledger.query();
  };
  const execute = (seq: number, sql: string) => tr.sent('E', seq, sql, 0, undefined, undefined);
  const sync = () => ledger.seal();
  return { tr, ledger, done, feed, query, execute, sync };
}
const brief = (d: Completed[]) => d.map((c) => `${c.of}${c.seq}:${c.status}:${c.rows}${c.sqlstate ? ':' + c.sqlstate : ''}`);

t.test('tagRows reads the count at the end of a CommandComplete tag', async (tt) => {
  for (const [tag, n] of [
    ['SELECT 5', 5],
    ['INSERT 0 12', 12],
    ['UPDATE 0', 0],
    ['COPY 100000', 100000],
    ['BEGIN', 0],
    ['CREATE TABLE', 0],
    ['FETCH 3', 3],
  ] as const) {
    const b = C(tag);
    tt.equal(tagRows(b, 0, b.length), n, tag);
  }
  const b = E('22012');
  tt.equal(errorCode(b, 0, b.length), '22012', 'SQLSTATE of an ErrorResponse');
  const noCode = m('E', Buffer.from('SERROR\0Mno code\0\0'));
  tt.equal(errorCode(noCode, 0, noCode.length), null, 'an ErrorResponse without C field');
  tt.same(summarizeAnswer(Buffer.concat([m('T', Buffer.alloc(2)), m('D', Buffer.alloc(2)), C('SELECT 2'), Z])), { rows: 2, sqlstate: null });
  tt.same(summarizeAnswer(Buffer.concat([E('42P01'), Z])), { rows: 0, sqlstate: '42P01' });
});

t.test('extended pipeline: executes end in order; after an error the rest of the segment is skipped', async (tt) => {
  const { ledger, done, feed, execute, sync } = tracker();
  execute(3, 'a');
  execute(6, 'b');
  execute(9, 'c');
  sync();
  execute(12, 'd');
  sync();
  feed(C('SELECT 1'));
  tt.same(brief(done), ['E3:ok:1'], 'the first Execute ends at its CommandComplete, before Sync');
  feed(E('22012'));
  tt.same(brief(done), ['E3:ok:1', 'E6:error:0:22012']);
  feed(Z);
  tt.same(brief(done), ['E3:ok:1', 'E6:error:0:22012', 'E9:skipped:0'], 'the Execute after the error was skipped');
  feed(I, Z);
  tt.same(brief(done).slice(3), ['E12:ok:0'], 'EmptyQueryResponse ends an Execute');
  tt.equal(ledger.pendingGroups, 0, 'every group answered');
  tt.equal(ledger.head, null, 'nothing left to answer');
});

t.test('simple Q: rows summed over its statements, ends at ReadyForQuery, keeps the first error', async (tt) => {
  const { done, feed, query } = tracker();
  query(1, 'insert ...; select ...');
  feed(C('INSERT 0 3'), C('SELECT 4'));
  tt.same(done, [], 'not done before ReadyForQuery');
  feed(Z);
  tt.same(brief(done), ['Q1:ok:7']);
  query(2, 'select 1; select 1/0');
  feed(C('SELECT 1'), E('22012'), Z);
  tt.same(brief(done).slice(1), ['Q2:error:1:22012']);
});

t.test('PortalSuspended, FunctionCall segments, local answers, abort', async (tt) => {
  const { tr, ledger, done, feed, query, execute, sync } = tracker();
  execute(3, 'x');
  execute(4, 'x');
  sync();
  feed(s, C('SELECT 2'), Z);
  tt.same(brief(done), ['E3:suspended:0', 'E4:ok:2']);
  sync(); // a FunctionCall: its ReadyForQuery closes a segment without queries
  query(5, 'select 1');
  feed(Z);
  tt.same(brief(done).slice(2), [], 'the FunctionCall ReadyForQuery does not end the next Q');
  feed(C('SELECT 1'), Z);
  tt.same(brief(done).slice(2), ['Q5:ok:1']);
  tr.local('E', 8, 'y', performance.now(), Buffer.concat([m('T', Buffer.alloc(2)), C('SELECT 3'), Z]), 'hit', undefined);
  tt.same(brief(done).slice(3), ['E8:ok:3']);
  tt.equal(done[3]!.cache, 'hit');
  query(9, 'select pg_sleep(10)');
  execute(11, 'z');
  sync();
  tr.abort(ledger.drain());
  tt.same(brief(done).slice(4), ['Q9:aborted:0', 'E11:aborted:0'], 'what the connection never answered ends as aborted');
});
