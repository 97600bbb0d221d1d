// Issue 14, finding 10: `ALTER TABLE s.x RENAME TO t` invalidates x, not t. A cached read of an
// unqualified `t` that resolved to a table later in search_path stays served after the rename
// made `t` resolve to the renamed table.
//
// What PostgreSQL does: names are resolved at each execution; after the rename, `t` is the first
// table of that name in search_path, the renamed one. The class covered here: the issue's
// `s.x RENAME TO t` with search_path `s, public` from the startup packet; the default search_path
// ("$user", public) with a schema named after the user; and ALTER TABLE IF EXISTS.
import t from 'tap';
import { USERS } from '../harness/pg-cluster';
import { issue14Suite, readsAroundWrites, type Scenario, type SessionOptions } from '../helpers/safe-cache';

const USER = USERS.trust.user;

/** R reads; the superuser renames (through the other instance); R and a new session read again. */
function renamed(name: string, setup: string[], read: string, rename: string, opts: SessionOptions): Scenario {
  return readsAroundWrites(name, setup, read, [rename], opts, { user: 'postgres' });
}

const scenarios: Scenario[] = [
  renamed(
    "ALTER TABLE s10.x10 RENAME TO t10, search_path s10, public (the issue's example)",
    [
      'DROP SCHEMA IF EXISTS s10 CASCADE',
      'DROP TABLE IF EXISTS public.t10',
      'CREATE SCHEMA s10',
      'CREATE TABLE public.t10 (body text)',
      "INSERT INTO public.t10 VALUES ('public.t10 row')",
      'CREATE TABLE s10.x10 (body text)',
      "INSERT INTO s10.x10 VALUES ('the renamed s10.x10 row')",
      'GRANT USAGE ON SCHEMA s10 TO PUBLIC',
      'GRANT SELECT ON public.t10, s10.x10 TO PUBLIC',
    ],
    'SELECT body FROM t10',
    'ALTER TABLE s10.x10 RENAME TO t10',
    { params: { options: '-c search_path=s10,public' } },
  ),
  renamed(
    'ALTER TABLE <user schema>.x10u RENAME TO t10u, default search_path ("$user", public)',
    [
      `DROP SCHEMA IF EXISTS ${USER} CASCADE`,
      'DROP TABLE IF EXISTS public.t10u',
      `CREATE SCHEMA ${USER} AUTHORIZATION ${USER}`,
      'CREATE TABLE public.t10u (body text)',
      "INSERT INTO public.t10u VALUES ('public.t10u row')",
      `CREATE TABLE ${USER}.x10u (body text)`,
      `INSERT INTO ${USER}.x10u VALUES ('the renamed ${USER}.x10u row')`,
      `GRANT SELECT ON public.t10u, ${USER}.x10u TO PUBLIC`,
    ],
    'SELECT body FROM t10u',
    `ALTER TABLE ${USER}.x10u RENAME TO t10u`,
    {},
  ),
  renamed(
    'ALTER TABLE IF EXISTS s10.old10 RENAME TO shadow10: the new name shadows public.shadow10',
    [
      'DROP SCHEMA IF EXISTS s10 CASCADE',
      'DROP TABLE IF EXISTS public.shadow10',
      'CREATE SCHEMA s10',
      'CREATE TABLE public.shadow10 (body text)',
      "INSERT INTO public.shadow10 VALUES ('public.shadow10 row')",
      'CREATE TABLE s10.old10 (body text)',
      "INSERT INTO s10.old10 VALUES ('the renamed s10.old10 row')",
      'GRANT USAGE ON SCHEMA s10 TO PUBLIC',
      'GRANT SELECT ON public.shadow10, s10.old10 TO PUBLIC',
    ],
    'SELECT body FROM shadow10',
    'ALTER TABLE IF EXISTS s10.old10 RENAME TO shadow10',
    { params: { options: '-c search_path=s10,public' } },
  ),
];

issue14Suite(t, { scenarios });
