// The completion tracker (--log-completions) on its own: how each Q and E ends, from the server's
// messages. The done lines through the real proxy are e2e/completions.test.ts.
import t from 'tap';
import { CompletionTracker, errorCode, summarizeAnswer, tagRows, type Completed } from '../../src/completions';

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

function tracker(): { tr: CompletionTracker; done: Completed[]; feed: (...msgs: Buffer[]) => void } {
  const done: Completed[] = [];
  const tr = new CompletionTracker((c) => done.push(c));
  const feed = (...msgs: Buffer[]) => {
    for (const b of msgs) tr.server(b[0]!, b, 0, b.length);
  };
  return { tr, done, feed };
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
  const { tr, done, feed } = tracker();
  tr.execute(3, 'a', 0, undefined, undefined);
  tr.execute(6, 'b', 0, undefined, undefined);
  tr.execute(9, 'c', 0, undefined, undefined);
  tr.sync();
  tr.execute(12, 'd', 0, undefined, undefined);
  tr.sync();
  feed(C('SELECT 1'));
  tt.same(brief(done), ['E3:ok:1'], 'the first Execute ends at its CommandComplete, before Sync');
  feed(E('22012'));
  tt.same(brief(done), ['E3:ok:1', 'E6:error:0:22012']);
  feed(Z);
  tt.same(brief(done), ['E3:ok:1', 'E6:error:0:22012', 'E9:skipped:0'], 'the Execute after the error was skipped');
  feed(I, Z);
  tt.same(brief(done).slice(3), ['E12:ok:0'], 'EmptyQueryResponse ends an Execute');
  tt.equal(tr.pending, 0);
});

t.test('simple Q: rows summed over its statements, ends at ReadyForQuery, keeps the first error', async (tt) => {
  const { tr, done, feed } = tracker();
  tr.query(1, 'insert ...; select ...', 0, undefined, undefined);
  feed(C('INSERT 0 3'), C('SELECT 4'));
  tt.same(done, [], 'not done before ReadyForQuery');
  feed(Z);
  tt.same(brief(done), ['Q1:ok:7']);
  tr.query(2, 'select 1; select 1/0', 0, undefined, undefined);
  feed(C('SELECT 1'), E('22012'), Z);
  tt.same(brief(done).slice(1), ['Q2:error:1:22012']);
});

t.test('PortalSuspended, FunctionCall segments, local answers, abort', async (tt) => {
  const { tr, done, feed } = tracker();
  tr.execute(3, 'x', 0, undefined, undefined);
  tr.execute(4, 'x', 0, undefined, undefined);
  tr.sync();
  feed(s, C('SELECT 2'), Z);
  tt.same(brief(done), ['E3:suspended:0', 'E4:ok:2']);
  tr.sync(); // a FunctionCall: its ReadyForQuery closes a segment without queries
  tr.query(5, 'select 1', 0, undefined, undefined);
  feed(Z);
  tt.same(brief(done).slice(2), [], 'the FunctionCall ReadyForQuery does not end the next Q');
  feed(C('SELECT 1'), Z);
  tt.same(brief(done).slice(2), ['Q5:ok:1']);
  tr.local('E', 8, 'y', performance.now(), Buffer.concat([m('T', Buffer.alloc(2)), C('SELECT 3'), Z]), 'hit', undefined);
  tt.same(brief(done).slice(3), ['E8:ok:3']);
  tt.equal(done[3]!.cache, 'hit');
  tr.query(9, 'select pg_sleep(10)', 0, undefined, undefined);
  tr.execute(11, 'z', 0, undefined, undefined);
  tr.sync();
  tr.abort();
  tt.same(brief(done).slice(4), ['Q9:aborted:0', 'E11:aborted:0'], 'what the connection never answered ends as aborted');
});
