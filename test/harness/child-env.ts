// Processes the tests start (pgscribe, `pgscribe replay`, psql, pgbench...) run without tap's
// coverage hook.
//
// tap starts each test file with @tapjs/processinfo's --import in NODE_OPTIONS, and that hook
// wraps child_process (through process-on-spawn) so that every process the test starts gets it
// too and records itself for coverage. make test runs with coverage off, where nothing reads
// those records, yet every pgscribe the tests start loaded the hook: measured in a tap test, a
// `pgscribe --cache --catalog-user postgres` took 520-950 ms to its listening line and 590-640 ms
// of CPU, against 235-305 ms and 240-310 ms without it. make test starts well over a thousand of
// them on a 2-core machine it keeps busy.
//
// So with coverage off, one more process-on-spawn listener, after processinfo's, takes tap's
// hooks back out of each child's NODE_OPTIONS; anything else there stays. The test process keeps
// its own hooks: tap needs them there. With coverage on, nothing changes.

/** process-on-spawn's state, shared by every copy of it through this global symbol. */
const SPAWN_HOOKS = Symbol.for('process-on-spawn@*:singletonId');
type SpawnListener = (o: { env: NodeJS.ProcessEnv }) => void;

/**
 * NODE_OPTIONS without tap's own --import/--loader hooks (those naming @tapjs/). tap writes each
 * option in double quotes; an option may hold spaces inside its quotes.
 */
export function withoutTapHooks(nodeOptions: string): string {
  const options = nodeOptions.match(/"(?:[^"\\]|\\.)*"|[^\s"]+/g) ?? [];
  return options.filter((o) => !/^"?--(import|loader|experimental-loader)=.*@tapjs\//.test(o)).join(' ');
}

let installed = false;

/** From now on, children of this process start without tap's hooks (when coverage is off). */
export function leaveTapHooksOutOfChildren(): void {
  if (installed || process.env['TAP_DISABLE_COVERAGE'] !== '1') return;
  installed = true;
  const state = (globalThis as unknown as Record<symbol, { listeners?: unknown } | undefined>)[SPAWN_HOOKS];
  // Not under tap's processinfo (another runner, another tap): nothing adds the hook.
  if (state === undefined || !Array.isArray(state.listeners)) return;
  const strip: SpawnListener = (o) => {
    const options = o.env['NODE_OPTIONS'];
    if (options === undefined) return;
    const env = { ...o.env };
    const kept = withoutTapHooks(options);
    if (kept === '') delete env['NODE_OPTIONS'];
    else env['NODE_OPTIONS'] = kept;
    o.env = env;
  };
  (state.listeners as SpawnListener[]).push(strip);
}
