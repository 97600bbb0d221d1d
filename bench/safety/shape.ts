/**
 * The result shape PostgreSQL gives a statement: its columns (names and type OIDs) as a Describe
 * on a direct connection shows them under a given search_path, or the error it fails with.
 * Asked once per (statement, search_path) and remembered; the one direct connection is used by
 * one request at a time.
 *
 * @see https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY
 */
import { RawClient, enc } from '../../test/harness/wire';
import { decodeReply, decodeRowDescription, type Answer, type Col } from './conn';
import type { Finding } from './oracle';

type Shape = { cols: Col[] | null } | { error: string };

/** Errors that say nothing about the statement (lock timeout, deadlock, cancel). */
const TRANSIENT = new Set(['55P03', '40P01', '40001', '57014']);

export class ShapeOracle {
  private readonly memo = new Map<string, Promise<Shape>>();
  private queue: Promise<unknown> = Promise.resolve();
  private readonly raw: RawClient;

  private constructor(raw: RawClient) {
    this.raw = raw;
  }

  static async open(port: number): Promise<ShapeOracle> {
    const raw = await RawClient.connect(port);
    await raw.startup('postgres');
    // A Describe waits for the locks a REFRESH or a writer holds; it must not time out meanwhile.
    await raw.query("SET lock_timeout = '60s'");
    return new ShapeOracle(raw);
  }

  private describe(sql: string, searchPath: string): Promise<Shape> {
    const run = async (): Promise<Shape> => {
      await this.raw.query(`SET search_path = ${searchPath}`);
      this.raw.write(Buffer.concat([enc.parse('', sql), enc.describe('S', ''), enc.sync()]));
      const msgs = await this.raw.readZ(1, 30_000);
      const err = decodeReply(msgs).answers.find((x) => x.error !== null);
      if (err !== undefined) return { error: err.error!.code };
      const t = msgs.find((m) => m.type === 'T');
      return { cols: t === undefined ? null : decodeRowDescription(t.body) };
    };
    const p = this.queue.then(run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** Findings about the shape of an answer (none when the answer is an error). */
  async check(sql: string, searchPath: string, a: Answer): Promise<Finding[]> {
    if (a.error !== null) return [];
    const key = `${searchPath}\0${sql}`;
    let p = this.memo.get(key);
    if (p === undefined) {
      p = this.describe(sql, searchPath);
      this.memo.set(key, p);
    }
    const want = await p;
    if ('error' in want && TRANSIENT.has(want.error)) {
      this.memo.delete(key); // not an answer about the statement: ask again next time
      return [];
    }
    if ('error' in want) return [{ kind: 'shape', detail: `rows answered; PostgreSQL fails this statement under search_path '${searchPath}' with ${want.error}` }];
    const w = fmt(want.cols);
    const g = fmt(a.cols);
    return w === g ? [] : [{ kind: 'shape', detail: `columns ${g}, PostgreSQL describes ${w}` }];
  }

  close(): void {
    this.raw.sock.destroy();
  }
}

function fmt(cols: Col[] | null): string {
  return cols === null ? '(none)' : cols.map((c) => `${c.name}:${c.oid}`).join(',');
}
