#!/usr/bin/env bash
# Starts regsweep's real test servers on 127.0.0.1 and writes $STATE/env.sh:
#
#   MinIO        127.0.0.1:19000 (console :19001)
#   Swift (SAIO) proxy 127.0.0.1:18080, tempauth test:tester/testing,
#                account/container/object servers on :16012/:16011/:16010,
#                its own memcached on :16211
#   PostgreSQL   127.0.0.1:15432, trust auth, user postgres
#   Redis        127.0.0.1:16379
#
# State and logs live in ${REGSWEEP_TESTENV_DIR:-/tmp/regsweep-testenv}.
# Servers already running and healthy are reused. Run testenv/install.sh first.
# Quiet on success.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

TIMEOUT=${REGSWEEP_TESTENV_TIMEOUT:-90}

# None of the servers should see the machine's AWS CA bundle (the v2.8 S3
# driver refuses to start with it; nothing here needs it).
unset AWS_CA_BUNDLE

mkdir -p "$STATE" "$LOGDIR" "$RUNDIR"
chmod 755 "$STATE"

for b in minio crane registry registry28; do
	[ -x "$TOOLS/$b" ] || die "$TOOLS/$b is missing: run testenv/install.sh first"
done
for b in swift-ring-builder swift-proxy-server memcached redis-server curl; do
	command -v "$b" >/dev/null 2>&1 || die "$b is missing: run testenv/install.sh first"
done
PGBIN=$(pg_bindir) || die "PostgreSQL (initdb) is missing: run testenv/install.sh first"

# start_bg NAME CMD...: run CMD in its own session (setsid), detached from this
# shell, logging to $LOGDIR/NAME.log, pid in $RUNDIR/NAME.pid.
start_bg() {
	local name=$1
	shift
	echo "---- $(date -u +%FT%TZ) starting: $*" >>"$LOGDIR/$name.log"
	setsid "$@" </dev/null >>"$LOGDIR/$name.log" 2>&1 &
	# Second line: the program's name, so that a stale pid file (after a
	# reboot) never makes down.sh signal an unrelated process.
	local a prog=""
	for a in "$@"; do
		case $a in env | *=*) continue ;; esac
		prog=${a##*/}
		break
	done
	printf '%s\n%s\n' "$!" "$prog" >"$RUNDIR/$name.pid"
}

# wait_until NAME LOG PIDFILE CHECK...: poll CHECK until it succeeds; fail with
# the log's tail if it times out or the process dies.
wait_until() {
	local name=$1 log=$2 pidfile=$3
	shift 3
	local deadline=$((SECONDS + TIMEOUT))
	while :; do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		if [ -n "$pidfile" ] && ! pid_alive "$pidfile"; then
			say "$name exited during startup; last lines of $log:"
			tail -n 30 "$log" >&2 || true
			exit 1
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			say "$name did not become ready within ${TIMEOUT}s; last lines of $log:"
			tail -n 30 "$log" >&2 || true
			exit 1
		fi
		sleep 0.25
	done
}

port_free_or_die() { # name port
	if port_open "$2"; then
		die "$1: port 127.0.0.1:$2 is in use by another process that is not a healthy $1 (see: ss -ltnp | grep :$2)"
	fi
}

# ----------------------------------------------------------------- MinIO ----
minio_healthy() {
	lcurl -f -o /dev/null "http://127.0.0.1:$MINIO_PORT/minio/health/ready"
}
minio_start() {
	minio_healthy && return 0
	stop_pidfile minio
	port_free_or_die MinIO "$MINIO_PORT"
	mkdir -p "$STATE/minio/data"
	# The background scanner re-reads every object's metadata: on the
	# bench's 100k-blob bucket it takes a fifth of a core at idle and makes
	# timings wander. Slowest leaves the CPU to the requests under test.
	# Public metrics (this server listens on 127.0.0.1 only) let `make bench`
	# count each collector's requests at the server, with no proxy in between.
	start_bg minio env MINIO_ROOT_USER="$MINIO_ACCESS_KEY" MINIO_ROOT_PASSWORD="$MINIO_SECRET_KEY" \
		MINIO_UPDATE=off MINIO_CALLHOME_ENABLE=off MINIO_SCANNER_SPEED=slowest MINIO_PROMETHEUS_AUTH_TYPE=public \
		"$TOOLS/minio" server --quiet --anonymous \
		--address "127.0.0.1:$MINIO_PORT" --console-address "127.0.0.1:$MINIO_CONSOLE_PORT" \
		"$STATE/minio/data"
	MINIO_STARTED=1
}
minio_wait() {
	wait_until MinIO "$LOGDIR/minio.log" "${MINIO_STARTED:+$RUNDIR/minio.pid}" minio_healthy
}

# ----------------------------------------------------------------- Swift ----
SW=$STATE/swift
SWIFT_AUTH_URL=http://127.0.0.1:$SWIFT_PROXY_PORT/auth/v1.0

swift_token() { # prints "storage-url token"
	lcurl -f -D - -o /dev/null -H "X-Auth-User: $SWIFT_USER" -H "X-Auth-Key: $SWIFT_KEY" "$SWIFT_AUTH_URL" |
		tr -d '\r' | awk 'tolower($1)=="x-storage-url:"{u=$2} tolower($1)=="x-auth-token:"{t=$2} END{if(u==""||t=="")exit 1; print u, t}'
}
swift_healthy() {
	lcurl -f -o /dev/null "http://127.0.0.1:$SWIFT_PROXY_PORT/healthcheck" || return 1
	swift_token >/dev/null || return 1
	lcurl -f "http://127.0.0.1:$SWIFT_PROXY_PORT/info" | grep -q '"bulk_delete"'
}
# A full round trip through account, container and object servers.
swift_roundtrip() {
	local url token c
	read -r url token < <(swift_token) || return 1
	c=$url/regsweep-testenv-probe
	lcurl -f -o /dev/null -X PUT -H "X-Auth-Token: $token" "$c" &&
		lcurl -f -o /dev/null -X PUT -H "X-Auth-Token: $token" --data-binary probe "$c/probe" &&
		lcurl -f -o /dev/null -X DELETE -H "X-Auth-Token: $token" "$c/probe" &&
		lcurl -f -o /dev/null -X DELETE -H "X-Auth-Token: $token" "$c"
}

swift_write_configs() {
	mkdir -p "$SW/etc" "$SW/node/d1" "$SW/cache" "$SW/run"
	local common
	common="mount_check = false
devices = $SW/node
swift_dir = $SW/etc
bind_ip = 127.0.0.1
workers = ${SWIFT_WORKERS}
user = root
disable_fallocate = true
recon_cache_path = $SW/cache
log_level = INFO"

	cat >"$SW/etc/object-server.conf" <<EOF
[DEFAULT]
bind_port = $SWIFT_OBJECT_PORT
log_name = object-server
$common

[pipeline:main]
pipeline = object-server

[app:object-server]
use = egg:swift#object
# The proxy logs every request; the backends log only problems.
log_requests = false

[object-replicator]
[object-reconstructor]
[object-updater]
[object-auditor]
EOF
	cat >"$SW/etc/container-server.conf" <<EOF
[DEFAULT]
bind_port = $SWIFT_CONTAINER_PORT
log_name = container-server
$common

[pipeline:main]
pipeline = container-server

[app:container-server]
use = egg:swift#container
# The proxy logs every request; the backends log only problems.
log_requests = false

[container-replicator]
[container-updater]
[container-auditor]
[container-sync]
[container-sharder]
EOF
	cat >"$SW/etc/account-server.conf" <<EOF
[DEFAULT]
bind_port = $SWIFT_ACCOUNT_PORT
log_name = account-server
$common

[pipeline:main]
pipeline = account-server

[app:account-server]
use = egg:swift#account
# The proxy logs every request; the backends log only problems.
log_requests = false

[account-replicator]
[account-auditor]
[account-reaper]
EOF
	cat >"$SW/etc/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $SWIFT_PROXY_PORT
swift_dir = $SW/etc
workers = ${SWIFT_WORKERS}
user = root
log_name = proxy-server
log_level = INFO

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl tempauth copy slo dlo versioned_writes symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
allow_account_management = true
account_autocreate = true

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = $SWIFT_KEY .admin
user_admin_admin = admin .admin .reseller_admin

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$SWIFT_MEMCACHED_PORT
memcache_max_connections = 64

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:bulk]
use = egg:swift#bulk

[filter:tempurl]
use = egg:swift#tempurl

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo

[filter:versioned_writes]
use = egg:swift#versioned_writes

[filter:symlink]
use = egg:swift#symlink
EOF
}

swift_ring() { # ring port
	local b=$SW/etc/$1.builder rc=0
	rm -f "$b"
	swift-ring-builder "$b" create 6 1 1 && swift-ring-builder "$b" add "r1z1-127.0.0.1:$2/d1" 100 || return 2
	swift-ring-builder "$b" rebalance || rc=$?
	# Exit status 1 is a warning (e.g. balance), 2 an error.
	[ "$rc" -le 1 ]
}

swift_rings() {
	local ports="$SWIFT_ACCOUNT_PORT $SWIFT_CONTAINER_PORT $SWIFT_OBJECT_PORT"
	# Rings record the servers' ports: rebuild them when the ports change.
	if [ "$(cat "$SW/etc/ring-ports" 2>/dev/null)" != "$ports" ]; then
		rm -f "$SW/etc/"*.ring.gz "$SW/etc/"*.builder
		rm -rf "$SW/etc/backups"
	fi
	# swift-ring-builder takes a second or more per call: build the three in parallel.
	local pids=() ring port pid
	for ring in account container object; do
		[ -f "$SW/etc/$ring.ring.gz" ] && continue
		case $ring in
		account) port=$SWIFT_ACCOUNT_PORT ;;
		container) port=$SWIFT_CONTAINER_PORT ;;
		object) port=$SWIFT_OBJECT_PORT ;;
		esac
		swift_ring "$ring" "$port" >"$LOGDIR/swift-ring-$ring.log" 2>&1 &
		pids+=($!)
	done
	for pid in "${pids[@]}"; do
		wait "$pid" || die "swift-ring-builder failed; see $LOGDIR/swift-ring-*.log"
	done
	echo "$ports" >"$SW/etc/ring-ports"
}

swift_start() {
	swift_healthy && return 0
	local s
	for s in $SWIFT_SERVERS; do stop_pidfile "swift-$s"; done
	stop_pidfile swift-memcached
	for p in "$SWIFT_PROXY_PORT" "$SWIFT_OBJECT_PORT" "$SWIFT_CONTAINER_PORT" "$SWIFT_ACCOUNT_PORT" "$SWIFT_MEMCACHED_PORT"; do
		port_free_or_die Swift "$p"
	done
	[ -f /etc/swift/swift.conf ] || {
		# The servers read the hash prefix/suffix from this fixed path.
		mkdir -p /etc/swift
		printf '[swift-hash]\nswift_hash_path_suffix = regsweep\nswift_hash_path_prefix = regsweep\n\n[storage-policy:0]\nname = Policy-0\ndefault = yes\n' >/etc/swift/swift.conf
	}
	swift_write_configs
	swift_rings
	local mc_user=()
	[ "$(id -u)" = 0 ] && mc_user=(-u root)
	start_bg swift-memcached memcached -l 127.0.0.1 -p "$SWIFT_MEMCACHED_PORT" -U 0 -m 64 "${mc_user[@]}"
	for s in $SWIFT_SERVERS; do
		start_bg "swift-$s" "swift-$s-server" "$SW/etc/$s-server.conf" --verbose
	done
	SWIFT_STARTED=1
}
swift_wait() {
	local s
	if [ -n "${SWIFT_STARTED:-}" ]; then
		for s in memcached $SWIFT_SERVERS; do
			pid_alive "$RUNDIR/swift-$s.pid" || {
				sleep 0.5
				pid_alive "$RUNDIR/swift-$s.pid" || {
					say "Swift $s server exited during startup; last lines of $LOGDIR/swift-$s.log:"
					tail -n 30 "$LOGDIR/swift-$s.log" >&2 || true
					exit 1
				}
			}
		done
		wait_until "Swift proxy" "$LOGDIR/swift-proxy.log" "$RUNDIR/swift-proxy.pid" \
			lcurl -f -o /dev/null "http://127.0.0.1:$SWIFT_PROXY_PORT/healthcheck"
		wait_until "Swift (tempauth via memcached on :$SWIFT_MEMCACHED_PORT)" "$LOGDIR/swift-proxy.log" \
			"$RUNDIR/swift-proxy.pid" swift_token
		wait_until "Swift (container/object round trip)" "$LOGDIR/swift-proxy.log" \
			"$RUNDIR/swift-proxy.pid" swift_roundtrip
	fi
	lcurl -f "http://127.0.0.1:$SWIFT_PROXY_PORT/info" | grep -q '"bulk_delete"' ||
		die "Swift: /info does not advertise bulk_delete (check the proxy pipeline in $SW/etc/proxy-server.conf)"
}

# ------------------------------------------------------------ PostgreSQL ----
PGDATA=$STATE/postgres/data
PG_DSN="postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable"
pg_healthy() {
	timeout 5 "$PGBIN/pg_isready" -q -t 3 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres &&
		PGCONNECT_TIMEOUT=3 timeout 5 "$PGBIN/psql" -X -q -w -At -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c 'select 1' >/dev/null
}
pg_start() {
	pg_healthy && return 0
	mkdir -p "$STATE/postgres/run"
	touch "$LOGDIR/postgres.log"
	if [ "$(id -u)" = 0 ]; then
		id postgres >/dev/null 2>&1 || die "PostgreSQL: the postgres user is missing (install the postgresql package)"
		chown -R postgres: "$STATE/postgres" "$LOGDIR/postgres.log"
	fi
	# A stale server from an earlier run (e.g. wedged): stop it.
	if [ -f "$PGDATA/postmaster.pid" ]; then
		as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate -w -t 20 stop >>"$LOGDIR/postgres.log" 2>&1 || true
	fi
	port_free_or_die PostgreSQL "$PG_PORT"
	if [ ! -f "$PGDATA/PG_VERSION" ]; then
		rm -rf "$PGDATA"
		as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
			>>"$LOGDIR/postgres.log" 2>&1 || {
			say "PostgreSQL initdb failed; last lines of $LOGDIR/postgres.log:"
			tail -n 30 "$LOGDIR/postgres.log" >&2
			exit 1
		}
	fi
	as_pg setsid "$PGBIN/pg_ctl" -D "$PGDATA" -l "$LOGDIR/postgres.log" -W \
		-o "-p $PG_PORT -k $STATE/postgres/run -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
		start >>"$LOGDIR/postgres-ctl.log" 2>&1 </dev/null ||
		die "PostgreSQL: pg_ctl start failed; see $LOGDIR/postgres-ctl.log and $LOGDIR/postgres.log"
}
pg_wait() {
	wait_until PostgreSQL "$LOGDIR/postgres.log" "" pg_healthy
}

# ------------------------------------------------------------------ Redis ----
redis_healthy() {
	[ "$(timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
}
redis_start() {
	redis_healthy && return 0
	stop_pidfile redis
	port_free_or_die Redis "$REDIS_PORT"
	mkdir -p "$STATE/redis"
	start_bg redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
		--dir "$STATE/redis" --daemonize no --protected-mode yes
	REDIS_STARTED=1
}
redis_wait() {
	wait_until Redis "$LOGDIR/redis.log" "${REDIS_STARTED:+$RUNDIR/redis.pid}" redis_healthy
}

# ------------------------------------------------------------------- main ----
# PostgreSQL's initdb and Swift's ring building each take seconds: run the
# PostgreSQL start in the background while the rest starts.
pg_start &
pg_pid=$!
minio_start
redis_start
swift_start
wait "$pg_pid" || exit 1
minio_wait
redis_wait
pg_wait
swift_wait

tmp=$STATE/env.sh.tmp
cat >"$tmp" <<EOF
# Written by testenv/up.sh; source it before running regsweep's tests.
export REGSWEEP_TESTENV_DIR='$STATE'
export REGSWEEP_TEST_MINIO_ENDPOINT='127.0.0.1:$MINIO_PORT'
export REGSWEEP_TEST_MINIO_ACCESS_KEY='$MINIO_ACCESS_KEY'
export REGSWEEP_TEST_MINIO_SECRET_KEY='$MINIO_SECRET_KEY'
export REGSWEEP_TEST_SWIFT_AUTHURL='$SWIFT_AUTH_URL'
export REGSWEEP_TEST_SWIFT_USER='$SWIFT_USER'
export REGSWEEP_TEST_SWIFT_KEY='$SWIFT_KEY'
export REGSWEEP_TEST_PG_DSN='$PG_DSN'
export REGSWEEP_TEST_REDIS_ADDR='127.0.0.1:$REDIS_PORT'
export REGSWEEP_TEST_REGISTRY_V3='$TOOLS/registry'
export REGSWEEP_TEST_REGISTRY_V28='$TOOLS/registry28'
export REGSWEEP_TEST_CRANE='$TOOLS/crane'
export REGSWEEP_TEST_MINIO_BIN='$TOOLS/minio'
EOF
mv "$tmp" "$STATE/env.sh"
