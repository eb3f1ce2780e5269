package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/regsweep/regsweep/backend"
	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/storage"
)

// The lock a killed gc leaves (lock/lock.go): stale at once when its
// holder's process is gone on this host, otherwise only once it has not
// been refreshed for the longer of the holder's and the taker's
// --lock-timeout. These checks run on the first kills of TestKilledGC*.

// shortLockTimeout is the --lock-timeout of the killed run whose lock is
// waited out rather than made old by rewriting it.
const shortLockTimeout = 8 * time.Second

// otherHost stands for a regsweep run on another machine: its PID cannot
// be checked from here.
const otherHost = "gc-runner-elsewhere.invalid"

func lockDriver(t *testing.T, b *backendUnderTest) storage.Driver {
	t.Helper()
	d, err := backend.Open(context.Background(), b.cfg, backend.OpenOptions{Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func readLock(t *testing.T, b *backendUnderTest) (lock.Info, error) {
	t.Helper()
	return lock.Read(context.Background(), lockDriver(t, b))
}

// writeLock replaces the lock object in storage, as another run would.
func writeLock(t *testing.T, b *backendUnderTest, info lock.Info) {
	t.Helper()
	body, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	if err := lockDriver(t, b).Put(context.Background(), lock.Key, body); err != nil {
		t.Fatalf("writing %s: %v", lock.Key, err)
	}
}

// checkKilledRunsLock asserts the killed run left its lock, naming this
// host and the killed process.
func checkKilledRunsLock(t *testing.T, info lock.Info, pid int) {
	t.Helper()
	host, _ := os.Hostname()
	if info.Hostname != host || info.PID != pid || info.Command != "regsweep gc" {
		t.Errorf("the killed run's lock names %s pid %d (%q); want %s pid %d (regsweep gc)", info.Hostname, info.PID, info.Command, host, pid)
	}
}

// expectLocked writes info as the lock (refreshed now), runs gc --delete
// at once and asserts it refuses with exit 7, says "lock" and names the
// holder, and leaves the lock alone. It returns the lock it wrote.
func expectLocked(t *testing.T, b *backendUnderTest, cache string, info lock.Info, why, holder string, extra ...string) lock.Info {
	t.Helper()
	info.RefreshedAt = time.Now().UTC()
	writeLock(t, b, info)
	stderr, code := runRefused(t, b, rerunGCArgs(cache, extra...)...)
	if code != 7 || !strings.Contains(stderr, "lock") || !strings.Contains(stderr, holder) {
		t.Errorf("%s: gc --delete %v exited %d, want 7 with a message naming the lock and %s: %s", why, extra, code, holder, stderr)
	}
	if now, err := readLock(t, b); err != nil || now.Token != info.Token || !now.RefreshedAt.Equal(info.RefreshedAt) {
		t.Errorf("%s: a refused run changed the lock: %+v %v", why, now, err)
	}
	return info
}

// unchangedBy asserts refused runs changed nothing in storage.
func unchangedBy(t *testing.T, b *backendUnderTest, refused func()) {
	t.Helper()
	before := b.inventory(t)
	refused()
	after := b.inventory(t)
	if after.Keys != before.Keys || len(diff(blobSet(before), blobSet(after))) > 0 || len(diff(blobSet(after), blobSet(before))) > 0 {
		t.Errorf("refused runs changed storage: %d keys before, %d after", before.Keys, after.Keys)
	}
}

// runRefused runs the CLI on b and returns stderr and the exit code. It
// checks the output for the secret key and password but not for the S3
// access key as backendUnderTest.run does: the test MinIO's access key is
// "regsweep" (testenv/lib.sh), which every lock message names.
func runRefused(t *testing.T, b *backendUnderTest, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(regsweepBinary(t), append(args, b.flags...)...)
	cmd.Env = append(os.Environ(), b.env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{b.cfg.S3.SecretKey, b.cfg.Swift.Password} {
		if secret != "" && (bytes.Contains(out, []byte(secret)) || bytes.Contains(stderr.Bytes(), []byte(secret))) {
			t.Fatalf("regsweep %v printed a secret", args)
		}
	}
	return stderr.String(), code
}

// checkForeignLockRefused: the lock of a live process on this host, and a
// fresh lock from another host, are refused (the latter even with a
// --lock-timeout shorter than the holder's); a lock from another host that
// is older than its timeout is left for the caller's re-run to take over.
func checkForeignLockRefused(t *testing.T, b *backendUnderTest, killed lock.Info, cache string) {
	t.Helper()
	unchangedBy(t, b, func() {
		alive := killed
		alive.PID = os.Getpid() // this test: alive, on this host
		expectLocked(t, b, cache, alive, "a live process's lock on this host", fmt.Sprintf("pid %d", alive.PID))

		foreign := killed
		foreign.Hostname = otherHost
		expectLocked(t, b, cache, foreign, "a fresh lock from another host", otherHost)
		expectLocked(t, b, cache, foreign, "a fresh lock from another host, taker's timeout shorter than the holder's", otherHost, "--lock-timeout", "1s")
	})
	// Older than the holder's (and the default) 30m timeout: stale.
	foreign := killed
	foreign.Hostname = otherHost
	foreign.RefreshedAt = time.Now().Add(-31 * time.Minute).UTC()
	writeLock(t, b, foreign)
	t.Logf("stale lock: this host's live pid and another host's fresh lock refused (exit 7); another host's lock refreshed 31m ago is taken over by the re-run")
}

// checkForeignLockWaitedOut: a lock from another host written with a
// short timeout is refused while fresh and taken over once that timeout
// has passed since its last refresh.
func checkForeignLockWaitedOut(t *testing.T, b *backendUnderTest, killed lock.Info, cache string) {
	t.Helper()
	if killed.Timeout != shortLockTimeout {
		t.Fatalf("the killed run's lock has timeout %s, want its --lock-timeout %s", killed.Timeout, shortLockTimeout)
	}
	foreign := killed
	foreign.Hostname = otherHost
	timeout := "--lock-timeout=" + shortLockTimeout.String()
	unchangedBy(t, b, func() {
		foreign = expectLocked(t, b, cache, foreign, "a fresh lock from another host with a short timeout", otherHost, timeout)
	})
	time.Sleep(time.Until(foreign.RefreshedAt.Add(shortLockTimeout + time.Second)))
	if _, stderr, code := b.run(t, rerunGCArgs(cache, timeout)...); code != 0 {
		t.Fatalf("a lock from another host not refreshed for longer than its %s timeout was not taken over: exit %d: %s", shortLockTimeout, code, stderr)
	}
	t.Logf("stale lock: another host's lock with a %s timeout refused while fresh (exit 7), taken over once %s old", shortLockTimeout, shortLockTimeout+time.Second)
}
