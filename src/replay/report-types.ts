/**
 * What a replay found, as plain data: the comparison (compare.ts) builds it, and the text and
 * HTML reports render it. Durations are milliseconds.
 */

/** How a Q or E ended (the log's `done` status). */
export type OutcomeStatus = 'ok' | 'error' | 'skipped' | 'suspended' | 'aborted';

/** One statement's outcome, as logged at capture or as seen on the target. */
export interface Outcome {
  status: OutcomeStatus;
  sqlstate: string | null;
  rows: number;
  /** First 16 hex digits of SHA-1 over the DataRow bodies; absent when not recorded or no rows. */
  rowsDigest?: string | undefined;
}

/** p50/p99 of a digest's durations (null fields when it has none). */
export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
}

/** Statements of one digest whose outcome changed the same way, e.g. ok -> error 42703. */
export interface OutcomeChange {
  /** "ok" / "error 42703" / "ok rows 3" ...: how each side is shown. */
  before: string;
  after: string;
  count: number;
  /** One of them, to look up in the log: its session (conn) and seq. */
  example: { conn: number; seq: number };
  /** The target's error message for the example, when it failed there. */
  message?: string | undefined;
}

export interface DigestReport {
  /** fingerprintId of the normalized SQL (src/insight/fingerprint.ts). */
  id: string;
  /** The normalized SQL (literals as $n), cut to 500 characters. */
  sql: string;
  /** Statements of this digest in the log (with a done line), and how many replay ran. */
  original: number;
  replayed: number;
  /** Statements whose outcome differs, grouped by how. */
  changes: OutcomeChange[];
  before: LatencySummary | null;
  after: LatencySummary | null;
  /** after.p50 / before.p50 and the same for p99 (null when either side has none or is 0). */
  ratioP50: number | null;
  ratioP99: number | null;
  /** ratioP50 >= the --slower threshold and p50 grew by at least 1 ms. */
  regression: boolean;
}

/** One second of the replay, for the throughput chart. */
export interface TimelinePoint {
  /** Seconds since the replay started. */
  t: number;
  statements: number;
  errors: number;
  /** How far the replay ran behind its schedule at the end of that second (0 at --speed max). */
  lagMs: number;
}

export interface ReplayReport {
  /** The log files read, in the order read. */
  logs: string[];
  /** HOST:PORT replayed against. */
  target: string;
  /** "max" or the factor, e.g. "1", "2". */
  speed: string;
  /** ISO timestamps of the replay. */
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  /** The --slower threshold regressions were judged with. */
  slowerThreshold: number;
  sessions: {
    /** Sessions in the log (after --sessions and the time window). */
    total: number;
    replayed: number;
    /** Could not connect or authenticate on the target, with the first such error. */
    failed: number;
    firstFailure?: string | undefined;
    /** Stopped before their end: a line missing (seq gap) or not replayable. */
    cut: number;
  };
  statements: {
    /** Q and E lines replayed, and those among them that failed on the target. */
    replayed: number;
    errors: number;
    /** Compared statements whose outcome differs from the log's. */
    changed: number;
    /** Statements per second over the replay. */
    rate: number;
    /** Lines not replayed, by reason (e.g. "parameter cut at log-param-max-bytes": 3). */
    notReplayable: Record<string, number>;
    /** Skipped by --read-only. */
    skippedWrites: number;
  };
  /** Every digest seen, regressions and changes first. */
  digests: DigestReport[];
  timeline: TimelinePoint[];
}
