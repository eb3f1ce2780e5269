#!/usr/bin/env bash
# Stops every server testenv/up.sh started. With --purge also deletes the
# state directory (data, logs, env.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

purge=0
for a in "$@"; do
	case $a in
	--purge) purge=1 ;;
	*) die "usage: testenv/down.sh [--purge]" ;;
	esac
done

[ -d "$STATE" ] || exit 0
mkdir -p "$LOGDIR" "$RUNDIR"

PGDATA=$STATE/postgres/data
if [ -f "$PGDATA/postmaster.pid" ] && PGBIN=$(pg_bindir); then
	as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t 30 stop >>"$LOGDIR/postgres.log" 2>&1 ||
		say "PostgreSQL did not stop cleanly; see $LOGDIR/postgres.log"
fi

pids=()
for n in $SWIFT_SERVERS; do
	stop_pidfile "swift-$n" &
	pids+=($!)
done
for n in swift-memcached minio redis; do
	stop_pidfile "$n" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done
rm -f "$STATE/env.sh"

if [ "$purge" = 1 ]; then
	rm -rf "$STATE"
fi
