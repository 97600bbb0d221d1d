/**
 * The load tools of `make stress` (sysbench, pgbench) as child processes: each in its own process
 * group, killed on exit, and watched by a watchdog that kills it if this process dies without
 * running its exit handlers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { RunResult } from '../../test/harness/run';
import { killOnExit } from '../../test/harness/watchdog';

const children = new Set<ChildProcess>();

/** Signal a child's whole process group (the child alone when that fails). */
export function killGroup(c: ChildProcess, sig: NodeJS.Signals): void {
  if (c.pid === undefined || c.exitCode !== null || c.signalCode !== null) return;
  try {
    process.kill(-c.pid, sig);
  } catch {
    try {
      c.kill(sig);
    } catch {
      // gone
    }
  }
}

function track(c: ChildProcess): void {
  children.add(c);
  const dog = killOnExit(c.pid!);
  c.once('exit', () => {
    children.delete(c);
    dog.cancel();
  });
}

/** SIGKILL every tool still running (cleanup). */
export function killTools(): void {
  for (const c of [...children]) killGroup(c, 'SIGKILL');
}

export interface Tool {
  name: string;
  child: ChildProcess;
  stdout: string;
  stderr: string;
  done: Promise<RunResult>;
}

/** Start a command in its own process group; `done` resolves when it exits (never rejects). */
export function startTool(name: string, cmd: string, args: string[], opts: { timeoutMs: number; onLine?: (line: string) => void }): Tool {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  track(child);
  const tool: Tool = { name, child, stdout: '', stderr: '', done: Promise.resolve({ code: null, signal: null, stdout: '', stderr: '' }) };
  let partial = '';
  const lines = (d: string) => {
    if (!opts.onLine) return;
    partial += d;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      opts.onLine(partial.slice(0, nl));
      partial = partial.slice(nl + 1);
    }
  };
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    tool.stdout += d;
    lines(d);
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    tool.stderr += d;
    lines(d);
  });
  tool.done = new Promise((resolve) => {
    const timer = setTimeout(() => killGroup(child, 'SIGKILL'), opts.timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      tool.stderr += `\ncannot run ${cmd}: ${e.message}\n`;
      resolve({ code: null, signal: null, stdout: tool.stdout, stderr: tool.stderr });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: tool.stdout, stderr: tool.stderr });
    });
  });
  return tool;
}
