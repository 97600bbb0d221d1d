/**
 * Reading /proc (Linux only), for the benchmarks: the CPU time of a process tree (bench/run),
 * one process's CPU, RSS and open sockets (bench/stress).
 *
 * A proxy that forks (Pgpool-II does its work in one child per client connection; a multi-process
 * pgscribe would too) has to be charged for its descendants, not just the pid we started. For a
 * single-process target the result is the same as reading that pid alone.
 */
import * as fs from 'node:fs';
import { runSync } from './run';

/** Clock ticks per second (getconf CLK_TCK): the unit of the CPU times below. */
export const CLK_TCK = Number(runSync('getconf', ['CLK_TCK'])) || 100;

interface ProcStat {
  pid: number;
  ppid: number;
  /** utime + stime: this process's own CPU, all threads. */
  own: number;
  /** cutime + cstime: CPU of its children that have exited and been reaped (wait()ed for). */
  reaped: number;
}

function parseStat(text: string): ProcStat | null {
  // "pid (comm) state ppid ...": comm may contain spaces and parentheses, so split after the last ')'.
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  const pid = Number(text.slice(0, text.indexOf(' ')));
  const f = text.slice(close + 2).split(' ');
  // f[0] is field 3 (state), f[1] ppid (4), f[11] utime (14), f[12] stime (15), f[13] cutime (16), f[14] cstime (17).
  const ppid = Number(f[1]);
  const own = Number(f[11]) + Number(f[12]);
  const reaped = Number(f[13]) + Number(f[14]);
  if (!Number.isFinite(pid) || !Number.isFinite(ppid) || !Number.isFinite(own) || !Number.isFinite(reaped)) return null;
  return { pid, ppid, own, reaped };
}

function readStat(pid: number): ProcStat | null {
  try {
    return parseStat(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null; // exited (and reaped) since we listed /proc
  }
}

/** Pids of `root`'s descendants (not including root), from one scan of /proc. */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of fs.readdirSync('/proc')) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue;
    const s = readStat(Number(name));
    if (s === null) continue;
    let list = children.get(s.ppid);
    if (list === undefined) children.set(s.ppid, (list = []));
    list.push(s.pid);
  }
  const out: number[] = [];
  const stack = [...(children.get(root) ?? [])];
  while (stack.length) {
    const pid = stack.pop()!;
    out.push(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return out;
}

/**
 * CPU time (clock ticks) charged to the tree rooted at `root`: for the root and every live
 * descendant, utime + stime (own work) + cutime + cstime (children it has reaped). Counting the
 * reaped children's time means a worker that exits during a run and is wait()ed for by its parent
 * is still charged: its time moves from its own stat into its parent's cutime/cstime.
 *
 * Known gaps, all small next to a run of several seconds:
 * - a descendant that exits between the before and after reads and is not (yet) reaped by a
 *   process that is still in the tree (e.g. re-parented to init after its parent died) loses
 *   the CPU it used after the "before" read;
 * - the reads are not atomic: a child reaped between reading its stat and reading its parent's
 *   is counted twice (children are read before parents), for that one sample;
 * - CPU used by a process forked and exited entirely between two samples is seen only if its
 *   parent reaps it (then it is in cutime), which is how Pgpool-II and Node's cluster behave.
 * Pgpool-II is configured by the bench so that its children do not exit during a run
 * (child_life_time = 0, child_max_connections = 0), so none of these should happen there.
 */
export function treeCpuTicks(root: number): number {
  // descendants() lists every process after its parent; reversed, children come before parents
  // (and the root last), the order the gap note above assumes.
  const pids = descendants(root).reverse();
  let total = 0;
  for (const pid of pids) total += cpuOf(readStat(pid));
  const r = readStat(root);
  if (r === null) throw new Error(`process ${root} is gone`);
  return total + cpuOf(r);
}

function cpuOf(s: ProcStat | null): number {
  return s === null ? 0 : s.own + s.reaped;
}

/** utime + stime of one process (all its threads), in clock ticks; null when it is gone. */
export function cpuTicks(pid: number): number | null {
  const s = readStat(pid);
  return s === null ? null : s.own;
}

/** Resident set size in bytes (VmRSS); null when the process is gone. */
export function rssBytes(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Open sockets of a process (its fds that are sockets); null when it is gone. */
export function socketCount(pid: number): number | null {
  try {
    let n = 0;
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      try {
        if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) n++;
      } catch {
        // closed meanwhile
      }
    }
    return n;
  } catch {
    return null;
  }
}
