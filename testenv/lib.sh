# Shared settings and helpers for testenv/up.sh and testenv/down.sh.
# shellcheck shell=bash disable=SC2034

TOOLS=${REGSWEEP_TOOLS:-$HOME/.cache/regsweep-testenv/bin}
STATE=${REGSWEEP_TESTENV_DIR:-/tmp/regsweep-testenv}
LOGDIR=$STATE/log
RUNDIR=$STATE/run

# Fixed loopback ports (chosen away from the servers' defaults so that a
# system-wide memcached/redis/postgres/swift does not collide with them).
# Each can be overridden with REGSWEEP_TESTENV_<NAME>, e.g.
# REGSWEEP_TESTENV_MINIO_PORT, to run a second environment beside this one.
MINIO_PORT=${REGSWEEP_TESTENV_MINIO_PORT:-19000}
MINIO_CONSOLE_PORT=${REGSWEEP_TESTENV_MINIO_CONSOLE_PORT:-19001}
MINIO_ACCESS_KEY=regsweep
MINIO_SECRET_KEY=regsweep-secret-key
SWIFT_PROXY_PORT=${REGSWEEP_TESTENV_SWIFT_PROXY_PORT:-18080}
SWIFT_OBJECT_PORT=${REGSWEEP_TESTENV_SWIFT_OBJECT_PORT:-16010}
SWIFT_CONTAINER_PORT=${REGSWEEP_TESTENV_SWIFT_CONTAINER_PORT:-16011}
SWIFT_ACCOUNT_PORT=${REGSWEEP_TESTENV_SWIFT_ACCOUNT_PORT:-16012}
SWIFT_MEMCACHED_PORT=${REGSWEEP_TESTENV_SWIFT_MEMCACHED_PORT:-16211}
SWIFT_USER=test:tester
SWIFT_WORKERS=${REGSWEEP_TESTENV_SWIFT_WORKERS:-1}
SWIFT_KEY=testing
PG_PORT=${REGSWEEP_TESTENV_PG_PORT:-15432}
REDIS_PORT=${REGSWEEP_TESTENV_REDIS_PORT:-16379}

SWIFT_SERVERS="object container account proxy"

say() { echo "testenv: $*" >&2; }
die() {
	say "$*"
	exit 1
}

# curl against loopback only, never through a proxy.
lcurl() { curl --noproxy "*" -s -m 5 "$@"; }

port_open() { # port
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# running PID: the process exists and is not a zombie (a server started by an
# earlier up.sh was re-parented, and its reaper may be slow to collect it).
running() {
	local state
	kill -0 "$1" 2>/dev/null || return 1
	[ -r "/proc/$1/stat" ] || return 0
	state=$(sed -e 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# ours PID PROG: the process runs PROG (the pid file's second line).
ours() {
	[ -z "$2" ] && return 0
	[ -r "/proc/$1/cmdline" ] || return 0
	tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2"
}

pid_alive() { # pidfile
	local pid prog
	[ -f "$1" ] || return 1
	pid=$(sed -n 1p "$1" 2>/dev/null)
	prog=$(sed -n 2p "$1" 2>/dev/null)
	[ -n "$pid" ] && running "$pid" && ours "$pid" "$prog"
}

# stop_pidfile NAME: SIGTERM the process group started by start_bg (each
# server runs in its own session, so its pid is its process-group id), wait,
# then SIGKILL.
stop_pidfile() {
	local pidfile=$RUNDIR/$1.pid pid
	[ -f "$pidfile" ] || return 0
	pid=$(sed -n 1p "$pidfile")
	if [ -n "$pid" ] && pid_alive "$pidfile"; then
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 100); do
			running "$pid" || break
			sleep 0.1
		done
		if running "$pid"; then
			kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$pidfile"
}

pg_bindir() {
	local d best=""
	for d in /usr/lib/postgresql/*/bin; do
		[ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && best=$d
	done
	[ -n "$best" ] || return 1
	# Highest version wins (glob order is lexical; 9 < 1x does not matter on
	# Debian 12, which ships 15 only).
	echo "$best"
}

# as_pg CMD...: PostgreSQL refuses to run as root; use the postgres user then.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}
