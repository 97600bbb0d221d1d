// log-rotate-bytes and log-rotate-keep (issue 19): their ranges, and --check refusing rotation
// where there is no file to rotate.
import t from 'tap';
import { checkEnvironment, parseCommandLine, type Config } from '../../src/config';

function config(argv: string[]): Config {
  const cmd = parseCommandLine(argv, {});
  if (cmd.kind !== 'run') throw new Error(`expected run, got ${cmd.kind}`);
  return cmd.config;
}

t.test('defaults: off, keep 5', async (tt) => {
  const c = config([]);
  tt.equal(c.log.rotateBytes, 0);
  tt.equal(c.log.rotateKeep, 5);
});

t.test('ranges: 0 or 4096 to 1 TiB; keep 1 to 1000', async (tt) => {
  tt.equal(config(['--log-rotate-bytes', '4096']).log.rotateBytes, 4096);
  tt.equal(config(['--log-rotate-bytes=0']).log.rotateBytes, 0);
  tt.equal(config(['--log-rotate-bytes', String(2 ** 40)]).log.rotateBytes, 2 ** 40);
  tt.throws(() => config(['--log-rotate-bytes', '100']), { message: /log-rotate-bytes: 100 is out of range: 0 \(off\) or 4096-1099511627776/ });
  tt.throws(() => config(['--log-rotate-bytes', String(2 ** 40 + 1)]), { message: /out of range: 0 \(off\) or 4096-/ });
  tt.throws(() => config(['--log-rotate-bytes', '1MB']), { message: /expected an integer/ });
  tt.equal(config(['--log-rotate-keep', '1']).log.rotateKeep, 1);
  tt.throws(() => config(['--log-rotate-keep', '0']), { message: /out of range 1-1000/ });
});

t.test('--check refuses rotation with --log - or none, with the reason', async (tt) => {
  tt.throws(() => checkEnvironment(config(['--log', '-', '--log-rotate-bytes', '65536'])), { message: /log-rotate-bytes.*--log - writes to stdout, which has no file to rotate/ });
  tt.throws(() => checkEnvironment(config(['--log', 'none', '--log-rotate-bytes', '65536'])), { message: /log-rotate-bytes.*--log none writes no query log/ });
  tt.doesNotThrow(() => checkEnvironment(config(['--log', '-'])), 'stdout without rotation is fine');
  tt.doesNotThrow(() => checkEnvironment(config(['--log', '/tmp/pgscribe-rotate-check.log', '--log-rotate-bytes', '65536'])), 'a file with rotation is fine');
});
