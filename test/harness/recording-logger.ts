// A ClientLogger (src/log/client-logger.ts) that keeps what it is given in arrays instead of
// writing lines: the second implementation that proves the logger is pluggable, and what the
// in-process harness hands to its Server by default.

import type { ClientLogger } from '../../src/log/client-logger';
import type { CompletionRecord, QueryRecord, SessionInfo } from '../../src/log/format';

/** One log() call: the record, with the session it came from; copies, safe to keep. */
export interface LoggedQuery extends Omit<QueryRecord, 'params'> {
  session: SessionInfo;
  /** Bind parameters, copied out of the message (the record's are views of it). */
  params: { formats: number[]; values: (Buffer | null)[] } | null;
}

/** One logCompletion() call. */
export interface LoggedCompletion extends CompletionRecord {
  session: SessionInfo;
}

export class RecordingLogger implements ClientLogger {
  readonly enabled = true;
  readonly queuedBytes = 0;
  readonly queries: LoggedQuery[] = [];
  readonly completions: LoggedCompletion[] = [];

  log(session: SessionInfo, record: QueryRecord): boolean {
    const { params, ...rest } = record;
    this.queries.push({
      ...rest,
      session: { ...session },
      params: params === null ? null : { formats: [...params.formats], values: params.values.map((v) => (v === null ? null : Buffer.from(v))) },
    });
    return true;
  }

  logCompletion(session: SessionInfo, record: CompletionRecord): boolean {
    this.completions.push({ ...record, session: { ...session } });
    return true;
  }

  /** Never behind: log() never returns false, so this is never waited on. */
  onDrain(cb: () => void): void {
    cb();
  }

  reopen(): void {}

  flush(): Promise<void> {
    return Promise.resolve();
  }

  flushSync(): void {}

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Records accepted so far, as SinkLogger counts its lines. */
  get lines(): number {
    return this.queries.length + this.completions.length;
  }
}
