package s3_test

// Tests against the real MinIO of the project's test environment
// (testenv/up.sh). A missing server fails these tests; it never skips them.

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/sync/errgroup"

	"github.com/regsweep/regsweep/internal/testenv"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/storage/s3"
	"github.com/regsweep/regsweep/storage/storagetest"
)

func minioConfig(srv testenv.MinIOServer, bucket, root string) s3.Config {
	return s3.Config{
		Endpoint:       srv.URL(),
		Region:         "us-east-1",
		Bucket:         bucket,
		AccessKey:      srv.AccessKey,
		SecretKey:      srv.SecretKey,
		RootDirectory:  root,
		ForcePathStyle: true,
		V4Auth:         true,
		Concurrency:    4,
	}
}

func open(t *testing.T, cfg s3.Config, reqs *storage.Requests) *s3.Driver {
	t.Helper()
	d, err := s3.New(context.Background(), cfg, reqs)
	if err != nil {
		t.Fatalf("s3.New: %v", err)
	}
	return d
}

// bulkPut writes keys with parallel single PUTs.
func bulkPut(d storage.Driver) func(ctx context.Context, keys []string, data []byte) error {
	return func(ctx context.Context, keys []string, data []byte) error {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(32)
		for _, k := range keys {
			g.Go(func() error { return d.Put(gctx, k, data) })
		}
		return g.Wait()
	}
}

func walkAll(t *testing.T, d storage.Driver, prefix string) []storage.ObjectInfo {
	t.Helper()
	var got []storage.ObjectInfo
	if err := d.Walk(context.Background(), prefix, func(oi storage.ObjectInfo) error {
		got = append(got, oi)
		return nil
	}); err != nil {
		t.Fatalf("Walk(%q): %v", prefix, err)
	}
	slices.SortFunc(got, func(a, b storage.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	return got
}

func keysOf(ois []storage.ObjectInfo) []string {
	var ks []string
	for _, oi := range ois {
		ks = append(ks, oi.Key)
	}
	return ks
}

// diff returns the requests made since before.
func diff(reqs *storage.Requests, before map[string]int64) map[string]int64 {
	now := reqs.Snapshot()
	out := map[string]int64{}
	for k, v := range now {
		if v-before[k] != 0 {
			out[k] = v - before[k]
		}
	}
	return out
}

func wantRequests(t *testing.T, what string, got map[string]int64, want map[string]int64) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: requests %v, want %v", what, got, want)
	} else {
		t.Logf("%s: requests %v", what, got)
	}
}

func TestS3Conformance(t *testing.T) {
	srv := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, srv)
	for _, tc := range []struct {
		name, root string
		v1         bool
	}{
		{"RootDirectory", "/registry", false},
		{"NoRoot", "", false},
		{"ListV1", "/v1root/", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := minioConfig(srv, bucket, tc.root)
			cfg.ListV1 = tc.v1
			bulk := open(t, cfg, nil)
			storagetest.Run(t, func(t *testing.T) storage.Driver { return open(t, cfg, nil) },
				storagetest.Options{PageSize: 1000, BulkPut: bulkPut(bulk)})
		})
	}
}

// The root directory maps keys exactly as distribution does, and nothing
// outside it is ever seen or touched.
func TestS3RootDirectory(t *testing.T) {
	srv := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, srv)
	ctx := context.Background()
	raw := open(t, minioConfig(srv, bucket, ""), nil)
	d := open(t, minioConfig(srv, bucket, "/registry/"), nil)

	for _, k := range []string{"registry/docker/registry/v2/a", "outside/docker/registry/v2/b", "registryx/docker/c", "docker/registry/v2/d"} {
		if err := raw.Put(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if got := keysOf(walkAll(t, d, "")); !slices.Equal(got, []string{"docker/registry/v2/a"}) {
		t.Errorf("Walk below the root = %v, want only docker/registry/v2/a", got)
	}
	if got := keysOf(walkAll(t, d, "docker/")); !slices.Equal(got, []string{"docker/registry/v2/a"}) {
		t.Errorf("Walk(docker/) below the root = %v", got)
	}
	if b, err := d.Get(ctx, "docker/registry/v2/a", 100); err != nil || string(b) != "registry/docker/registry/v2/a" {
		t.Errorf("Get through the root: %q, %v", b, err)
	}
	if _, err := d.Stat(ctx, "docker/registry/v2/d"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a key outside the root must not be found through it: %v", err)
	}

	if err := d.Put(ctx, "docker/new", []byte("n")); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Stat(ctx, "registry/docker/new"); err != nil {
		t.Errorf("Put below the root did not write registry/docker/new: %v", err)
	}
	// Deleting "docker/registry/v2/d" through the root deletes
	// registry/docker/registry/v2/d (absent), never the key outside.
	if res, err := d.Delete(ctx, []string{"docker/registry/v2/d", "docker/new"}); err != nil || len(res) != 0 {
		t.Fatalf("Delete: %v %v", res, err)
	}
	if _, err := raw.Stat(ctx, "docker/registry/v2/d"); err != nil {
		t.Errorf("Delete through the root removed a key outside it: %v", err)
	}
	if _, err := raw.Stat(ctx, "registry/docker/new"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Delete through the root left registry/docker/new: %v", err)
	}
	if want := "s3://" + srv.Endpoint + "/" + bucket + "/registry"; d.Location() != want {
		t.Errorf("Location = %q, want %q", d.Location(), want)
	}
	if strings.Contains(d.Location(), srv.SecretKey) || strings.Contains(d.Location(), srv.AccessKey) {
		t.Errorf("Location shows credentials: %s", d.Location())
	}
}

// ETags come without quotes and, for a single PUT, are the MD5 of the
// content, in a listing and a stat alike.
func TestS3ETagAndModTime(t *testing.T) {
	srv := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, srv)
	ctx := context.Background()
	d := open(t, minioConfig(srv, bucket, "r"), nil)
	data := []byte("sha256:0123")
	before := time.Now().Add(-time.Minute)
	if err := d.Put(ctx, "docker/link", data); err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(data)
	want := hex.EncodeToString(sum[:])
	oi, err := d.Stat(ctx, "docker/link")
	if err != nil {
		t.Fatal(err)
	}
	walked := walkAll(t, d, "")
	if oi.ETag != want || len(walked) != 1 || walked[0].ETag != want {
		t.Errorf("ETag: stat %q, walk %+v, want %q", oi.ETag, walked, want)
	}
	// A listing gives milliseconds, a HEAD's Last-Modified whole seconds.
	if oi.ModTime.Before(before.Truncate(time.Second)) || walked[0].ModTime.Sub(oi.ModTime).Abs() >= time.Second {
		t.Errorf("ModTime: stat %v and walk %v differ by a second or more", oi.ModTime, walked[0].ModTime)
	}
}

// Request counts: one request per listing page, per 1000 deleted keys, per
// stat and per get; a walk stopped by its callback lists no further page.
func TestS3RequestCounts(t *testing.T) {
	srv := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, srv)
	ctx := context.Background()
	reqs := &storage.Requests{}

	before := reqs.Snapshot()
	d := open(t, minioConfig(srv, bucket, "/registry"), reqs)
	wantRequests(t, "New with a region", diff(reqs, before), map[string]int64{"head": 1})

	const n = 2500
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("docker/registry/v2/blobs/sha256/%02x/%064x/data", i%256, i)
	}
	before = reqs.Snapshot()
	if err := bulkPut(d)(ctx, keys, []byte("x")); err != nil {
		t.Fatal(err)
	}
	wantRequests(t, "put 2500 keys", diff(reqs, before), map[string]int64{"put": n})

	before = reqs.Snapshot()
	if got := walkAll(t, d, ""); len(got) != n {
		t.Fatalf("walk found %d keys, want %d", len(got), n)
	}
	wantRequests(t, "walk 2500 keys", diff(reqs, before), map[string]int64{"list": 3})

	before = reqs.Snapshot()
	stop := errors.New("stop")
	calls := 0
	err := d.Walk(ctx, "", func(storage.ObjectInfo) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("stopped walk: %v after %d calls", err, calls)
	}
	wantRequests(t, "walk stopped at the first key", diff(reqs, before), map[string]int64{"list": 1})

	before = reqs.Snapshot()
	if _, err := d.Stat(ctx, keys[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Get(ctx, keys[0], 10); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Get(ctx, keys[0], 0); !errors.Is(err, storage.ErrTooLarge) {
		t.Errorf("Get with max 0 of a 1-byte object: %v", err)
	}
	wantRequests(t, "stat + 2 gets", diff(reqs, before), map[string]int64{"get": 2, "head": 1})

	v1cfg := minioConfig(srv, bucket, "/registry")
	v1cfg.ListV1 = true
	v1 := open(t, v1cfg, reqs)
	before = reqs.Snapshot()
	if got := walkAll(t, v1, ""); len(got) != n {
		t.Fatalf("V1 walk found %d keys, want %d", len(got), n)
	}
	wantRequests(t, "V1 walk 2500 keys", diff(reqs, before), map[string]int64{"list": 3})

	before = reqs.Snapshot()
	res, err := d.Delete(ctx, keys)
	if err != nil || len(res) != 0 {
		t.Fatalf("delete: %v %v", res, err)
	}
	wantRequests(t, "delete 2500 keys", diff(reqs, before), map[string]int64{"delete": 3})

	before = reqs.Snapshot()
	if got := walkAll(t, d, ""); len(got) != 0 {
		t.Errorf("after delete: %d keys left", len(got))
	}
	wantRequests(t, "walk an empty prefix", diff(reqs, before), map[string]int64{"list": 1})

	// Without a region the client asks for the bucket's location once.
	noRegion := minioConfig(srv, bucket, "/registry")
	noRegion.Region = ""
	before = reqs.Snapshot()
	d2 := open(t, noRegion, reqs)
	wantRequests(t, "New without a region", diff(reqs, before), map[string]int64{"head": 1, "list": 1})
	before = reqs.Snapshot()
	walkAll(t, d2, "")
	wantRequests(t, "walk after the location is known", diff(reqs, before), map[string]int64{"list": 1})
}

// ListObjects V1 walks exactly what V2 walks.
func TestS3ListV1(t *testing.T) {
	srv := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, srv)
	ctx := context.Background()
	v2 := open(t, minioConfig(srv, bucket, "registry"), nil)
	cfg := minioConfig(srv, bucket, "registry")
	cfg.ListV1 = true
	v1 := open(t, cfg, nil)
	var keys []string
	for i := range 1234 {
		keys = append(keys, fmt.Sprintf("docker/registry/v2/repositories/r%d/_manifests/tags/t%d/current/link", i%7, i))
	}
	keys = append(keys, "docker/weird key+with%chars/ü/data")
	if err := bulkPut(v2)(ctx, keys, []byte("payload")); err != nil {
		t.Fatal(err)
	}
	a, b := walkAll(t, v1, ""), walkAll(t, v2, "")
	if len(a) != len(keys) || len(a) != len(b) {
		t.Fatalf("V1 walked %d keys, V2 %d, want %d", len(a), len(b), len(keys))
	}
	for i := range a {
		if a[i].Key != b[i].Key || a[i].Size != b[i].Size || a[i].ETag != b[i].ETag || !a[i].ModTime.Equal(b[i].ModTime) {
			t.Fatalf("V1 %+v != V2 %+v", a[i], b[i])
		}
	}
	if !slices.Contains(keysOf(a), "docker/weird key+with%chars/ü/data") {
		t.Error("V1 lost the key with special characters")
	}
}

// Signature v2 (V4Auth false) works against MinIO too.
func TestS3SignatureV2(t *testing.T) {
	srv := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, srv)
	ctx := context.Background()
	cfg := minioConfig(srv, bucket, "")
	cfg.V4Auth = false
	d := open(t, cfg, nil)
	if err := d.Put(ctx, "docker/x", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if b, err := d.Get(ctx, "docker/x", 10); err != nil || string(b) != "v2" {
		t.Fatalf("Get: %q %v", b, err)
	}
	if got := keysOf(walkAll(t, d, "")); !slices.Equal(got, []string{"docker/x"}) {
		t.Errorf("Walk: %v", got)
	}
	if res, err := d.Delete(ctx, []string{"docker/x"}); err != nil || len(res) != 0 {
		t.Errorf("Delete: %v %v", res, err)
	}
}

// An upload abandoned by the registry is an incomplete multipart upload on
// .../_uploads/<id>/data: it is found below the root, mapped back to its
// logical key, and aborted. This also pins MinIO's prefix behaviour.
func TestS3MultipartUploads(t *testing.T) {
	srv := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, srv)
	ctx := context.Background()
	core := minio.Core{Client: srv.Client(t)}

	const id = "6f1c3c8e-2d4b-4f7a-9a51-0c2f3a5b7d9e"
	logical := "docker/registry/v2/repositories/r/_uploads/" + id + "/data"
	start := time.Now().Add(-time.Minute)
	uploadID, err := core.NewMultipartUpload(ctx, bucket, "registry/"+logical, minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	part := bytes.Repeat([]byte("p"), 1024)
	if _, err := core.PutObjectPart(ctx, bucket, "registry/"+logical, uploadID, 1, bytes.NewReader(part), int64(len(part)), minio.PutObjectPartOptions{}); err != nil {
		t.Fatal(err)
	}
	// One outside the root, which must stay invisible.
	outsideID, err := core.NewMultipartUpload(ctx, bucket, "other/"+logical, minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// The trap, as MinIO behaves: a directory prefix finds nothing, the
	// exact key and the empty prefix do. Logged, not asserted: the driver
	// must work either way.
	for _, p := range []string{"registry/docker/", "registry/" + logical, ""} {
		res, err := core.ListMultipartUploads(ctx, bucket, p, "", "", "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("MinIO ListMultipartUploads(prefix %q): %d uploads", p, len(res.Uploads))
	}

	type walkCase struct{ name, prefix string }
	walk := func(d *s3.Driver, prefix string) []storage.MultipartUpload {
		t.Helper()
		var got []storage.MultipartUpload
		if err := d.WalkMultipartUploads(ctx, prefix, func(u storage.MultipartUpload) error {
			got = append(got, u)
			return nil
		}); err != nil {
			t.Fatalf("WalkMultipartUploads(%q): %v", prefix, err)
		}
		return got
	}
	reqs := &storage.Requests{}
	d := open(t, minioConfig(srv, bucket, "/registry"), reqs)
	for _, c := range []walkCase{
		{"everything below the root (learns that MinIO ignores prefixes)", ""},
		{"directory prefix", "docker/"},
		{"deeper directory prefix", "docker/registry/v2/repositories/"},
		{"exact key", logical},
		{"upload directory", "docker/registry/v2/repositories/r/_uploads/" + id + "/"},
	} {
		before := reqs.Snapshot()
		got := walk(d, c.prefix)
		t.Logf("%s (%q): %d uploads, requests %v", c.name, c.prefix, len(got), diff(reqs, before))
		if len(got) != 1 || got[0].Key != logical || got[0].UploadID != uploadID {
			t.Fatalf("%s: WalkMultipartUploads(%q) = %+v, want the one upload %s on %s", c.name, c.prefix, got, uploadID, logical)
		}
		if got[0].Initiated.Before(start) || got[0].Initiated.After(time.Now().Add(time.Minute)) {
			t.Errorf("%s: Initiated %v is not about now", c.name, got[0].Initiated)
		}
	}
	if got := walk(d, "docker/registry/v2/repositories/other/"); len(got) != 0 {
		t.Errorf("a prefix with no uploads found %+v", got)
	}
	if got := walk(d, "docker/registry/v2/repositories/r/_uploads/"+id+"/dat"); len(got) != 1 {
		t.Errorf("a prefix of the key (not a directory) found %+v", got)
	}
	// No object shows in a listing: there is no data object yet.
	if got := walkAll(t, d, ""); len(got) != 0 {
		t.Errorf("an incomplete upload showed in Walk: %+v", got)
	}

	stop := errors.New("stop")
	if err := d.WalkMultipartUploads(ctx, "", func(storage.MultipartUpload) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("WalkMultipartUploads must return fn's error, got %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.WalkMultipartUploads(cancelled, "", func(storage.MultipartUpload) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled WalkMultipartUploads: %v", err)
	}

	if mp, ok := storage.MultipartOf(storage.ReadOnly(d)); !ok {
		t.Error("MultipartOf does not find the capability through ReadOnly")
	} else if err := mp.AbortMultipartUpload(ctx, logical, uploadID); !errors.Is(err, storage.ErrReadOnly) {
		t.Errorf("read-only abort: %v", err)
	}

	before := reqs.Snapshot()
	if err := d.AbortMultipartUpload(ctx, logical, uploadID); err != nil {
		t.Fatalf("abort: %v", err)
	}
	wantRequests(t, "abort", diff(reqs, before), map[string]int64{"delete": 1})
	if got := walk(d, ""); len(got) != 0 {
		t.Errorf("after the abort: %+v", got)
	}
	if got := walk(d, logical); len(got) != 0 {
		t.Errorf("after the abort, by exact key: %+v", got)
	}
	// AWS answers NoSuchUpload (ErrNotFound); MinIO answers 204 again.
	if err := d.AbortMultipartUpload(ctx, logical, uploadID); err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("aborting again: want success or ErrNotFound, got %v", err)
	} else {
		t.Logf("aborting an aborted upload: %v", err)
	}
	// The upload outside the root is still there.
	res, err := core.ListMultipartUploads(ctx, bucket, "other/"+logical, "", "", "", 1000)
	if err != nil || len(res.Uploads) != 1 || res.Uploads[0].UploadID != outsideID {
		t.Errorf("the upload outside the root: %+v %v", res.Uploads, err)
	}
}

// Many uploads: every one is found, through the server or the empty
// listing, and none twice.
func TestS3MultipartManyUploads(t *testing.T) {
	srv := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, srv)
	ctx := context.Background()
	core := minio.Core{Client: srv.Client(t)}
	want := map[string]string{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range 40 {
		g.Go(func() error {
			key := fmt.Sprintf("docker/registry/v2/repositories/r%d/_uploads/u%03d/data", i%3, i)
			id, err := core.NewMultipartUpload(gctx, bucket, key, minio.PutObjectOptions{})
			mu.Lock()
			want[id] = key
			mu.Unlock()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	d := open(t, minioConfig(srv, bucket, ""), nil)
	got := map[string]string{}
	err := d.WalkMultipartUploads(ctx, "docker/registry/v2/repositories/", func(u storage.MultipartUpload) error {
		if _, dup := got[u.UploadID]; dup {
			t.Errorf("upload %s twice", u.UploadID)
		}
		got[u.UploadID] = u.Key
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("found %d uploads, want %d", len(got), len(want))
	}
	got = map[string]string{}
	if err := d.WalkMultipartUploads(ctx, "docker/registry/v2/repositories/r1/", func(u storage.MultipartUpload) error {
		got[u.UploadID] = u.Key
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for id, key := range got {
		if !strings.HasPrefix(key, "docker/registry/v2/repositories/r1/") || want[id] != key {
			t.Errorf("r1/ walk returned %s %s", id, key)
		}
	}
	if len(got) != 13 {
		t.Errorf("r1/ walk found %d uploads, want 13", len(got))
	}
}

func TestS3WrongCredentials(t *testing.T) {
	srv := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, srv)
	for _, c := range []struct{ name, access, secret string }{
		{"wrong secret", srv.AccessKey, "not-the-secret-0123456789"},
		{"unknown access key", "NOSUCHACCESSKEY", "not-the-secret-0123456789"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := minioConfig(srv, bucket, "")
			cfg.AccessKey, cfg.SecretKey = c.access, c.secret
			_, err := s3.New(context.Background(), cfg, nil)
			if !errors.Is(err, storage.ErrAccessDenied) {
				t.Fatalf("want ErrAccessDenied, got %v", err)
			}
			msg := err.Error()
			if strings.Contains(msg, c.secret) || strings.Contains(msg, srv.SecretKey) {
				t.Errorf("the error shows a secret: %s", msg)
			}
			if !strings.Contains(msg, "refused the credentials") {
				t.Errorf("the error should say the credentials were refused: %s", msg)
			}
			t.Log(msg)
		})
	}
}

func TestS3MissingBucket(t *testing.T) {
	srv := testenv.MinIO(t)
	name := fmt.Sprintf("regsweep-missing-%d", time.Now().UnixNano())
	_, err := s3.New(context.Background(), minioConfig(srv, name, ""), nil)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("bucket %q does not exist", name)) {
		t.Fatalf("want a clear missing-bucket error, got %v", err)
	}
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("missing bucket at open should be ErrNotFound: %v", err)
	}
	t.Log(err)

	// A bucket that vanishes after New is never mistaken for a missing key.
	ctx := context.Background()
	c := srv.Client(t)
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		t.Fatal(err)
	}
	d := open(t, minioConfig(srv, name, ""), nil)
	if err := c.RemoveBucket(ctx, name); err != nil {
		t.Fatal(err)
	}
	_, err = d.Get(ctx, "docker/x", 10)
	if !errors.Is(err, s3.ErrNoSuchBucket) || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Get in a vanished bucket: want ErrNoSuchBucket and not ErrNotFound, got %v", err)
	}
	t.Logf("Get in a vanished bucket: %v", err)
	err = d.Walk(ctx, "", func(storage.ObjectInfo) error { return nil })
	if !errors.Is(err, s3.ErrNoSuchBucket) {
		t.Errorf("Walk of a vanished bucket: %v", err)
	}
	// A HEAD has no body: AWS cannot tell a missing bucket from a missing
	// key there; MinIO names it in the x-minio-error-code header.
	_, err = d.Stat(ctx, "docker/x")
	t.Logf("Stat in a vanished bucket: %v (ErrNotFound: %v)", err, errors.Is(err, storage.ErrNotFound))
}

func TestS3UnreachableEndpoint(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := s3.Config{Endpoint: "http://" + addr, Region: "us-east-1", Bucket: "reg", AccessKey: "a", SecretKey: "secret-s", V4Auth: true}
	start := time.Now()
	_, err = s3.New(context.Background(), cfg, nil)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "cannot reach") || !strings.Contains(err.Error(), addr) {
		t.Fatalf("want a clear unreachable error naming %s, got %v", addr, err)
	}
	if took > 3*time.Second {
		t.Errorf("New took %v to fail; it should fail fast", took)
	}
	if !storage.IsTransient(err) {
		t.Errorf("connection refused should stay recognisable as transient: %v", err)
	}
	t.Logf("%v (after %v)", err, took)
}

// An endpoint given as host:port with Secure false works like the URL form.
func TestS3EndpointForms(t *testing.T) {
	srv := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, srv)
	cfg := minioConfig(srv, bucket, "")
	cfg.Endpoint = srv.Endpoint
	a := open(t, cfg, nil)
	b := open(t, minioConfig(srv, bucket, ""), nil)
	if a.Location() != b.Location() {
		t.Errorf("Location differs: %s vs %s", a.Location(), b.Location())
	}
	cfg.ForcePathStyle = false // auto: path style for a non-AWS endpoint
	c := open(t, cfg, nil)
	if err := c.Put(context.Background(), "docker/x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got := keysOf(walkAll(t, b, "")); !slices.Equal(got, []string{"docker/x"}) {
		t.Errorf("walk: %v", got)
	}
}

// MinIO trap: once an object exists whose key is also a directory of other
// keys ("r/docker/a/b" beside "r/docker/a/b/x"), MinIO's listings show that
// object and hide everything below it, though a HEAD still finds the hidden
// keys. The driver cannot see the hidden keys; this pins that the shadowing
// object itself is walked, so the layer that knows the layout can refuse a
// key that has no business being there.
func TestS3MinIOShadowedPrefix(t *testing.T) {
	srv := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, srv)
	ctx := context.Background()
	d := open(t, minioConfig(srv, bucket, "/registry"), nil)
	keys := []string{"docker/registry/v2/repositories/lib/_layers/sha256/ab/link", "docker/registry/v2/repositories/lib"}
	for _, k := range keys {
		if err := d.Put(ctx, k, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		if res, err := d.Delete(ctx, keys); err != nil || len(res) != 0 {
			t.Errorf("cleanup: %v %v", res, err)
		}
	}()
	got := keysOf(walkAll(t, d, ""))
	if !slices.Contains(got, keys[1]) {
		t.Fatalf("the shadowing object %s is not walked: %v", keys[1], got)
	}
	if _, err := d.Stat(ctx, keys[0]); err != nil {
		t.Errorf("the shadowed key does not stat: %v", err)
	}
	if !slices.Contains(got, keys[0]) {
		t.Logf("MinIO hides %s below the object %s: walk = %v", keys[0], keys[1], got)
	}
}

// TestS3ListingNamesNeedingEncoding: names that XML and URL encoding must
// carry come back from a real server's listing, flat and by level, as they
// were written, with sizes and times (list.go parses these pages itself).
func TestS3ListingNamesNeedingEncoding(t *testing.T) {
	srv := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, srv)
	ctx := context.Background()
	d := open(t, minioConfig(srv, bucket, "root"), nil)
	names := []string{"docker/a&b", "docker/<tag>", "docker/100%", "docker/x+y", "docker/sp ace", "docker/ümlaut/日本", "docker/q\"uote'", "docker/dir/inner"}
	before := time.Now().Add(-time.Minute)
	for i, n := range names {
		if err := d.Put(ctx, n, []byte(strings.Repeat("x", i))); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]int64{}
	for _, oi := range walkAll(t, d, "docker/") {
		if oi.ModTime.Before(before) {
			t.Errorf("%q: modification time %v is before the write", oi.Key, oi.ModTime)
		}
		got[oi.Key] = oi.Size
	}
	for i, n := range names {
		if size, ok := got[n]; !ok || size != int64(i) {
			t.Errorf("walk: %q size %d, present %v; want size %d", n, size, ok, i)
		}
	}
	if len(got) != len(names) {
		t.Errorf("walk listed %d keys, want %d: %v", len(got), len(names), got)
	}
	var dirs, objects []string
	err := d.ListDir(ctx, "docker/", func(oi storage.ObjectInfo, dir bool) error {
		if dir {
			dirs = append(dirs, oi.Key)
		} else {
			objects = append(objects, oi.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(dirs)
	if want := []string{"docker/dir/", "docker/ümlaut/"}; !slices.Equal(dirs, want) || len(objects) != len(names)-2 {
		t.Errorf("ListDir: dirs %q (want %q), %d objects (want %d)", dirs, want, len(objects), len(names)-2)
	}
}
