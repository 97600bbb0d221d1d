#!/bin/sh
# The README's replay run: capture 20 s of pgbench -M prepared (100 tps, 4 clients) plus a psql
# client through pgscribe with --log-replay, then replay it at --speed 1 against a second server
# holding the same data where pgbench_accounts lost its primary key and audit_note.note was
# renamed. Writes the text report, the JSON and the HTML page into OUT (default
# bench/results/replay-demo-*), and a screenshot of the page with bench/replay-report-shot.ts.
# Needs a compiled tree (make compile) and PostgreSQL 15 binaries; run as root or as a user that
# may run initdb. Usage: sh bench/replay-demo.sh [OUT-PREFIX]
set -eu
cd "$(dirname "$0")/.."
OUT=${1:-bench/results/replay-demo}
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
WORK=$(mktemp -d /tmp/pgscribe-replay-demo-XXXXXX)
chmod 755 "$WORK"
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -c "$1"; else sh -c "$1"; fi; }
start_pg() { # dir port
  mkdir -p "$1"; [ "$(id -u)" = 0 ] && chown postgres "$1"
  as_pg "$BIN/initdb -D $1/data -A trust -U postgres --no-sync >/dev/null && $BIN/pg_ctl -D $1/data -o '-p $2 -k $1' -l $1/log -w start >/dev/null"
}
SRC=$(free_port); start_pg "$WORK/src" "$SRC"
DST=$(free_port); start_pg "$WORK/dst" "$DST"
PROXY=$(free_port)
cleanup() {
  [ -n "${PX:-}" ] && kill "$PX" 2>/dev/null || true
  as_pg "$BIN/pg_ctl -D $WORK/src/data -m fast stop >/dev/null" || true
  as_pg "$BIN/pg_ctl -D $WORK/dst/data -m fast stop >/dev/null" || true
  rm -rf "$WORK"
}
trap cleanup EXIT
q() { psql -X -q -h 127.0.0.1 -U postgres "$@"; }
q -p "$SRC" -d postgres -c 'create database shop'
pgbench -i -q -s 1 -h 127.0.0.1 -p "$SRC" -U postgres shop 2>/dev/null
q -p "$SRC" -d shop -c 'create table audit_note(id int primary key, note text)' -c "insert into audit_note select g, 'n' || g from generate_series(1, 100) g"
pg_dump -h 127.0.0.1 -p "$SRC" -U postgres -C shop | q -p "$DST" -d postgres >/dev/null
# What changed on the target.
q -p "$DST" -d shop -c 'alter table pgbench_accounts drop constraint pgbench_accounts_pkey' -c 'alter table audit_note rename column note to remark'

node dist/main.js --listen "127.0.0.1:$PROXY" --upstream "127.0.0.1:$SRC" --log "$WORK/queries.log" --log-format json --log-replay --catalog-user postgres >"$WORK/proxy.out" 2>&1 &
PX=$!
sleep 1
pgbench -M prepared -c 4 -j 2 -T 20 -R 100 -h 127.0.0.1 -p "$PROXY" -U postgres shop >"$WORK/pgbench.out" 2>&1 &
B=$!
i=1
while [ $i -le 40 ]; do
  q -p "$PROXY" -d shop -c "select note from audit_note where id = $i" -c 'select count(*) from audit_note' >/dev/null
  sleep 0.4
  i=$((i + 1))
done
wait $B
kill "$PX"; wait "$PX" || true; PX=

node dist/main.js replay "$WORK/queries.log" --target "127.0.0.1:$DST" --speed 1 --report "$OUT-report.html" --json "$OUT-report.json" >"$OUT-report.txt"
cat "$OUT-report.txt"
node build/bench/replay-report-shot.js "$OUT-report.json" "$OUT-report.png"
