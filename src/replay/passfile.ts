/**
 * Passwords for the target, never from the log: PGPASSWORD, or a passfile in libpq's `.pgpass`
 * format (hostname:port:database:username:password, `*` matches anything, `\` escapes `:` and
 * `\`, the first matching line wins).
 *
 * @see https://www.postgresql.org/docs/15/libpq-pgpass.html
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

interface Entry {
  fields: [string, string, string, string];
  password: string;
}

/** Split one passfile line at unescaped colons; null when it has not five fields. */
export function passfileFields(line: string): string[] | null {
  const fields: string[] = [];
  let cur = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length) {
      cur += line[++i]!;
    } else if (c === ':' && fields.length < 4) {
      fields.push(cur);
      cur = '';
    } else cur += c;
  }
  fields.push(cur);
  return fields.length === 5 ? fields : null;
}

export function parsePassfile(text: string): Entry[] {
  const out: Entry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (line === '' || line.startsWith('#')) continue;
    const f = passfileFields(line);
    if (f === null) continue;
    out.push({ fields: [f[0]!, f[1]!, f[2]!, f[3]!], password: f[4]! });
  }
  return out;
}

export class Passwords {
  private readonly entries: Entry[];

  /** file: --passfile, else PGPASSFILE, else ~/.pgpass (a missing default file is no error). */
  constructor(
    file: string | null,
    private readonly env: string | undefined = process.env['PGPASSWORD'],
  ) {
    const explicit = file ?? process.env['PGPASSFILE'] ?? null;
    const p = explicit ?? path.join(os.homedir(), '.pgpass');
    let text = '';
    try {
      text = fs.readFileSync(p, 'utf8');
    } catch (err) {
      if (file !== null) throw new Error(`cannot read the passfile ${p}: ${(err as Error).message}`);
    }
    this.entries = parsePassfile(text);
  }

  /** The password for this login on the target ('' when none is known: trust, or the server will say). */
  lookup(host: string, port: number, database: string, user: string): string {
    if (this.env !== undefined && this.env !== '') return this.env;
    const want = [host, String(port), database, user];
    for (const e of this.entries) {
      if (e.fields.every((f, i) => f === '*' || f === want[i])) return e.password;
    }
    return '';
  }
}
