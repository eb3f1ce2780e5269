package swift_test

// Tests against the real OpenStack Swift all-in-one started by
// testenv/up.sh. A missing server fails them (testenv), never skips them.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	ncw "github.com/ncw/swift/v2"

	"github.com/regsweep/regsweep/internal/testenv"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/storage/storagetest"
	"github.com/regsweep/regsweep/storage/swift"
)

func realConfig(s testenv.SwiftServer, container string) swift.Config {
	return swift.Config{AuthURL: s.AuthURL, Username: s.User, Password: s.Key, Container: container}
}

func openReal(t *testing.T, cfg swift.Config, reqs *storage.Requests) *swift.Driver {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := swift.New(ctx, cfg, reqs)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return d
}

// putWidth is how many PUTs parallelPut runs at once. The test SAIO's
// proxy keeps two memcached connections (the default); at 32 concurrent
// requests token checks time out waiting for one and the proxy error-limits
// memcached, answering 503 to everything for a minute. The object server
// manages about 65 writes a second whatever the width.
const putWidth = 8

// parallelPut writes keys putWidth at a time.
func parallelPut(ctx context.Context, d storage.Driver, keys []string, data []byte) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	work := make(chan string)
	for range putWidth {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				if err := d.Put(ctx, k, data); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	return firstErr
}

func TestSwiftConformance(t *testing.T) {
	s := testenv.Swift(t)
	container := testenv.NewContainer(t, s)
	cfg := realConfig(s, container)
	putter := openReal(t, cfg, nil)
	if putter.BulkDeleteMax() != 10000 || putter.PageSize() != 10000 {
		t.Fatalf("the SAIO's /info should give bulk delete of 10000 and pages of 10000, got %d and %d", putter.BulkDeleteMax(), putter.PageSize())
	}
	storagetest.Run(t, func(t *testing.T) storage.Driver {
		reqs := &storage.Requests{}
		d := openReal(t, cfg, reqs)
		if strings.HasSuffix(t.Name(), "/WalkPagination") {
			start := time.Now()
			// 11,007 keys: two listing pages plus the suite's final empty
			// walk, and ceil(11007/10000) = 2 bulk-delete requests.
			t.Cleanup(func() {
				got := reqs.Snapshot()
				t.Logf("requests for 11007 keys (puts by a separate driver): %v in %v", got, time.Since(start).Round(time.Second))
				if got["delete"] != 2 || got["list"] != 3 {
					t.Errorf("WalkPagination made %d delete and %d list requests, want 2 and 3", got["delete"], got["list"])
				}
			})
		}
		return d
	}, storagetest.Options{
		PageSize: 10000,
		BulkPut: func(ctx context.Context, keys []string, data []byte) error {
			start := time.Now()
			defer func() { t.Logf("BulkPut of %d keys took %v", len(keys), time.Since(start).Round(time.Second)) }()
			return parallelPut(ctx, putter, keys, data)
		},
	})
}

func TestSwiftPrefixMapping(t *testing.T) {
	s := testenv.Swift(t)
	container := testenv.NewContainer(t, s)
	raw := s.Connection(t)
	ctx := context.Background()
	const key = "docker/registry/v2/repositories/lib/app/_manifests/tags/v1/current/link"
	for _, prefix := range []string{"", "reg", "/deep/er/"} {
		t.Run(fmt.Sprintf("prefix=%q", prefix), func(t *testing.T) {
			cfg := realConfig(s, container)
			cfg.Prefix = prefix
			d := openReal(t, cfg, nil)
			name := distributionName(prefix, key)
			// What distribution wrote, the driver reads...
			if err := raw.ObjectPutString(ctx, container, name, "sha256:1111", ""); err != nil {
				t.Fatal(err)
			}
			if b, err := d.Get(ctx, key, 100); err != nil || string(b) != "sha256:1111" {
				t.Fatalf("Get(%q) of object %q: %q %v", key, name, b, err)
			}
			// ...and what the driver writes lands where distribution reads.
			if err := d.Put(ctx, key, []byte("sha256:2222")); err != nil {
				t.Fatal(err)
			}
			if b, err := raw.ObjectGetString(ctx, container, name); err != nil || b != "sha256:2222" {
				t.Fatalf("object %q after Put: %q %v", name, b, err)
			}
			// Segments and other objects are not under files/.
			segRoot := strings.TrimLeft(prefix+"/segments/", "/")
			for _, other := range []string{segRoot + "abc/def/0000000000000001", strings.TrimLeft(prefix+"/filesx", "/")} {
				if err := raw.ObjectPutString(ctx, container, other, "s", ""); err != nil {
					t.Fatal(err)
				}
			}
			var walked []string
			if err := d.Walk(ctx, "docker/", func(oi storage.ObjectInfo) error { walked = append(walked, oi.Key); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(walked) != 1 || walked[0] != key {
				t.Fatalf("Walk(docker/) = %v, want [%s]", walked, key)
			}
			var segs []string
			if err := d.WalkSegments(ctx, func(oi storage.ObjectInfo) error { segs = append(segs, oi.Key); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(segs) != 1 || segs[0] != segRoot+"abc/def/0000000000000001" {
				t.Fatalf("WalkSegments = %v", segs)
			}
			if res, err := d.Delete(ctx, []string{key}); err != nil || len(res) != 0 {
				t.Fatalf("Delete: %v %v", res, err)
			}
			if res, err := d.DeleteSegments(ctx, segs); err != nil || len(res) != 0 {
				t.Fatalf("DeleteSegments: %v %v", res, err)
			}
			names, err := raw.ObjectNamesAll(ctx, container, &ncw.ObjectsOpts{Prefix: strings.TrimLeft(prefix, "/")})
			if err != nil {
				t.Fatal(err)
			}
			if len(names) != 1 || names[0] != strings.TrimLeft(prefix+"/filesx", "/") {
				t.Fatalf("left after deletes: %v, want only the unrelated object", names)
			}
			if err := raw.ObjectDelete(ctx, container, names[0]); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSwiftDLO(t *testing.T) {
	s := testenv.Swift(t)
	container := testenv.NewContainer(t, s)
	raw := s.Connection(t)
	ctx := context.Background()
	for _, prefix := range []string{"", "reg"} {
		t.Run(fmt.Sprintf("prefix=%q", prefix), func(t *testing.T) {
			cfg := realConfig(s, container)
			cfg.Prefix = prefix
			reqs := &storage.Requests{}
			d := openReal(t, cfg, reqs)
			key := "docker/registry/v2/blobs/sha256/ab/ab" + strings.Repeat("0", 62) + "/data"
			segPrefix := strings.TrimLeft(prefix+"/segments/abc/def", "/")
			var segs []string
			var want []byte
			for i := 1; i <= 3; i++ {
				name := fmt.Sprintf("%s/%016d", segPrefix, i)
				part := bytes.Repeat([]byte{byte('0' + i)}, 100*i)
				if err := raw.ObjectPutBytes(ctx, container, name, part, "application/octet-stream"); err != nil {
					t.Fatal(err)
				}
				segs = append(segs, name)
				want = append(want, part...)
			}
			putManifest(t, raw, container, distributionName(prefix, key), container+"/"+segPrefix)
			before := reqs.Snapshot()

			// A listing shows the manifest itself: 0 bytes, the MD5 of "".
			var listed storage.ObjectInfo
			if err := d.Walk(ctx, "docker/", func(oi storage.ObjectInfo) error { listed = oi; return nil }); err != nil {
				t.Fatal(err)
			}
			if listed.Key != key || listed.Size != 0 || listed.ETag != "d41d8cd98f00b204e9800998ecf8427e" {
				t.Errorf("Walk shows the DLO as %+v, want size 0 and the empty MD5", listed)
			}
			// HEAD goes through the manifest.
			st, err := d.Stat(ctx, key)
			if err != nil || st.Size != int64(len(want)) {
				t.Fatalf("Stat of a DLO: %+v %v, want size %d", st, err, len(want))
			}
			if !st.ModTime.Equal(listed.ModTime) {
				t.Errorf("Stat ModTime %v differs from Walk's %v", st.ModTime, listed.ModTime)
			}
			if st.ETag == listed.ETag || strings.Contains(st.ETag, `"`) {
				t.Errorf("a DLO's HEAD ETag (MD5 over the segments' ETags, unquoted) should differ from the listing's: %q vs %q", st.ETag, listed.ETag)
			}
			oi, gotPrefix, err := d.LargeObject(ctx, key)
			if err != nil || oi.Size != int64(len(want)) || gotPrefix != segPrefix || oi.Key != key {
				t.Fatalf("LargeObject = %+v %q %v, want size %d prefix %q", oi, gotPrefix, err, len(want), segPrefix)
			}
			b, err := d.Get(ctx, key, int64(len(want)))
			if err != nil || !bytes.Equal(b, want) {
				t.Fatalf("Get of a DLO: %d bytes %v, want the %d bytes of its segments", len(b), err, len(want))
			}
			if _, err := d.Get(ctx, key, int64(len(want))-1); !errors.Is(err, storage.ErrTooLarge) {
				t.Errorf("Get of a DLO above max: %v", err)
			}
			after := reqs.Snapshot()
			for op, n := range map[string]int64{"list": 1, "head": 2, "get": 2} {
				if after[op]-before[op] != n {
					t.Errorf("%s requests: %d, want %d (Walk, Stat+LargeObject, 2 Gets)", op, after[op]-before[op], n)
				}
			}
			var found []string
			if err := d.WalkSegments(ctx, func(oi storage.ObjectInfo) error { found = append(found, oi.Key); return nil }); err != nil {
				t.Fatal(err)
			}
			sort.Strings(found)
			if strings.Join(found, ",") != strings.Join(segs, ",") {
				t.Fatalf("WalkSegments = %v, want %v", found, segs)
			}
			before = reqs.Snapshot()
			res, err := d.DeleteSegments(ctx, found)
			if err != nil || len(res) != 0 {
				t.Fatalf("DeleteSegments: %v %v", res, err)
			}
			if n := reqs.Snapshot()["delete"] - before["delete"]; n != 1 {
				t.Errorf("DeleteSegments of 3 made %d delete requests, want 1 bulk delete", n)
			}
			// The manifest stays, pointing at nothing: what an abandoned
			// upload leaves.
			oi, gotPrefix, err = d.LargeObject(ctx, key)
			if err != nil || oi.Size != 0 || gotPrefix != segPrefix {
				t.Fatalf("LargeObject after its segments went: %+v %q %v", oi, gotPrefix, err)
			}
			if res, err := d.Delete(ctx, []string{key}); err != nil || len(res) != 0 {
				t.Fatalf("Delete manifest: %v %v", res, err)
			}
		})
	}
}

func TestSwiftModTime(t *testing.T) {
	s := testenv.Swift(t)
	container := testenv.NewContainer(t, s)
	d := openReal(t, realConfig(s, container), nil)
	ctx := context.Background()
	keys := []string{"m/1", "m/2", "m/3"}
	for _, k := range keys {
		if err := d.Put(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	walked := map[string]storage.ObjectInfo{}
	if err := d.Walk(ctx, "m/", func(oi storage.ObjectInfo) error { walked[oi.Key] = oi; return nil }); err != nil {
		t.Fatal(err)
	}
	raw := s.Connection(t)
	for _, k := range keys {
		st, err := d.Stat(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		w := walked[k]
		if !st.ModTime.Equal(w.ModTime) || st.ETag != w.ETag || st.Size != w.Size {
			t.Errorf("%s: Stat %+v, Walk %+v: a plan made from a walk would see every object as changed", k, st, w)
		}
		if st.ModTime.Nanosecond() == 0 {
			t.Logf("%s: ModTime %v has no fraction (1 in 100000 chance)", k, st.ModTime)
		}
		// The trap this avoids: Last-Modified is rounded up to the second.
		info, _, err := raw.Object(ctx, container, "files/"+k)
		if err != nil {
			t.Fatal(err)
		}
		if lm := info.LastModified; lm.Before(st.ModTime) || lm.Sub(st.ModTime) >= time.Second {
			t.Errorf("%s: Last-Modified %v is not the ModTime %v rounded up", k, lm, st.ModTime)
		}
	}
	if _, err := d.Delete(ctx, keys); err != nil {
		t.Fatal(err)
	}
}

func TestSwiftBulkDelete(t *testing.T) {
	s := testenv.Swift(t)
	container := testenv.NewContainer(t, s)
	reqs := &storage.Requests{}
	d := openReal(t, realConfig(s, container), reqs)
	if got := reqs.Snapshot(); got["get"] != 2 || got["head"] != 1 || got["list"]+got["put"]+got["delete"] != 0 {
		t.Errorf("New made %v, want get 2 (auth, /info) and head 1 (container)", got)
	}
	ctx := context.Background()
	var keys []string
	for i := range 250 {
		keys = append(keys, fmt.Sprintf("b/%03d", i))
	}
	if err := parallelPut(ctx, d, keys, []byte("x")); err != nil {
		t.Fatal(err)
	}
	before := reqs.Snapshot()
	res, err := d.Delete(ctx, append(keys, "b/never-existed", "b/never-existed-2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		t.Errorf("delete %s: %v", r.Key, r.Err)
	}
	if n := reqs.Snapshot()["delete"] - before["delete"]; n != 1 {
		t.Errorf("252 keys took %d delete requests, want 1 = ceil(252/%d)", n, d.BulkDeleteMax())
	}
	var left int
	d.Walk(ctx, "b/", func(storage.ObjectInfo) error { left++; return nil })
	if left != 0 {
		t.Errorf("%d keys left", left)
	}
}

func TestSwiftBulkDeleteExpiredToken(t *testing.T) {
	s := testenv.Swift(t)
	container := testenv.NewContainer(t, s)
	reqs := &storage.Requests{}
	d := openReal(t, realConfig(s, container), reqs)
	ctx := context.Background()
	keys := []string{"t/1", "t/2", "t/3"}
	if err := parallelPut(ctx, d, keys, []byte("x")); err != nil {
		t.Fatal(err)
	}
	// Swift answers a bulk delete with a bad token with 200 and a
	// "401 Unauthorized" per name: the driver must authenticate again.
	swift.SetToken(d, "AUTH_tk00000000000000000000000000000000")
	before := reqs.Snapshot()
	res, err := d.Delete(ctx, keys)
	if err != nil || len(res) != 0 {
		t.Fatalf("Delete with an expired token: %v %v", res, err)
	}
	after := reqs.Snapshot()
	if after["delete"]-before["delete"] != 2 || after["get"]-before["get"] != 1 {
		t.Errorf("want 2 bulk deletes around 1 authentication, got %d and %d", after["delete"]-before["delete"], after["get"]-before["get"])
	}
	// Single requests re-authenticate in the library.
	swift.SetToken(d, "AUTH_tk00000000000000000000000000000000")
	if _, err := d.Stat(ctx, "t/1"); !storage.IsNotFound(err) {
		t.Errorf("Stat with an expired token: %v, want ErrNotFound", err)
	}
}

func TestSwiftWrongCredentials(t *testing.T) {
	s := testenv.Swift(t)
	container := testenv.NewContainer(t, s)
	for _, tc := range []struct{ name, user, key string }{
		{"password", s.User, "not-the-" + s.Key + "-password"},
		{"user", "nobody:nobody", s.Key},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := realConfig(s, container)
			cfg.Username, cfg.Password = tc.user, tc.key
			_, err := swift.New(context.Background(), cfg, nil)
			if !errors.Is(err, storage.ErrAccessDenied) {
				t.Fatalf("want ErrAccessDenied, got %v", err)
			}
			if strings.Contains(err.Error(), tc.key) {
				t.Errorf("the error shows the password: %v", err)
			}
			if !strings.Contains(err.Error(), tc.user) || !strings.Contains(err.Error(), s.AuthURL) {
				t.Errorf("the error should name the user and the auth URL: %v", err)
			}
			t.Log(err)
		})
	}
}

func TestSwiftMissingContainer(t *testing.T) {
	s := testenv.Swift(t)
	cfg := realConfig(s, "regsweep-no-such-container-"+fmt.Sprint(time.Now().UnixNano()))
	_, err := swift.New(context.Background(), cfg, nil)
	want := fmt.Sprintf("container %q does not exist", cfg.Container)
	if err == nil || !strings.Contains(err.Error(), want) || !storage.IsNotFound(err) {
		t.Fatalf("missing container: %v, want %q", err, want)
	}
	t.Log(err)
}

func TestSwiftStorageURLOverride(t *testing.T) {
	s := testenv.Swift(t)
	container := testenv.NewContainer(t, s)
	real := s.Connection(t).StorageUrl // http://127.0.0.1:18080/v1/AUTH_test
	ctx := context.Background()

	cfg := realConfig(s, container)
	cfg.StorageURL = real
	d := openReal(t, cfg, nil)
	if err := d.Put(ctx, "o/k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if b, err := d.Get(ctx, "o/k", 10); err != nil || string(b) != "v" {
		t.Fatalf("Get through the override: %q %v", b, err)
	}
	if d.BulkDeleteMax() != 10000 {
		t.Errorf("/info through the override: bulk max %d", d.BulkDeleteMax())
	}
	swift.Unauthenticate(d)
	if res, err := d.Delete(ctx, []string{"o/k"}); err != nil || len(res) != 0 {
		t.Fatalf("Delete after re-authentication: %v %v", res, err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	base := strings.TrimSuffix(real, "/v1/AUTH_test")
	for _, tc := range []struct {
		name, url string
		is        error
	}{
		{"other account", base + "/v1/AUTH_other", storage.ErrAccessDenied},
		{"wrong path", base + "/swift/v1/AUTH_test", nil},
		{"dead address", "http://" + dead + "/v1/AUTH_test", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := cfg
			bad.StorageURL = tc.url
			_, err := swift.New(ctx, bad, nil)
			if err == nil || !strings.Contains(err.Error(), "StorageURL setting") || !strings.Contains(err.Error(), tc.url) {
				t.Fatalf("override %s: %v, want an error naming the StorageURL setting and the URL", tc.url, err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("want %v, got %v", tc.is, err)
			}
			t.Log(err)
		})
	}
}

func TestSwiftLocation(t *testing.T) {
	s := testenv.Swift(t)
	container := testenv.NewContainer(t, s)
	cfg := realConfig(s, container)
	cfg.Prefix = "reg"
	d := openReal(t, cfg, nil)
	su, err := url.Parse(s.Connection(t).StorageUrl)
	if err != nil {
		t.Fatal(err)
	}
	if want := "swift://" + su.Host + su.Path + "/" + container + "/reg"; d.Location() != want {
		t.Errorf("Location() = %q, want %q", d.Location(), want)
	}
}
