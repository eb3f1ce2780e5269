// Package storagetest is the conformance suite every storage driver runs.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regsweep/regsweep/storage"
)

// Options tunes the suite for one backend.
type Options struct {
	// PageSize is the store's listing page size (S3 1000, Swift 10000);
	// the suite writes more keys than that to prove pagination. Zero skips
	// nothing: it uses 50 keys.
	PageSize int
	// Put writes an object for setup. Nil means the driver's own Put.
	Put func(ctx context.Context, key string, data []byte) error
	// BulkPut writes many small objects fast for the pagination case; nil
	// means Put from parallel goroutines.
	BulkPut func(ctx context.Context, keys []string, data []byte) error
	// CreateOverwrites is for an in-process fake that ignores
	// If-None-Match (swifttest): the suite then checks only that Create
	// writes. Real servers never set it.
	CreateOverwrites bool
}

// Run runs every case against a fresh driver from newDriver. Each case
// works under its own random prefix and checks that it leaves nothing
// behind.
func Run(t *testing.T, newDriver func(t *testing.T) storage.Driver, opts Options) {
	cases := []struct {
		name string
		fn   func(t *testing.T, d storage.Driver, opts Options, prefix string)
	}{
		{"NotFound", testNotFound},
		{"PutGetStat", testPutGetStat},
		{"GetLimit", testGetLimit},
		{"WalkPrefixBoundary", testWalkPrefixBoundary},
		{"WalkPagination", testWalkPagination},
		{"WalkAfter", testWalkAfter},
		{"WalkStopsOnCallbackError", testWalkStops},
		{"WalkCancelled", testWalkCancelled},
		{"DeleteIdempotent", testDeleteIdempotent},
		{"DeleteBatch", testDeleteBatch},
		{"LargeObject", testLargeObject},
		{"ReadOnlyRefuses", testReadOnly},
		{"CreateIfAbsent", testCreate},
		{"RemoveEmptyDirs", testRemoveEmptyDirs},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := newDriver(t)
			prefix := fmt.Sprintf("storagetest/%s-%d/", c.name, time.Now().UnixNano())
			c.fn(t, d, opts, prefix)
			// Leave nothing behind (distribution's testsuite rule).
			var left []string
			err := d.Walk(context.Background(), prefix, func(oi storage.ObjectInfo) error {
				left = append(left, oi.Key)
				return nil
			})
			if err != nil {
				t.Fatalf("final walk: %v", err)
			}
			if len(left) > 0 {
				t.Fatalf("case left %d keys behind, e.g. %q", len(left), left[0])
			}
		})
	}
}

func put(t *testing.T, d storage.Driver, opts Options, key string, data []byte) {
	t.Helper()
	var err error
	if opts.Put != nil {
		err = opts.Put(context.Background(), key, data)
	} else {
		err = d.Put(context.Background(), key, data)
	}
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func walkKeys(t *testing.T, d storage.Driver, prefix string) []string {
	t.Helper()
	var keys []string
	err := d.Walk(context.Background(), prefix, func(oi storage.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", prefix, err)
	}
	sort.Strings(keys)
	return keys
}

func cleanup(t *testing.T, d storage.Driver, keys ...string) {
	t.Helper()
	res, err := d.Delete(context.Background(), keys)
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	for _, r := range res {
		if !storage.IsNotFound(r.Err) {
			t.Fatalf("delete %s: %v", r.Key, r.Err)
		}
	}
}

func testNotFound(t *testing.T, d storage.Driver, _ Options, prefix string) {
	ctx := context.Background()
	key := prefix + "missing/data"
	if _, err := d.Stat(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat of a missing key: want ErrNotFound, got %v", err)
	}
	if _, err := d.Get(ctx, key, 1024); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get of a missing key: want ErrNotFound, got %v", err)
	}
	var pe *storage.PathError
	if _, err := d.Get(ctx, key, 1024); !errors.As(err, &pe) || pe.Key != key {
		t.Errorf("Get error should be a *PathError naming %q, got %v", key, err)
	}
	if keys := walkKeys(t, d, prefix+"nothing-here/"); len(keys) != 0 {
		t.Errorf("Walk of an empty prefix: want nothing, got %v", keys)
	}
}

func testPutGetStat(t *testing.T, d storage.Driver, opts Options, prefix string) {
	ctx := context.Background()
	key := prefix + "a/b/link"
	content := []byte("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	before := time.Now().Add(-time.Minute)
	put(t, d, opts, key, content)
	got, err := d.Get(ctx, key, 1024)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("Get: %q, %v", got, err)
	}
	oi, err := d.Stat(ctx, key)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if oi.Key != key || oi.Size != int64(len(content)) {
		t.Errorf("Stat: got %+v", oi)
	}
	if oi.ModTime.Before(before) || oi.ModTime.After(time.Now().Add(time.Minute)) {
		t.Errorf("Stat ModTime %v is not about now", oi.ModTime)
	}
	var walked []storage.ObjectInfo
	if err := d.Walk(ctx, prefix, func(oi storage.ObjectInfo) error { walked = append(walked, oi); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(walked) != 1 || walked[0].Key != key || walked[0].Size != int64(len(content)) || walked[0].ModTime.IsZero() {
		t.Errorf("Walk: got %+v", walked)
	}
	cleanup(t, d, key)
}

func testGetLimit(t *testing.T, d storage.Driver, opts Options, prefix string) {
	key := prefix + "big"
	put(t, d, opts, key, bytes.Repeat([]byte("x"), 100))
	if _, err := d.Get(context.Background(), key, 99); !errors.Is(err, storage.ErrTooLarge) {
		t.Errorf("Get with max below the size: want ErrTooLarge, got %v", err)
	}
	if b, err := d.Get(context.Background(), key, 100); err != nil || len(b) != 100 {
		t.Errorf("Get with max equal to the size: %d bytes, %v", len(b), err)
	}
	cleanup(t, d, key)
}

func testWalkPrefixBoundary(t *testing.T, d storage.Driver, opts Options, prefix string) {
	keys := []string{prefix + "a/x", prefix + "a/y/z", prefix + "ab/x", prefix + "a-sibling", prefix + "b/a/x"}
	for _, k := range keys {
		put(t, d, opts, k, []byte(k))
	}
	got := walkKeys(t, d, prefix+"a/")
	want := []string{prefix + "a/x", prefix + "a/y/z"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Walk(%q) = %v, want %v", prefix+"a/", got, want)
	}
	if got := walkKeys(t, d, prefix); len(got) != len(keys) {
		t.Errorf("Walk(%q) found %d keys, want %d: %v", prefix, len(got), len(keys), got)
	}
	cleanup(t, d, keys...)
}

func testWalkPagination(t *testing.T, d storage.Driver, opts Options, prefix string) {
	n := 50
	if opts.PageSize > 0 {
		n = opts.PageSize + opts.PageSize/10 + 7
	}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%sp/%02x/%06d", prefix, i%256, i)
	}
	ctx := context.Background()
	putMany(t, d, opts, keys)
	got := walkKeys(t, d, prefix)
	if len(got) != n {
		t.Fatalf("Walk found %d keys, want %d", len(got), n)
	}
	for i := 1; i < len(got); i++ {
		if got[i] == got[i-1] {
			t.Fatalf("Walk returned %q twice", got[i])
		}
	}
	res, err := d.Delete(ctx, keys)
	if err != nil {
		t.Fatalf("batched delete of %d keys: %v", n, err)
	}
	for _, r := range res {
		if !storage.IsNotFound(r.Err) {
			t.Fatalf("delete %s: %v", r.Key, r.Err)
		}
	}
}

// testWalkAfter: a store that can start a listing after a key lists
// exactly the keys after it, across pages, whether or not it exists.
func testWalkAfter(t *testing.T, d storage.Driver, opts Options, prefix string) {
	aw, ok := storage.AfterWalkerOf(d)
	if !ok {
		t.Logf("%s cannot start a listing after a key: the walker does not split its listings", d.Name())
		return
	}
	n := 30
	if opts.PageSize > 0 {
		n = opts.PageSize + 21
	}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%sa/%06d", prefix, i)
	}
	ctx := context.Background()
	putMany(t, d, opts, keys)
	put(t, d, opts, prefix+"b", []byte("outside the prefix walked"))
	defer d.Delete(ctx, append(keys, prefix+"b"))
	after := func(startAfter string) []string {
		var got []string
		if err := aw.WalkAfter(ctx, prefix+"a/", startAfter, func(oi storage.ObjectInfo) error {
			got = append(got, oi.Key)
			return nil
		}); err != nil {
			t.Fatalf("WalkAfter(%q): %v", startAfter, err)
		}
		return got
	}
	for _, c := range []struct {
		startAfter string
		want       []string
	}{
		{"", keys},
		{keys[9], keys[10:]},
		{keys[9] + "5", keys[10:]}, // not a key: the next one is first
		{keys[n-1], nil},
		{prefix, keys},      // before the prefix
		{prefix + "b", nil}, // past it
	} {
		if got := after(c.startAfter); !slices.Equal(got, c.want) {
			t.Fatalf("WalkAfter(%q): %d keys from %v, want %d", c.startAfter, len(got), first(got), len(c.want))
		}
	}
}

func first(keys []string) string {
	if len(keys) == 0 {
		return "nothing"
	}
	return keys[0]
}

// putMany writes "x" at every key, in bulk where the backend can.
func putMany(t *testing.T, d storage.Driver, opts Options, keys []string) {
	t.Helper()
	if opts.BulkPut != nil {
		if err := opts.BulkPut(context.Background(), keys, []byte("x")); err != nil {
			t.Fatal(err)
		}
		return
	}
	parallelPut(t, d, opts, keys)
}

func parallelPut(t *testing.T, d storage.Driver, opts Options, keys []string) {
	var wg sync.WaitGroup
	errs := make(chan error, len(keys))
	sem := make(chan struct{}, 32)
	for _, k := range keys {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var err error
			if opts.Put != nil {
				err = opts.Put(context.Background(), k, []byte("x"))
			} else {
				err = d.Put(context.Background(), k, []byte("x"))
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func testWalkStops(t *testing.T, d storage.Driver, opts Options, prefix string) {
	keys := []string{prefix + "1", prefix + "2", prefix + "3"}
	for _, k := range keys {
		put(t, d, opts, k, []byte("x"))
	}
	stop := errors.New("stop here")
	calls := 0
	err := d.Walk(context.Background(), prefix, func(storage.ObjectInfo) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) {
		t.Errorf("Walk should return the callback's error, got %v", err)
	}
	if calls != 1 {
		t.Errorf("Walk called fn %d times after it failed, want 1", calls)
	}
	cleanup(t, d, keys...)
}

func testWalkCancelled(t *testing.T, d storage.Driver, opts Options, prefix string) {
	keys := []string{prefix + "1", prefix + "2"}
	for _, k := range keys {
		put(t, d, opts, k, []byte("x"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := d.Walk(ctx, prefix, func(storage.ObjectInfo) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Walk on a cancelled context: want context.Canceled, got %v", err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	err = d.Walk(ctx2, prefix, func(storage.ObjectInfo) error { cancel2(); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Walk cancelled midway: want context.Canceled, got %v", err)
	}
	cleanup(t, d, keys...)
}

func testDeleteIdempotent(t *testing.T, d storage.Driver, opts Options, prefix string) {
	key := prefix + "x/link"
	put(t, d, opts, key, []byte("x"))
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		res, err := d.Delete(ctx, []string{key})
		if err != nil {
			t.Fatalf("delete #%d: %v", i+1, err)
		}
		for _, r := range res {
			if !storage.IsNotFound(r.Err) {
				t.Fatalf("delete #%d of %s: %v", i+1, r.Key, r.Err)
			}
		}
	}
	if _, err := d.Stat(ctx, key); !storage.IsNotFound(err) {
		t.Errorf("deleted key still stats: %v", err)
	}
	if res, err := d.Delete(ctx, nil); err != nil || len(res) != 0 {
		t.Errorf("empty delete: %v %v", res, err)
	}
}

func testDeleteBatch(t *testing.T, d storage.Driver, opts Options, prefix string) {
	var keys []string
	for i := 0; i < 25; i++ {
		keys = append(keys, fmt.Sprintf("%sd/%02d", prefix, i))
	}
	for _, k := range keys {
		put(t, d, opts, k, []byte("x"))
	}
	keep := prefix + "d/keep"
	put(t, d, opts, keep, []byte("keep"))
	res, err := d.Delete(context.Background(), append(keys, prefix+"d/never-existed"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !storage.IsNotFound(r.Err) {
			t.Errorf("delete %s: %v", r.Key, r.Err)
		}
	}
	if got := walkKeys(t, d, prefix); len(got) != 1 || got[0] != keep {
		t.Errorf("after deleting a batch: %v, want only %s", got, keep)
	}
	cleanup(t, d, keep)
}

func testLargeObject(t *testing.T, d storage.Driver, opts Options, prefix string) {
	key := prefix + "large/data"
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	put(t, d, opts, key, data)
	got, err := d.Get(context.Background(), key, int64(len(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("large Get: %d bytes, %v", len(got), err)
	}
	oi, err := d.Stat(context.Background(), key)
	if err != nil || oi.Size != int64(len(data)) {
		t.Errorf("large Stat: %+v %v", oi, err)
	}
	cleanup(t, d, key)
}

func testReadOnly(t *testing.T, d storage.Driver, opts Options, prefix string) {
	key := prefix + "ro"
	put(t, d, opts, key, []byte("x"))
	ro := storage.ReadOnly(d)
	if _, err := ro.Delete(context.Background(), []string{key}); !errors.Is(err, storage.ErrReadOnly) {
		t.Errorf("read-only Delete: want ErrReadOnly, got %v", err)
	}
	if err := ro.Put(context.Background(), key, []byte("y")); !errors.Is(err, storage.ErrReadOnly) {
		t.Errorf("read-only Put: want ErrReadOnly, got %v", err)
	}
	if b, err := ro.Get(context.Background(), key, 10); err != nil || string(b) != "x" {
		t.Errorf("read-only Get: %q %v", b, err)
	}
	if mp, ok := storage.MultipartOf(ro); ok {
		if err := mp.AbortMultipartUpload(context.Background(), key, "x"); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("read-only AbortMultipartUpload: want ErrReadOnly, got %v", err)
		}
	}
	if lo, ok := storage.LargeObjectsOf(ro); ok {
		if _, err := lo.DeleteSegments(context.Background(), []string{"x"}); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("read-only DeleteSegments: want ErrReadOnly, got %v", err)
		}
	}
	if c, ok := storage.CreatorOf(ro); ok {
		if err := c.Create(context.Background(), prefix+"ro-created", []byte("y")); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("read-only Create: want ErrReadOnly, got %v", err)
		}
	}
	if dr, ok := storage.DirRemoverOf(ro); ok {
		if _, err := dr.RemoveEmptyDirs(context.Background(), []string{prefix}, func(string) bool { return false }); !errors.Is(err, storage.ErrReadOnly) {
			t.Errorf("read-only RemoveEmptyDirs: want ErrReadOnly, got %v", err)
		}
	}
	cleanup(t, d, key)
}

// testCreate: Create writes an absent key, and refuses one that exists
// with ErrExists, leaving it as it was. The lock relies on it.
func testCreate(t *testing.T, d storage.Driver, opts Options, prefix string) {
	ctx := context.Background()
	c, ok := storage.CreatorOf(d)
	if !ok {
		t.Fatalf("%s driver has no Creator: the lock needs a create-if-absent", d.Name())
	}
	key := prefix + "lock.json"
	if err := c.Create(ctx, key, []byte("first")); err != nil {
		t.Fatalf("Create of an absent key: %v", err)
	}
	if b, err := d.Get(ctx, key, 100); err != nil || string(b) != "first" {
		t.Fatalf("after Create: %q %v", b, err)
	}
	if !opts.CreateOverwrites {
		err := c.Create(ctx, key, []byte("second"))
		if !errors.Is(err, storage.ErrExists) {
			t.Errorf("Create of an existing key: want ErrExists, got %v", err)
		}
		if b, err := d.Get(ctx, key, 100); err != nil || string(b) != "first" {
			t.Errorf("a refused Create changed the key: %q %v", b, err)
		}
	}
	// The filesystem's temporary file must not stay beside the key.
	if keys := walkKeys(t, d, prefix); len(keys) != 1 {
		t.Errorf("after Create: keys %q, want only %q", keys, key)
	}
	cleanup(t, d, key)
}

// testRemoveEmptyDirs: on a store with directories, the ones deleted keys
// leave empty go, bottom up, up to a kept one; one that holds a key,
// even a key written after the delete, stays, and writes below a removed
// directory still work.
func testRemoveEmptyDirs(t *testing.T, d storage.Driver, opts Options, prefix string) {
	dr, ok := storage.DirRemoverOf(d)
	if !ok {
		t.Logf("%s has no directories to remove", d.Name())
		return
	}
	ctx := context.Background()
	a, b, c := prefix+"r/a/x/link", prefix+"r/b/link", prefix+"r/c/link"
	for _, k := range []string{a, b, c} {
		put(t, d, opts, k, []byte(k))
	}
	cleanup(t, d, a, c)
	refilled := prefix + "r/c/written-after-the-delete"
	put(t, d, opts, refilled, []byte("x"))
	n, err := dr.RemoveEmptyDirs(ctx, []string{a, c}, func(dir string) bool { return dir == prefix })
	if err != nil || n != 2 {
		t.Errorf("RemoveEmptyDirs: %d directories (want r/a/x/ and r/a/), %v", n, err)
	}
	if got := walkKeys(t, d, prefix); !slices.Equal(got, []string{b, refilled}) {
		t.Errorf("after RemoveEmptyDirs: %v, want %v", got, []string{b, refilled})
	}
	put(t, d, opts, a, []byte("again"))
	cleanup(t, d, a, b, refilled)
}
