// The session ledger on its own: statements, portals and request groups as PostgreSQL holds
// them, driven by the calls the session makes as messages go upstream and answers come back.
import t from 'tap';
import { Backend, TxStatus } from '../../src/protocol/codes';
import { SessionLedger, StatementDef } from '../../src/client/ledger';
import { ClientState, afterServerMessage } from '../../src/client/states';

const def = (sql: string) => new StatementDef(sql, sql + '\0\0\0', sql.length);
const sqlOf = (l: SessionLedger, name: string) => {
  const d = l.statement(name);
  return d === undefined ? 'unknown' : d === null ? 'none' : d.sql;
};

t.test('groups: one per Query, Sync or FunctionCall, ended in order by ReadyForQuery', async (t) => {
  const l = new SessionLedger();
  t.equal(l.head, null, 'nothing pending at first');
  t.equal(l.readyForQuery(TxStatus.Idle), undefined, 'the ReadyForQuery ending authentication ends no group');
  l.parse('', def('SELECT 1'));
  t.equal(l.pendingGroups, 0, 'a Parse alone seals nothing');
  const open = l.openGroup();
  t.equal(l.head, open, 'the group being built is answered first when nothing was sealed');
  l.seal(); // Sync
  l.query();
  t.equal(l.pendingGroups, 2);
  t.equal(l.readyForQuery(TxStatus.Idle), open, 'the oldest group ends first');
  t.equal(l.pendingGroups, 1);
  l.readyForQuery(TxStatus.Idle);
  t.equal(l.pendingGroups, 0);
  l.close('S', 'x');
  t.same(l.drain().length, 1, 'drain hands over the group being built too');
  t.equal(l.head, null);
});

t.test('a failed Parse is undone at its ReadyForQuery as PostgreSQL undoes it', async (t) => {
  const l = new SessionLedger();
  const first = def('SELECT 1');
  l.parse('s1', first);
  t.ok(l.completion(Backend.ParseComplete), 'its ParseComplete is relayed');
  l.seal();
  l.readyForQuery(TxStatus.Idle);
  t.equal(sqlOf(l, 's1'), 'SELECT 1');
  // The same name again: the server refuses it (42P05) and keeps the first.
  l.parse('s1', def('SELECT 2'));
  t.equal(sqlOf(l, 's1'), 'SELECT 2', 'believed until the answer says otherwise');
  l.seal();
  l.readyForQuery(TxStatus.Idle);
  t.equal(l.statement('s1'), first, 'a failed named Parse leaves the earlier statement of that name');
  // A failed unnamed Parse leaves none: PostgreSQL drops the old unnamed statement first.
  l.parse('', def('SELECT 3'));
  l.completion(Backend.ParseComplete);
  l.seal();
  l.readyForQuery(TxStatus.Idle);
  l.parse('', def('SELEC 4'));
  l.seal();
  l.readyForQuery(TxStatus.Idle);
  t.equal(sqlOf(l, ''), 'unknown', 'no unnamed statement after a failed unnamed Parse');
  // A Parse that succeeded stays.
  l.parse('s2', def('SELECT 5'));
  l.completion(Backend.ParseComplete);
  l.seal();
  l.readyForQuery(TxStatus.Idle);
  t.equal(sqlOf(l, 's2'), 'SELECT 5');
});

t.test('portals: bound to the statement at their Bind, gone at Close and at the end of the transaction', async (t) => {
  const l = new SessionLedger();
  const d = def('SELECT $1');
  l.parse('s', d);
  l.bind('p', 's');
  l.bind('q', 'nope');
  t.same(l.portal('p'), { statement: 's', def: d });
  t.same(l.portal('q'), { statement: 'nope', def: null }, 'a statement the ledger does not know');
  l.close('P', 'p');
  t.equal(l.portal('p'), undefined, 'Close of a portal');
  l.seal();
  l.readyForQuery(TxStatus.InTransaction);
  t.ok(l.portal('q'), 'still there inside a transaction block');
  l.query();
  l.readyForQuery(TxStatus.Idle);
  t.equal(l.portal('q'), undefined, 'gone when the transaction ends');
});

t.test('the unnamed portal (a field of its own): rebound by each Bind, gone at Close and at the end of the transaction', async (t) => {
  const l = new SessionLedger();
  const d1 = def('SELECT 1');
  const d2 = def('SELECT 2');
  l.parse('a', d1);
  l.parse('b', d2);
  l.bind('', 'a');
  l.bind('n', 'b');
  t.same(l.portal(''), { statement: 'a', def: d1 });
  l.bind('', 'b');
  t.same(l.portal(''), { statement: 'b', def: d2 }, 'the next Bind replaces it');
  t.same(l.portal('n'), { statement: 'b', def: d2 }, 'a named portal is apart from it');
  l.close('P', '');
  t.equal(l.portal(''), undefined, 'Close of the unnamed portal');
  t.ok(l.portal('n'), 'leaves the named one');
  l.bind('', 'a');
  l.seal();
  l.readyForQuery(TxStatus.InTransaction);
  t.ok(l.portal(''), 'still there inside a transaction block');
  l.seal();
  l.readyForQuery(TxStatus.Idle);
  t.equal(l.portal(''), undefined, 'gone when the transaction ends');
  t.equal(l.portal('n'), undefined, 'with the named ones');
  // PostgreSQL runs a simple Query in an unnamed portal of its own: an Execute of the unnamed
  // portal after it, even inside the transaction block, gets 34000 (portal "" does not exist).
  l.bind('', 'a');
  l.bind('n', 'b');
  l.seal();
  l.readyForQuery(TxStatus.InTransaction);
  l.query();
  l.readyForQuery(TxStatus.InTransaction);
  t.equal(l.portal(''), undefined, 'a Query replaces the unnamed portal inside a transaction block');
  t.ok(l.portal('n'), 'and leaves the named ones');
});

t.test('a Query destroys the unnamed statement; forgetStatements() forgets them all', async (t) => {
  const l = new SessionLedger();
  l.parse('', def('SELECT 1'));
  l.parse('n', def('SELECT 2'));
  l.query();
  t.equal(sqlOf(l, ''), 'unknown');
  t.equal(sqlOf(l, 'n'), 'SELECT 2', 'named statements survive a Query');
  l.forgetStatements();
  t.equal(sqlOf(l, 'n'), 'unknown');
});

t.test('an answer the proxy gave: the client believes, the server is repaired before the statement is used', async (t) => {
  const l = new SessionLedger();
  const onServer = def('SELECT 1');
  l.parse('', onServer);
  l.completion(Backend.ParseComplete);
  l.seal();
  l.readyForQuery(TxStatus.Idle);
  t.equal(l.repairUnnamed(), null, 'nothing to repair while client and server agree');
  // A unit with an unnamed Parse answered from the cache: the server never saw it.
  const believed = def('SELECT 2');
  l.answeredLocally(believed);
  t.equal(l.statement(''), believed, "the log and the cache read the client's belief");
  const repair = l.repairUnnamed()!;
  t.equal(repair[0], 0x50, 'a Parse is injected');
  t.equal(repair.subarray(6).toString('latin1'), believed.definition, 'of the believed statement, unnamed');
  t.equal(repair.readUInt32BE(1), repair.length - 1, 'with a right length');
  t.equal(l.repairUnnamed(), null, 'once');
  t.notOk(l.completion(Backend.ParseComplete), 'its ParseComplete is swallowed');
  l.seal();
  l.readyForQuery(TxStatus.Idle);
  t.equal(l.statement(''), believed, 'the server has it now');
  // A Query answered from the cache: the client believes there is no unnamed statement.
  l.answeredLocally(null);
  t.equal(l.statement(''), null);
  const close = l.repairUnnamed()!;
  t.same([...close], [0x43, 0, 0, 0, 6, 0x53, 0], 'a Close of the unnamed statement is injected');
  t.notOk(l.completion(Backend.CloseComplete), 'its CloseComplete is swallowed');
  t.notOk(l.lost, 'the ledger did not lose track');
});

t.test('a completion nobody asked for: the ledger says it lost track', async (t) => {
  const l = new SessionLedger();
  t.ok(l.completion(Backend.ParseComplete), 'relayed all the same');
  t.ok(l.lost);
  const m = new SessionLedger();
  m.close('S', 'x');
  m.completion(Backend.ParseComplete);
  t.ok(m.lost, 'the wrong kind of completion');
});

t.test('server messages move the state as the table says', async (t) => {
  const S = ClientState;
  const cases: [ClientState, number, ClientState | null][] = [
    [S.Request, Backend.RowDescription, S.Response],
    [S.Request, Backend.DataRow, S.Response],
    [S.Response, Backend.DataRow, null],
    [S.Request, Backend.ParameterStatus, null],
    [S.Request, Backend.ReadyForQuery, null],
    [S.Request, Backend.CopyInResponse, S.CopyIn],
    [S.Response, Backend.CopyOutResponse, S.CopyOut],
    [S.Request, Backend.CopyBothResponse, S.CopyBoth],
    [S.CopyOut, Backend.CopyDone, S.Response],
    [S.CopyBoth, Backend.CopyDone, S.Response],
    [S.CopyIn, Backend.CopyDone, null],
    [S.CopyIn, Backend.ErrorResponse, S.Response],
    [S.Request, Backend.ErrorResponse, S.Response],
    [S.Idle, Backend.ErrorResponse, null],
    [S.Authenticating, Backend.Authentication, null],
  ];
  for (const [from, type, to] of cases) {
    t.equal(afterServerMessage(from, type), to, `${from} + '${String.fromCharCode(type)}' -> ${to ?? 'stays'}`);
  }
});

t.test("pgscribe's own requests: side names the one being answered, and only it", async (t) => {
  const l = new SessionLedger();
  const side = (name: string) => ({ capture: null as never, done: () => {}, name });
  t.equal(l.side, null, 'none sent');
  l.query(); // the client's group, answered first
  const probe = side('probe');
  l.sendSide(probe);
  t.equal(l.side, null, "the client's group is answered first");
  l.readyForQuery(TxStatus.Idle);
  t.equal(l.side, probe, 'then the side request');
  const check = side('check');
  l.sendSide(check);
  l.readyForQuery(TxStatus.Idle);
  t.equal(l.side, check, 'the next one once the first ended');
  l.readyForQuery(TxStatus.Idle);
  t.equal(l.side, null, 'none left');
  l.sendSide(side('late'));
  t.equal(l.drain().length, 1, 'a closing session hands it over');
  t.equal(l.side, null, 'and has none left');
  l.sendSide(probe);
  t.equal(l.side, probe, 'a side request after a drain is seen');
});
