/** Running a foreign proxy (PgBouncer, Pgpool-II) as the postgres OS user when the bench runs as root. */
import * as fs from 'node:fs';
import { runSync } from '../../test/harness/run';

/**
 * The uid/gid to spawn it with: none when we are not root; as root (which both refuse or should
 * not run as), the postgres user's, with `own` (its directory under the bench's `parent`) given
 * to that user and `parent` opened for it to traverse.
 */
export function postgresUser(parent: string, own: string): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  fs.chmodSync(parent, 0o755);
  runSync('chown', ['-R', 'postgres:postgres', own]);
  return { uid: Number(runSync('id', ['-u', 'postgres'])), gid: Number(runSync('id', ['-g', 'postgres'])) };
}
