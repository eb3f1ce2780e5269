#!/usr/bin/env bash
# Installs the tools regsweep's real-server tests need, skipping whatever is
# already installed at the pinned version:
#
#   crane, registry (Distribution v3), registry28 (Distribution v2.8.3, built
#   from testenv/registry28), minio    -> $REGSWEEP_TOOLS (go install)
#   swift (all-in-one), memcached, redis, postgresql -> Debian packages
#
# Environment:
#   REGSWEEP_TOOLS        where Go tools go (default ~/.cache/regsweep-testenv/bin)
#   REGSWEEP_TESTENV_DIR  state dir; install logs go to $REGSWEEP_TESTENV_DIR/log
#
# Quiet on success; on failure prints the tail of the failing step's log.
set -euo pipefail

# Pinned versions. crane and minio are what @latest resolved to when the
# environment was set up; bump them deliberately.
CRANE_VERSION=v0.22.1
REGISTRY_VERSION=v3.1.2
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOOLS=${REGSWEEP_TOOLS:-$HOME/.cache/regsweep-testenv/bin}
STATE=${REGSWEEP_TESTENV_DIR:-/tmp/regsweep-testenv}
LOGDIR=$STATE/log
mkdir -p "$TOOLS" "$LOGDIR"

die() {
	echo "testenv/install.sh: $*" >&2
	exit 1
}

fail_with_log() { # step log
	echo "testenv/install.sh: $1 failed; last lines of $2:" >&2
	tail -n 40 "$2" >&2 || true
	exit 1
}

SUDO=()
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot install Debian packages"
	SUDO=(sudo)
fi

# ---------------------------------------------------------------- Debian ----
apt_pkgs=(swift swift-proxy swift-account swift-container swift-object
	python3-swiftclient memcached redis-server curl ca-certificates)

pg_bin_ok() {
	local d
	for d in /usr/lib/postgresql/*/bin; do
		[ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && return 0
	done
	return 1
}
pg_bin_ok || apt_pkgs+=(postgresql)

missing=()
for p in "${apt_pkgs[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	log=$LOGDIR/install-apt.log
	{
		echo "installing: ${missing[*]}"
		"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
			"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
				--no-install-recommends "${missing[@]}"
	} >"$log" 2>&1 || fail_with_log "apt-get install ${missing[*]}" "$log"
fi

# ------------------------------------------------------------------- Go -----
command -v go >/dev/null 2>&1 || die "go is not on PATH"

# mod_version BINARY MODULE: the version of MODULE the binary was built from.
mod_version() {
	[ -x "$1" ] || return 0
	go version -m "$1" 2>/dev/null | awk -v m="$2" '($1 == "mod" || $1 == "dep") && $2 == m { print $3; exit }'
}

pids=()
names=()
logs=()
start_go() { # name log command...
	local name=$1 log=$2
	shift 2
	("$@") >"$log" 2>&1 &
	pids+=($!)
	names+=("$name")
	logs+=("$log")
}

go_install() { # name module version package
	local name=$1 module=$2 version=$3 pkg=$4
	if [ "$(mod_version "$TOOLS/$name" "$module")" = "$version" ]; then
		return 0
	fi
	# GOFLAGS=-mod=... is not allowed with `go install pkg@version`.
	start_go "$name" "$LOGDIR/install-$name.log" \
		env GOBIN="$TOOLS" GOFLAGS=-buildvcs=false go install "$pkg@$version"
}

go_install crane github.com/google/go-containerregistry "$CRANE_VERSION" \
	github.com/google/go-containerregistry/cmd/crane
go_install registry github.com/distribution/distribution/v3 "$REGISTRY_VERSION" \
	github.com/distribution/distribution/v3/cmd/registry
go_install minio github.com/minio/minio "$MINIO_VERSION" github.com/minio/minio

# registry28: our wrapper module; rebuilt when its sources change.
r28_stamp=$TOOLS/.registry28.stamp
r28_sum=$(cat "$HERE/registry28/go.mod" "$HERE/registry28/go.sum" "$HERE/registry28/"*.go | sha256sum | cut -d' ' -f1)
if [ ! -x "$TOOLS/registry28" ] || [ "$(cat "$r28_stamp" 2>/dev/null)" != "$r28_sum" ]; then
	build_r28() {
		cd "$HERE/registry28" &&
			GOFLAGS="-mod=mod -buildvcs=false" go build -trimpath -o "$TOOLS/registry28.tmp" . &&
			mv "$TOOLS/registry28.tmp" "$TOOLS/registry28" &&
			echo "$r28_sum" >"$r28_stamp"
	}
	start_go registry28 "$LOGDIR/install-registry28.log" build_r28
fi

failed=0
for i in "${!pids[@]}"; do
	if ! wait "${pids[$i]}"; then
		echo "testenv/install.sh: building ${names[$i]} failed; last lines of ${logs[$i]}:" >&2
		tail -n 40 "${logs[$i]}" >&2 || true
		failed=1
	fi
done
[ "$failed" = 0 ] || exit 1

for b in crane registry registry28 minio; do
	[ -x "$TOOLS/$b" ] || die "$TOOLS/$b missing after install"
done

# ====================================================================== #
# deploy tools (issue 7: container image, Helm chart, alert rules).      #
# Owned by the deploy/ work; keep other installs out of this block.      #
#   ko, helm  -> $REGSWEEP_TOOLS (go install, pinned)                    #
#   promtool  -> Debian's prometheus package (its server is not started) #
#   systemd-analyze -> Debian's systemd package (checks the unit files)   #
# ====================================================================== #
KO_VERSION=v0.19.1
HELM_VERSION=v3.22.0

pids=()
names=()
logs=()
go_install ko github.com/google/ko "$KO_VERSION" github.com/google/ko
go_install helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm

if ! command -v systemd-analyze >/dev/null 2>&1; then
	log=$LOGDIR/install-systemd.log
	{
		"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
			"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
				--no-install-recommends systemd
	} >"$log" 2>&1 || fail_with_log "apt-get install systemd" "$log"
fi

if ! command -v promtool >/dev/null 2>&1; then
	log=$LOGDIR/install-prometheus.log
	# Only promtool is wanted: keep the package from starting the Prometheus
	# server (a policy-rc.d saying 101 is honoured by invoke-rc.d and
	# deb-systemd-invoke), and disable the unit it enables.
	own_policy=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null &&
			"${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d && own_policy=1
	fi
	rc=0
	{
		"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
			"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
				--no-install-recommends prometheus
	} >"$log" 2>&1 || rc=$?
	[ "$own_policy" = 0 ] || "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d
	[ "$rc" = 0 ] || fail_with_log "apt-get install prometheus" "$log"
	{
		if [ -d /run/systemd/system ]; then
			"${SUDO[@]}" systemctl disable --now prometheus.service || true
		else
			"${SUDO[@]}" update-rc.d prometheus disable || true
			"${SUDO[@]}" invoke-rc.d prometheus stop || true
		fi
	} >>"$log" 2>&1
fi

failed=0
for i in "${!pids[@]}"; do
	if ! wait "${pids[$i]}"; then
		echo "testenv/install.sh: building ${names[$i]} failed; last lines of ${logs[$i]}:" >&2
		tail -n 40 "${logs[$i]}" >&2 || true
		failed=1
	fi
done
[ "$failed" = 0 ] || exit 1
for b in ko helm; do
	[ -x "$TOOLS/$b" ] || die "$TOOLS/$b missing after install"
done
command -v promtool >/dev/null 2>&1 || die "promtool missing after installing prometheus"
command -v systemd-analyze >/dev/null 2>&1 || die "systemd-analyze missing after installing systemd"
# ==================================================== end deploy tools == #

# ====================================================================== #
# report tools (issue 5: audit reports). Owned by the reports work.      #
#   chromium -> Debian package: the HTML report test renders the report  #
#               headless (--dump-dom, --screenshot); no node needed.     #
# ====================================================================== #
if ! command -v chromium >/dev/null 2>&1; then
	log=$LOGDIR/install-chromium.log
	{
		"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
			"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
				--no-install-recommends chromium
	} >"$log" 2>&1 || fail_with_log "apt-get install chromium" "$log"
fi

# ====================================================================== #
# bench tools (issue 18: the filesystem part of make bench).             #
#   strace -> Debian package: counts each collector's syscalls           #
#   time   -> Debian package: GNU time, the peak RSS of each run         #
# The simulated network filesystem (make bench-latency) is a FUSE mount  #
# made by the bench itself (go-fuse, as root): it needs /dev/fuse, no    #
# package.                                                               #
# ====================================================================== #
bench_missing=()
for p in strace time; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || bench_missing+=("$p")
done
if [ "${#bench_missing[@]}" -gt 0 ]; then
	log=$LOGDIR/install-bench.log
	{
		"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
			"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
				--no-install-recommends "${bench_missing[@]}"
	} >"$log" 2>&1 || fail_with_log "apt-get install ${bench_missing[*]}" "$log"
fi
command -v strace >/dev/null 2>&1 || die "strace missing after install"
[ -x /usr/bin/time ] || die "GNU time (/usr/bin/time) missing after install"
# ================================================== end bench tools == #
