/** psql against the bench cluster (or a target in front of it), for setup and the wal probes. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PG_BIN } from '../../test/harness/pg-cluster';
import { run } from '../../test/harness/run';

/** psql as the bench cluster's superuser: the cluster's own psql, else the one on $PATH. */
export function psqlBin(): string {
  const p = path.join(PG_BIN, 'psql');
  return fs.existsSync(p) ? p : 'psql';
}

/** Run sql on port (the bench cluster, or a target in front of it), in database postgres as postgres; its unaligned output. */
export async function psql(port: number, sql: string): Promise<string> {
  const r = await run(psqlBin(), ['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-c', sql], {
    timeoutMs: 60_000,
  });
  if (r.code !== 0) throw new Error(`psql failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout.trim();
}
