/**
 * Whether synchronous_standby_names would make pgscribe's change stream a synchronous standby.
 *
 * A logical walsender is a candidate like any other: when the setting names its application_name
 * or is '*', PostgreSQL may choose it, and then a commit waits for pgscribe's acknowledgement
 * (pgscribe acknowledges on timers, so seconds) and counts as safely replicated once pgscribe,
 * which keeps no data, has read it. Both break what the operator set synchronous replication up
 * for, so the stream refuses to run while the setting names it (change-stream.ts).
 *
 * The setting's forms (PostgreSQL's syncrep grammar): `name [, ...]`, `[FIRST] n (name [, ...])`,
 * `ANY n (name [, ...])`; a name is an identifier or a double-quoted string, and matches an
 * application_name case-insensitively, or is '*' and matches every one.
 *
 * @see https://www.postgresql.org/docs/15/runtime-config-replication.html#GUC-SYNCHRONOUS-STANDBY-NAMES
 */

/** The standby names the setting lists ([] when it is empty: no synchronous replication). */
export function standbyNames(setting: string): string[] {
  let s = setting.trim();
  if (s === '') return [];
  // The method and count, when given, come before a parenthesized list.
  const open = s.indexOf('(');
  if (open >= 0 && /^(?:(?:first|any)\s+)?\d+\s*$/i.test(s.slice(0, open))) s = s.slice(open + 1, s.lastIndexOf(')') > open ? s.lastIndexOf(')') : undefined);
  const names: string[] = [];
  let i = 0;
  while (i < s.length) {
    while (i < s.length && /[\s,]/.test(s[i]!)) i++;
    if (i >= s.length) break;
    if (s[i] === '"') {
      let name = '';
      i++;
      while (i < s.length) {
        if (s[i] === '"' && s[i + 1] === '"') {
          name += '"';
          i += 2;
        } else if (s[i] === '"') {
          i++;
          break;
        } else name += s[i++];
      }
      names.push(name);
    } else {
      const start = i;
      while (i < s.length && !/[\s,]/.test(s[i]!)) i++;
      names.push(s.slice(start, i));
    }
  }
  return names;
}

/** The setting would let PostgreSQL choose a walsender with this application_name as a synchronous standby. */
export function namesStandby(setting: string, applicationName: string): boolean {
  const app = applicationName.toLowerCase();
  return standbyNames(setting).some((n) => n === '*' || n.toLowerCase() === app);
}
