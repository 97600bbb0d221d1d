// The session-scope interner (cache/session.ts): short ids that are never reused, in a table
// bounded in scopes and, since a client controls its scope's length, in characters (issue 15,
// finding 18: 100,000 scopes of 10 KB each would have been kept).
import t from 'tap';
import { fingerprintInterner } from '../../src/cache/session';

t.test('the same scope gets the same id while the table holds it', async (t) => {
  const intern = fingerprintInterner();
  const a = intern('db\0user\0a');
  t.equal(intern('db\0user\0a'), a);
  t.not(intern('db\0user\0b'), a, 'another scope, another id');
});

t.test('past its character bound the table is dropped: old scopes get new ids, ids are never reused', async (t) => {
  const intern = fingerprintInterner(1000, 100);
  const a = intern('a'.repeat(60));
  const b = intern('b'.repeat(60));
  const a2 = intern('a'.repeat(60));
  t.not(a2, a, 'the table was dropped when 120 characters would not fit in 100');
  t.equal(new Set([a, b, a2]).size, 3, 'no id reused');
});

t.test('past its entry bound too', async (t) => {
  const intern = fingerprintInterner(2);
  const a = intern('a');
  intern('b');
  intern('c');
  t.not(intern('a'), a);
});
