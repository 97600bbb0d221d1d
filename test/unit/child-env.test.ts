// test/harness/child-env.ts: with coverage off, processes a test starts run without tap's import
// hooks (they tripled a pgscribe start's CPU); with coverage on, they keep them, for coverage.
import t from 'tap';
import { withoutTapHooks } from '../harness/child-env';
import { run } from '../harness/run';

t.test('withoutTapHooks drops the options that load a @tapjs module, and only those', async (t) => {
  const pi = '"--import=file:///w/node_modules/@tapjs/processinfo/dist/esm/import.mjs"';
  t.equal(withoutTapHooks(pi), '', 'tap\'s quoted --import alone');
  t.equal(withoutTapHooks(`--max-old-space-size=100 ${pi} "--enable-source-maps"`), '--max-old-space-size=100 "--enable-source-maps"', 'the rest stays, in order, as written');
  t.equal(withoutTapHooks('"--import=file:///a dir/@tapjs/x.mjs" "--require=/a dir/b.js"'), '"--require=/a dir/b.js"', 'quoted options with spaces are one option each');
  t.equal(withoutTapHooks('--loader=/n/@tapjs/mock/loader.mjs --experimental-loader=/n/@tapjs/y.mjs --import=/mine/hook.mjs'), '--import=/mine/hook.mjs', 'loaders too; a hook of the user\'s stays');
  t.equal(withoutTapHooks('--require=/n/@tapjs/notahook.js'), '--require=/n/@tapjs/notahook.js', 'a --require is not one of tap\'s hooks');
});

t.test('a child started through run() gets tap\'s hooks only when coverage is on', async (t) => {
  const r = await run(process.execPath, ['-e', 'process.stdout.write(String(process.env.NODE_OPTIONS ?? ""))']);
  t.equal(r.code, 0, r.stderr);
  if (process.env['TAP_DISABLE_COVERAGE'] === '1') t.notMatch(r.stdout, /@tapjs\//, `coverage off: no tap hook in the child (NODE_OPTIONS=${r.stdout})`);
  else t.match(r.stdout, /@tapjs\/processinfo/, 'coverage on: the child records itself for it');
});
