// Assertions shared by the protocol tests.

import type { Test } from 'tap';
import { describeMessages, errorsIn, type RawClient } from '../harness/wire';

/** The assertions the helpers below make (a tap Test or a subtest). */
export type Tap = Pick<Test, 'equal' | 'ok' | 'match' | 'same' | 'notMatch' | 'not'>;

/**
 * The peer answers with exactly one FATAL ErrorResponse carrying `code`, sends nothing after it,
 * and closes the connection (within timeoutMs). Returns the error's fields.
 */
export async function expectFatalAndClose(t: Tap, c: RawClient, code: string, what: string, timeoutMs = 8000): Promise<Record<string, string>> {
  const r = await c.readUntilClosed(timeoutMs);
  const got = describeMessages(r.msgs);
  t.ok(r.closed, `${what}: connection closed (got ${got})`);
  const errs = errorsIn(r.msgs);
  t.equal(errs.length, 1, `${what}: exactly one ErrorResponse (got ${got})`);
  const f = errs[0] ?? {};
  t.equal(f['S'], 'FATAL', `${what}: severity FATAL`);
  t.equal(f['V'], 'FATAL', `${what}: non-localized severity FATAL`);
  t.equal(f['C'], code, `${what}: SQLSTATE ${code} (message: ${f['M']})`);
  t.equal(r.msgs[r.msgs.length - 1]?.type, 'E', `${what}: the ErrorResponse is the last message`);
  return f;
}
