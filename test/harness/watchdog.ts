// The last line of cleanup for servers the tests and benchmarks start: a detached shell that
// waits for this process to die and then stops what it was told to. Exit handlers cover a normal
// exit; the watchdog covers the deaths that skip them (SIGKILL, a signal with no handler).

import { spawn } from 'node:child_process';

export interface Watchdog {
  /** This process is stopping the server itself: end the watchdog (its whole process group). */
  cancel(): void;
}

/**
 * Start a shell that polls this process every half second and, once it is gone, runs `script`.
 * Values reach the script through `env` (merged over PATH), so its command line names no temp
 * directory or pid.
 */
export function watchdog(script: string, env: NodeJS.ProcessEnv = {}): Watchdog {
  const child = spawn('/bin/sh', ['-c', `while kill -0 "$WATCHDOG_PARENT" 2>/dev/null; do sleep 0.5; done\n${script}`], {
    detached: true,
    stdio: 'ignore',
    cwd: '/',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env, WATCHDOG_PARENT: String(process.pid) },
  });
  child.on('error', () => {});
  child.unref();
  let pid = child.pid;
  return {
    cancel() {
      if (pid === undefined) return;
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
      pid = undefined;
    },
  };
}

/** A watchdog that SIGKILLs process `pid` and its process group (SIGCONT first: it may be stopped). */
export function killOnExit(pid: number): Watchdog {
  return watchdog('kill -CONT "$TARGET" 2>/dev/null; kill -9 -"$TARGET" 2>/dev/null; kill -9 "$TARGET" 2>/dev/null', { TARGET: String(pid) });
}
