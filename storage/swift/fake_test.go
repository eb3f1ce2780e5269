package swift_test

// Fast unit tests against ncw/swift's in-process fake (swifttest). They sit
// on top of the real-Swift tests in real_test.go, never instead of them.

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	ncw "github.com/ncw/swift/v2"
	"github.com/ncw/swift/v2/swifttest"

	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/storage/storagetest"
	"github.com/regsweep/regsweep/storage/swift"
)

const fakeContainer = "regs"

type fake struct {
	srv *swifttest.SwiftServer
	raw *ncw.Connection // uncounted, for setup and checks
	// storagePath is the account's path on the fake: /v1/AUTH_swifttest.
	storagePath string
}

// newFake starts swifttest with container "regs". overrides replace the
// fake's answer on a path; they must all be set before the first request.
func newFake(t *testing.T, overrides map[string]swifttest.HandlerOverrideFunc) *fake {
	t.Helper()
	srv, err := swifttest.NewSwiftServer("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	for p, fn := range overrides {
		srv.SetOverride(p, fn)
	}
	f := &fake{srv: srv, storagePath: "/v1/AUTH_" + swifttest.TEST_ACCOUNT}
	f.raw = &ncw.Connection{UserName: swifttest.TEST_ACCOUNT, ApiKey: swifttest.TEST_ACCOUNT, AuthUrl: srv.AuthURL, AuthVersion: 1}
	ctx := context.Background()
	if err := f.raw.Authenticate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.raw.ContainerCreate(ctx, fakeContainer, nil); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fake) config() swift.Config {
	return swift.Config{
		AuthURL:   f.srv.AuthURL,
		Username:  swifttest.TEST_ACCOUNT,
		Password:  swifttest.TEST_ACCOUNT,
		Container: fakeContainer,
	}
}

func (f *fake) open(t *testing.T, cfg swift.Config, reqs *storage.Requests) *swift.Driver {
	t.Helper()
	d, err := swift.New(context.Background(), cfg, reqs)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return d
}

func (f *fake) names(t *testing.T) []string {
	t.Helper()
	names, err := f.raw.ObjectNamesAll(context.Background(), fakeContainer, nil)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	return names
}

// infoOverride answers /info with the given JSON document.
func infoOverride(doc map[string]any) swifttest.HandlerOverrideFunc {
	return func(w http.ResponseWriter, _ *http.Request, _ *httptest.ResponseRecorder) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(doc)
	}
}

func bulkInfo(max int) map[string]any {
	return map[string]any{
		"swift":       map[string]any{"version": "2.30.1"},
		"bulk_delete": map[string]any{"max_deletes_per_request": max, "max_failed_deletes": 1000},
	}
}

func TestFakeConformance(t *testing.T) {
	f := newFake(t, nil)
	// swifttest ignores If-None-Match; real_test.go runs the whole suite.
	storagetest.Run(t, func(t *testing.T) storage.Driver { return f.open(t, f.config(), nil) }, storagetest.Options{CreateOverwrites: true})
}

// distributionName is distribution v2.8's swiftPath for the absolute path
// "/"+key, written out independently of the driver.
func distributionName(prefix, key string) string {
	return strings.TrimLeft(strings.TrimRight(prefix+"/files"+"/"+key, "/"), "/")
}

func TestKeyMapping(t *testing.T) {
	const key = "docker/registry/v2/repositories/r/_layers/sha256/ab/link"
	for _, tc := range []struct{ prefix, name string }{
		{"", "files/" + key},
		{"reg", "reg/files/" + key},
		{"/reg", "reg/files/" + key},
		{"a/b", "a/b/files/" + key},
		{"/reg/", "reg//files/" + key}, // distribution does not normalise the prefix
	} {
		t.Run(tc.prefix, func(t *testing.T) {
			if got := distributionName(tc.prefix, key); got != tc.name {
				t.Fatalf("test table disagrees with distribution's rule: %q vs %q", got, tc.name)
			}
			f := newFake(t, nil)
			cfg := f.config()
			cfg.Prefix = tc.prefix
			d := f.open(t, cfg, nil)
			ctx := context.Background()
			if err := d.Put(ctx, key, []byte("x")); err != nil {
				t.Fatal(err)
			}
			// Objects outside files/ are not registry paths.
			for _, n := range []string{"segments/abc/def/0000000000000001", "other", "files-not"} {
				if err := f.raw.ObjectPutString(ctx, fakeContainer, n, "y", ""); err != nil {
					t.Fatal(err)
				}
			}
			names := f.names(t)
			if !contains(names, tc.name) {
				t.Fatalf("Put(%q) with prefix %q: objects %v, want %q among them", key, tc.prefix, names, tc.name)
			}
			var walked []string
			if err := d.Walk(ctx, "", func(oi storage.ObjectInfo) error { walked = append(walked, oi.Key); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(walked) != 1 || walked[0] != key {
				t.Fatalf("Walk(\"\") = %v, want [%s]", walked, key)
			}
			if oi, err := d.Stat(ctx, key); err != nil || oi.Key != key || oi.Size != 1 {
				t.Fatalf("Stat: %+v %v", oi, err)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestInvalidKeys(t *testing.T) {
	f := newFake(t, nil)
	d := f.open(t, f.config(), nil)
	ctx := context.Background()
	for _, k := range []string{"", "/abs", "dir/"} {
		if err := d.Put(ctx, k, nil); err == nil {
			t.Errorf("Put(%q) succeeded", k)
		}
		res, err := d.Delete(ctx, []string{k})
		if err != nil || len(res) != 1 || res[0].Err == nil || storage.IsNotFound(res[0].Err) {
			t.Errorf("Delete(%q) = %v, %v; want one failed result", k, res, err)
		}
	}
	if n := f.names(t); len(n) != 0 {
		t.Errorf("objects written: %v", n)
	}
}

func TestBulkDeleteChunks(t *testing.T) {
	f := newFake(t, map[string]swifttest.HandlerOverrideFunc{"/info": infoOverride(bulkInfo(10))})
	reqs := &storage.Requests{}
	d := f.open(t, f.config(), reqs)
	if d.BulkDeleteMax() != 10 {
		t.Fatalf("BulkDeleteMax = %d, want 10 from /info", d.BulkDeleteMax())
	}
	ctx := context.Background()
	keys := putKeys(t, d, 25)
	keep := "keep/me"
	if err := d.Put(ctx, keep, []byte("k")); err != nil {
		t.Fatal(err)
	}
	before := reqs.Snapshot()["delete"]
	res, err := d.Delete(ctx, append(keys, "never/existed"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !storage.IsNotFound(r.Err) {
			t.Errorf("delete %s: %v", r.Key, r.Err)
		}
	}
	if got := reqs.Snapshot()["delete"] - before; got != 3 {
		t.Errorf("26 keys with max_deletes_per_request 10 took %d delete requests, want 3", got)
	}
	if n := f.names(t); len(n) != 1 || n[0] != "files/"+keep {
		t.Errorf("left: %v, want only files/%s", n, keep)
	}
}

func putKeys(t *testing.T, d storage.Driver, n int) []string {
	t.Helper()
	var keys []string
	for i := range n {
		k := fmt.Sprintf("d/%03d", i)
		if err := d.Put(context.Background(), k, []byte("x")); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	return keys
}

func TestSingleDeletesWithoutBulk(t *testing.T) {
	f := newFake(t, nil) // the fake's own /info does not offer bulk_delete
	reqs := &storage.Requests{}
	cfg := f.config()
	cfg.Concurrency = 4
	d := f.open(t, cfg, reqs)
	if d.BulkDeleteMax() != 0 {
		t.Fatalf("BulkDeleteMax = %d, want 0", d.BulkDeleteMax())
	}
	keys := putKeys(t, d, 25)
	res, err := d.Delete(context.Background(), append(keys, "never/existed"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Key != "never/existed" || !storage.IsNotFound(res[0].Err) {
		t.Errorf("results %v, want one ErrNotFound for never/existed", res)
	}
	if got := reqs.Snapshot()["delete"]; got != 26 {
		t.Errorf("delete requests = %d, want 26", got)
	}
	if n := f.names(t); len(n) != 0 {
		t.Errorf("left: %v", n)
	}
}

// bulkAnswer replaces the body of bulk-delete responses; other requests on
// the account path keep the fake's answer.
func bulkAnswer(doc map[string]any) swifttest.HandlerOverrideFunc {
	return func(w http.ResponseWriter, r *http.Request, rec *httptest.ResponseRecorder) {
		if r.URL.Query().Get("bulk-delete") == "" {
			copyRecorded(w, rec, nil)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(doc)
	}
}

func copyRecorded(w http.ResponseWriter, rec *httptest.ResponseRecorder, body []byte) {
	for k, v := range rec.Header() {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	if body == nil {
		body = rec.Body.Bytes()
	}
	w.WriteHeader(rec.Code)
	w.Write(body)
}

func TestBulkDeletePerKeyErrors(t *testing.T) {
	f := newFake(t, map[string]swifttest.HandlerOverrideFunc{
		"/info": infoOverride(bulkInfo(100)),
		"/v1/AUTH_" + swifttest.TEST_ACCOUNT: bulkAnswer(map[string]any{
			"Number Deleted":   1,
			"Number Not Found": 1,
			"Errors": [][]string{
				{"/" + fakeContainer + "/files/a%20b", "503 Service Unavailable"},
				{"/" + fakeContainer + "/files/c", "409 Conflict"},
			},
			"Response Status": "502 Bad Gateway",
		}),
	})
	d := f.open(t, f.config(), nil)
	res, err := d.Delete(context.Background(), []string{"a b", "c", "ok", "gone"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]error{}
	for _, r := range res {
		got[r.Key] = r.Err
	}
	if len(got) != 2 || !errors.Is(got["a b"], storage.ErrTransient) || got["c"] == nil || storage.IsTransient(got["c"]) {
		t.Errorf("results %v: want a transient failure for %q and a permanent one for %q only", res, "a b", "c")
	}
	var pe *storage.PathError
	if !errors.As(got["c"], &pe) || pe.Key != "c" || pe.Driver != "swift" {
		t.Errorf("per-key error should be a PathError naming the key: %#v", got["c"])
	}
}

func TestBulkDeleteStoppedEarly(t *testing.T) {
	// max_failed_deletes reached: Swift stops and answers 400 with the
	// failures so far; the names it never reached are neither deleted nor
	// missing, and must not be reported as done.
	f := newFake(t, map[string]swifttest.HandlerOverrideFunc{
		"/info": infoOverride(bulkInfo(100)),
		"/v1/AUTH_" + swifttest.TEST_ACCOUNT: bulkAnswer(map[string]any{
			"Number Deleted":   1,
			"Number Not Found": 0,
			"Errors":           [][]string{{"/" + fakeContainer + "/files/b", "503 Service Unavailable"}},
			"Response Status":  "400 Bad Request",
			"Response Body":    "Max delete failures exceeded",
		}),
	})
	d := f.open(t, f.config(), nil)
	res, err := d.Delete(context.Background(), []string{"a", "b", "c", "e"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 {
		t.Fatalf("results %v: want all 4 keys reported (which one was deleted is unknown)", res)
	}
	for _, r := range res {
		if !storage.IsTransient(r.Err) {
			t.Errorf("%s: %v, want a transient failure (worth resending)", r.Key, r.Err)
		}
	}
}

func TestRequestCounts(t *testing.T) {
	f := newFake(t, nil)
	reqs := &storage.Requests{}
	d := f.open(t, f.config(), reqs)
	want := map[string]int64{"get": 2, "head": 1} // auth, /info; container HEAD
	check := func(step string) {
		t.Helper()
		got := reqs.Snapshot()
		for _, op := range []string{"list", "get", "head", "put", "delete"} {
			if got[op] != want[op] {
				t.Errorf("after %s: %s = %d, want %d (all: %v)", step, op, got[op], want[op], got)
			}
		}
	}
	check("New")
	ctx := context.Background()
	keys := putKeys(t, d, 3)
	want["put"] += 3
	check("3 Puts")
	if err := d.Walk(ctx, "", func(storage.ObjectInfo) error { return nil }); err != nil {
		t.Fatal(err)
	}
	want["list"]++
	check("Walk")
	if _, err := d.Stat(ctx, keys[0]); err != nil {
		t.Fatal(err)
	}
	want["head"]++
	check("Stat")
	if _, err := d.Get(ctx, keys[0], 10); err != nil {
		t.Fatal(err)
	}
	want["get"]++
	check("Get")
	if _, _, err := d.LargeObject(ctx, keys[0]); err != nil {
		t.Fatal(err)
	}
	want["head"]++
	check("LargeObject")
	if _, err := d.Delete(ctx, keys); err != nil {
		t.Fatal(err)
	}
	want["delete"] += 3
	check("Delete")
}

// listingCap makes the container listing return at most n names a page,
// whatever limit was asked for (as a cluster with a lower
// container_listing_limit does). Other requests keep the fake's answer.
func listingCap(n int) swifttest.HandlerOverrideFunc {
	return func(w http.ResponseWriter, r *http.Request, rec *httptest.ResponseRecorder) {
		if r.Method != http.MethodGet {
			copyRecorded(w, rec, nil)
			return
		}
		var objs []json.RawMessage
		if err := json.Unmarshal(rec.Body.Bytes(), &objs); err != nil {
			copyRecorded(w, rec, nil)
			return
		}
		var limit int
		fmt.Sscan(r.URL.Query().Get("limit"), &limit)
		if limit > 0 && len(objs) > limit {
			objs = objs[:limit]
		}
		if len(objs) > n {
			objs = objs[:n]
		}
		b, _ := json.Marshal(objs)
		copyRecorded(w, rec, b)
	}
}

func TestListingPagesFromInfo(t *testing.T) {
	cases := []struct {
		name      string
		info      swifttest.HandlerOverrideFunc
		pageSize  int
		wantLists int64
	}{
		// /info says pages hold 5: 12 names are pages of 5, 5, 2.
		{"info-limit", infoOverride(map[string]any{"swift": map[string]any{"container_listing_limit": 5}}), 5, 3},
		// No /info: the driver cannot know the cap and pages until an
		// empty page (5, 5, 2, 0) instead of stopping after the first.
		{"no-info", func(w http.ResponseWriter, _ *http.Request, _ *httptest.ResponseRecorder) {
			http.Error(w, "no", http.StatusNotFound)
		}, 10000, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, map[string]swifttest.HandlerOverrideFunc{
				"/info": tc.info,
				"/v1/AUTH_" + swifttest.TEST_ACCOUNT + "/" + fakeContainer: listingCap(5),
			})
			reqs := &storage.Requests{}
			d := f.open(t, f.config(), reqs)
			if d.PageSize() != tc.pageSize {
				t.Errorf("PageSize = %d, want %d", d.PageSize(), tc.pageSize)
			}
			putKeys(t, d, 12)
			before := reqs.Snapshot()["list"]
			var n int
			if err := d.Walk(context.Background(), "", func(storage.ObjectInfo) error { n++; return nil }); err != nil {
				t.Fatal(err)
			}
			if n != 12 {
				t.Errorf("Walk found %d keys, want 12", n)
			}
			if got := reqs.Snapshot()["list"] - before; got != tc.wantLists {
				t.Errorf("list requests = %d, want %d", got, tc.wantLists)
			}
		})
	}
}

func TestFakeDLO(t *testing.T) {
	f := newFake(t, map[string]swifttest.HandlerOverrideFunc{"/info": infoOverride(bulkInfo(1000))})
	d := f.open(t, f.config(), nil)
	ctx := context.Background()
	key := "docker/registry/v2/blobs/sha256/ab/abcd/data"
	segs := []string{"segments/abc/def0/0000000000000001", "segments/abc/def0/0000000000000002", "segments/abc/def0/0000000000000003"}
	var want []byte
	for i, s := range segs {
		part := bytes.Repeat([]byte{byte('a' + i)}, 1000+i)
		want = append(want, part...)
		if err := f.raw.ObjectPutBytes(ctx, fakeContainer, s, part, ""); err != nil {
			t.Fatal(err)
		}
	}
	putManifest(t, f.raw, fakeContainer, "files/"+key, fakeContainer+"/segments/abc/def0")
	if err := d.Put(ctx, "plain", []byte("p")); err != nil {
		t.Fatal(err)
	}

	oi, prefix, err := d.LargeObject(ctx, key)
	if err != nil || oi.Size != int64(len(want)) || prefix != "segments/abc/def0" || oi.Key != key {
		t.Fatalf("LargeObject = %+v %q %v; want size %d, prefix segments/abc/def0", oi, prefix, err, len(want))
	}
	if oi, prefix, err := d.LargeObject(ctx, "plain"); err != nil || prefix != "" || oi.Size != 1 {
		t.Fatalf("LargeObject(plain) = %+v %q %v", oi, prefix, err)
	}
	if got, err := d.Get(ctx, key, int64(len(want))); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Get of a DLO: %d bytes, %v", len(got), err)
	}
	if _, err := d.Get(ctx, key, int64(len(want)-1)); !errors.Is(err, storage.ErrTooLarge) {
		t.Fatalf("Get of a DLO above max: %v, want ErrTooLarge", err)
	}
	var segNames []string
	if err := d.WalkSegments(ctx, func(oi storage.ObjectInfo) error { segNames = append(segNames, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	sort.Strings(segNames)
	if strings.Join(segNames, ",") != strings.Join(segs, ",") {
		t.Fatalf("WalkSegments = %v, want %v", segNames, segs)
	}
	res, err := d.DeleteSegments(ctx, append(segNames, "files/plain", "segments/"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Err == nil || res[1].Err == nil {
		t.Fatalf("DeleteSegments must refuse names outside segments/: %v", res)
	}
	if n := f.names(t); strings.Join(n, ",") != "files/"+key+",files/plain" {
		t.Fatalf("left %v", n)
	}
	// The manifest now points at nothing: a 0-byte DLO, as an abandoned
	// upload leaves.
	if oi, prefix, err := d.LargeObject(ctx, key); err != nil || oi.Size != 0 || prefix != "segments/abc/def0" {
		t.Fatalf("LargeObject of a DLO without segments = %+v %q %v", oi, prefix, err)
	}
}

func putManifest(t *testing.T, c *ncw.Connection, container, name, manifest string) {
	t.Helper()
	_, err := c.ObjectPut(context.Background(), container, name, bytes.NewReader(nil), false, "", "application/octet-stream",
		ncw.Headers{"X-Object-Manifest": manifest, "Content-Length": "0"})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLargeObjectRefusesWhatItCannotMatch(t *testing.T) {
	f := newFake(t, nil)
	d := f.open(t, f.config(), nil)
	ctx := context.Background()
	if err := f.raw.ContainerCreate(ctx, "elsewhere", nil); err != nil {
		t.Fatal(err)
	}
	putManifest(t, f.raw, fakeContainer, "files/foreign", "elsewhere/segments/x")
	if _, _, err := d.LargeObject(ctx, "foreign"); err == nil || !strings.Contains(err.Error(), "elsewhere") {
		t.Errorf("manifest in another container: %v, want an error naming it", err)
	}
	_, err := f.raw.ObjectPut(ctx, fakeContainer, "files/slo", strings.NewReader("[]"), false, "", "application/json",
		ncw.Headers{"X-Static-Large-Object": "True"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.LargeObject(ctx, "slo"); err == nil || !strings.Contains(err.Error(), "static") {
		t.Errorf("static large object: %v, want an error", err)
	}
}

func TestErrorTranslation(t *testing.T) {
	status := func(code int) swifttest.HandlerOverrideFunc {
		return func(w http.ResponseWriter, _ *http.Request, _ *httptest.ResponseRecorder) {
			http.Error(w, http.StatusText(code), code)
		}
	}
	obj := "/v1/AUTH_" + swifttest.TEST_ACCOUNT + "/" + fakeContainer + "/files/"
	f := newFake(t, map[string]swifttest.HandlerOverrideFunc{
		obj + "e500": status(500),
		obj + "e503": status(503),
		obj + "e429": status(429),
		obj + "e408": status(408),
		obj + "e403": status(403),
		obj + "e401": status(401),
		obj + "e400": status(400),
	})
	d := f.open(t, f.config(), nil)
	ctx := context.Background()
	for _, tc := range []struct {
		key  string
		want error
	}{
		{"e500", storage.ErrTransient},
		{"e503", storage.ErrTransient},
		{"e429", storage.ErrTransient},
		{"e408", storage.ErrTransient},
		{"e403", storage.ErrAccessDenied},
		{"e401", storage.ErrAccessDenied},
		{"missing", storage.ErrNotFound},
	} {
		for op, call := range map[string]func() error{
			"stat": func() error { _, err := d.Stat(ctx, tc.key); return err },
			"get":  func() error { _, err := d.Get(ctx, tc.key, 100); return err },
		} {
			err := call()
			var pe *storage.PathError
			if !errors.Is(err, tc.want) || !errors.As(err, &pe) || pe.Key != tc.key || pe.Op != op || pe.Driver != "swift" {
				t.Errorf("%s %s: %v, want a PathError{%s, swift, %s} wrapping %v", op, tc.key, err, op, tc.key, tc.want)
			}
		}
	}
	_, err := d.Stat(ctx, "e400")
	if err == nil || storage.IsTransient(err) || storage.IsNotFound(err) || errors.Is(err, storage.ErrAccessDenied) {
		t.Errorf("400: %v, want a plain error", err)
	}
	// Refused deletes end the call.
	if _, err := d.Delete(ctx, []string{"e403"}); !errors.Is(err, storage.ErrAccessDenied) {
		t.Errorf("Delete refused: %v, want the call to fail with ErrAccessDenied", err)
	}
	res, err := d.Delete(ctx, []string{"e503"})
	if err != nil || len(res) != 1 || !storage.IsTransient(res[0].Err) {
		t.Errorf("Delete 503: %v %v, want one transient per-key failure", res, err)
	}
}

func TestWrongCredentialsFake(t *testing.T) {
	f := newFake(t, nil)
	cfg := f.config()
	cfg.Password = "s3cret-wrong-password"
	_, err := swift.New(context.Background(), cfg, nil)
	if !errors.Is(err, storage.ErrAccessDenied) {
		t.Fatalf("wrong password: %v, want ErrAccessDenied", err)
	}
	if strings.Contains(err.Error(), cfg.Password) {
		t.Errorf("the error shows the password: %v", err)
	}
	t.Log(err)
}

func TestMissingContainerFake(t *testing.T) {
	f := newFake(t, nil)
	cfg := f.config()
	cfg.Container = "nope"
	_, err := swift.New(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), `container "nope" does not exist`) || !storage.IsNotFound(err) {
		t.Fatalf("missing container: %v", err)
	}
	t.Log(err)
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = swift.New(context.Background(), swift.Config{AuthURL: "http://" + addr + "/auth/v1.0", Username: "u", Password: "p", Container: "c"}, nil)
	if err == nil || !strings.Contains(err.Error(), "cannot reach the auth endpoint") || !storage.IsTransient(err) {
		t.Fatalf("unreachable: %v", err)
	}
	t.Log(err)
	_, err = swift.New(context.Background(), swift.Config{AuthURL: "http://" + addr + "/auth", Username: "u", Password: "p", Container: "c"}, nil)
	if err == nil || !strings.Contains(err.Error(), "auth version") {
		t.Fatalf("auth URL without a version: %v", err)
	}
}

// tlsFront serves the fake's auth endpoint over TLS with httptest's
// self-signed certificate.
func tlsFront(t *testing.T, f *fake) *httptest.Server {
	t.Helper()
	target := &url.URL{Scheme: "http", Host: f.srv.Listener.Addr().String()}
	front := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(target))
	front.Config.ErrorLog = log.New(io.Discard, "", 0)
	front.StartTLS()
	t.Cleanup(front.Close)
	return front
}

func TestTLS(t *testing.T) {
	f := newFake(t, nil)
	front := tlsFront(t, f)
	cfg := f.config()
	cfg.AuthURL = front.URL + "/v1.0"
	ctx := context.Background()

	_, err := swift.New(ctx, cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "unknown authority") || !strings.Contains(err.Error(), "CAFile") {
		t.Fatalf("self-signed auth endpoint: %v, want an unknown-authority error pointing at CAFile", err)
	}
	t.Log(err)

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	withCA := cfg
	withCA.CAFile = caFile
	if _, err := swift.New(ctx, withCA, nil); err != nil {
		t.Fatalf("with CAFile: %v", err)
	}
	insecure := cfg
	insecure.InsecureSkipVerify = true
	if _, err := swift.New(ctx, insecure, nil); err != nil {
		t.Fatalf("with InsecureSkipVerify: %v", err)
	}
	bad := cfg
	bad.CAFile = filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(bad.CAFile, []byte("not pem"), 0o600)
	if _, err := swift.New(ctx, bad, nil); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("CA file without certificates: %v", err)
	}
}

func TestStorageURLOverrideFake(t *testing.T) {
	f := newFake(t, nil)
	// A proxy in front of the fake's storage that counts what reaches it.
	var seen atomic.Int64
	target := &url.URL{Scheme: "http", Host: f.srv.Listener.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)

	cfg := f.config()
	cfg.StorageURL = proxy.URL + f.storagePath + "/"
	d := f.open(t, cfg, nil)
	if d.StorageURL() != proxy.URL+f.storagePath {
		t.Errorf("StorageURL() = %q", d.StorageURL())
	}
	if want := "swift://" + strings.TrimPrefix(proxy.URL, "http://") + f.storagePath + "/" + fakeContainer + "/"; d.Location() != want {
		t.Errorf("Location() = %q, want %q", d.Location(), want)
	}
	if seen.Load() != 2 { // container HEAD and /info
		t.Errorf("proxy saw %d requests from New, want 2", seen.Load())
	}
	ctx := context.Background()
	if err := d.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// After a token expiry the driver authenticates again; the override
	// must survive it.
	swift.Unauthenticate(d)
	before := seen.Load()
	if _, err := d.Stat(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if seen.Load() != before+1 {
		t.Errorf("after re-authentication the Stat went around the override (proxy saw %d new requests)", seen.Load()-before)
	}

	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	cfg.StorageURL = "http://" + dead + f.storagePath
	_, err := swift.New(ctx, cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "StorageURL setting") || !strings.Contains(err.Error(), dead) {
		t.Fatalf("override to a dead address: %v", err)
	}
	t.Log(err)
}

func TestLocationFake(t *testing.T) {
	f := newFake(t, nil)
	cfg := f.config()
	cfg.Prefix = "reg"
	d := f.open(t, cfg, nil)
	host := strings.TrimPrefix(f.srv.URL, "http://")
	host = strings.TrimSuffix(host, "/v1")
	if want := "swift://" + host + "/v1/AUTH_swifttest/regs/reg"; d.Location() != want {
		t.Errorf("Location() = %q, want %q", d.Location(), want)
	}
	if strings.Contains(d.Location(), swifttest.TEST_ACCOUNT+":") {
		t.Errorf("Location shows credentials: %s", d.Location())
	}
	if d.Name() != "swift" {
		t.Errorf("Name() = %q", d.Name())
	}
}

func TestReadOnlySegments(t *testing.T) {
	f := newFake(t, nil)
	d := f.open(t, f.config(), nil)
	lo, ok := storage.LargeObjectsOf(storage.ReadOnly(storage.Limit(d, 2)))
	if !ok {
		t.Fatal("LargeObjects not found through wrappers")
	}
	if _, err := lo.DeleteSegments(context.Background(), []string{"segments/x/1"}); !errors.Is(err, storage.ErrReadOnly) {
		t.Errorf("read-only DeleteSegments: %v", err)
	}
}
