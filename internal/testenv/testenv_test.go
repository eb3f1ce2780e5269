package testenv_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"

	"github.com/regsweep/regsweep/internal/testenv"
)

func fsStorage(t *testing.T) string {
	s, _ := fsStorageRoot(t)
	return s
}

func fsStorageRoot(t *testing.T) (string, string) {
	root := t.TempDir()
	return fmt.Sprintf("filesystem:\n  rootdirectory: %s\n", root), root
}

func fsUploadExists(root string) func(id string) bool {
	return func(id string) bool {
		_, err := os.Stat(filepath.Join(root, "docker/registry/v2/repositories/app/one/_uploads", id, "startedat"))
		return err == nil
	}
}

func s3UploadExists(t *testing.T, m testenv.MinIOServer, bucket string) func(id string) bool {
	return func(id string) bool {
		c := m.Client(t)
		for o := range c.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Recursive: true}) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			if strings.HasSuffix(o.Key, "/app/one/_uploads/"+id+"/startedat") {
				return true
			}
		}
		return false
	}
}

func swiftUploadExists(t *testing.T, s testenv.SwiftServer, container string) func(id string) bool {
	return func(id string) bool {
		names, err := s.Connection(t).ObjectNamesAll(context.Background(), container, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if strings.HasSuffix(n, "/app/one/_uploads/"+id+"/startedat") {
				return true
			}
		}
		return false
	}
}

func s3Storage(t *testing.T) (string, testenv.MinIOServer, string) {
	m := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, m)
	return fmt.Sprintf(`s3:
  region: us-east-1
  bucket: %s
  accesskey: %s
  secretkey: %s
  regionendpoint: %s
  forcepathstyle: true
  secure: false
  v4auth: true
  rootdirectory: /
`, bucket, m.AccessKey, m.SecretKey, m.URL()), m, bucket
}

func swiftStorage(t *testing.T) (string, testenv.SwiftServer, string) {
	s := testenv.Swift(t)
	container := testenv.NewContainer(t, s)
	// Keys of the v2.8 swift driver (mapstructure, case-insensitive).
	return fmt.Sprintf(`swift:
  authurl: %s
  username: %s
  password: %s
  container: %s
  authversion: 1
`, s.AuthURL, s.User, s.Key, container), s, container
}

type manifest struct {
	MediaType string `json:"mediaType"`
	Config    struct {
		Digest string `json:"digest"`
	} `json:"config"`
	Layers []struct {
		Digest string `json:"digest"`
	} `json:"layers"`
	Manifests []struct {
		Digest string `json:"digest"`
	} `json:"manifests"`
}

func getManifest(t *testing.T, reg *testenv.Registry, ref string) manifest {
	t.Helper()
	var m manifest
	out := reg.Crane(t, "manifest", reg.Ref(ref))
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("manifest %s: %v\n%s", ref, err, out)
	}
	return m
}

// exercise pushes, pulls and validates images, an index, a referrer, a blob
// and an abandoned upload on reg.
// uploadExists reports whether the storage holds the upload with that UUID.
func exercise(t *testing.T, reg *testenv.Registry, uploadExists func(id string) bool) {
	start, last := time.Now(), time.Now()
	step := func(name string) {
		t.Logf("%-22s %6.2fs", name, time.Since(last).Seconds())
		last = time.Now()
	}
	defer func() { t.Logf("exercise total %.2fs", time.Since(start).Seconds()) }()
	// A tagged image, validated and pulled back.
	d1 := testenv.PushRandomImage(t, reg, "app/one:v1")
	reg.Crane(t, "validate", "--remote", reg.Ref("app/one:v1"))
	out := filepath.Join(t.TempDir(), "pulled.tar")
	reg.Crane(t, "pull", reg.Ref("app/one@"+d1), out)
	if st, err := os.Stat(out); err != nil || st.Size() == 0 {
		t.Fatalf("crane pull wrote nothing: %v", err)
	}
	if got := reg.Crane(t, "digest", reg.Ref("app/one:v1")); got != d1 {
		t.Fatalf("digest of app/one:v1 = %s, pushed %s", got, d1)
	}

	step("tagged push+pull")

	// Shared layers: the same bytes give the same blob, in any repository,
	// and the same layers give the same image.
	shared := testenv.RandomBytes(t, 64<<10)
	da := testenv.PushRandomImage(t, reg, "app/two:a", shared, testenv.RandomBytes(t, 100))
	db := testenv.PushRandomImage(t, reg, "app/three:b", shared)
	dc := testenv.PushRandomImage(t, reg, "app/four:c", shared)
	if db != dc {
		t.Errorf("same layers, different image digests: %s vs %s", db, dc)
	}
	ma, mb := getManifest(t, reg, "app/two@"+da), getManifest(t, reg, "app/three@"+db)
	if len(ma.Layers) != 2 || len(mb.Layers) != 1 || ma.Layers[0].Digest != mb.Layers[0].Digest {
		t.Errorf("shared layer not shared: %+v vs %+v", ma.Layers, mb.Layers)
	}

	step("shared layers")

	// Push by digest, without a tag.
	du := testenv.PushRandomImage(t, reg, "app/one")
	reg.Crane(t, "validate", "--remote", reg.Ref("app/one@"+du))
	if tags := reg.Crane(t, "ls", reg.Ref("app/one")); strings.Fields(tags)[0] != "v1" || len(strings.Fields(tags)) != 1 {
		t.Errorf("tags of app/one = %q, want only v1", tags)
	}

	step("untagged push")

	// OCI image and an index of two images.
	doci := testenv.PushRandomOCIImage(t, reg, "app/oci:1")
	if mt := getManifest(t, reg, "app/oci:1").MediaType; mt != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("OCI image has media type %q", mt)
	}
	di := testenv.PushIndex(t, reg, "app/one:multi", d1, du)
	reg.Crane(t, "validate", "--remote", reg.Ref("app/one:multi"))
	if mi := getManifest(t, reg, "app/one@"+di); len(mi.Manifests) != 2 {
		t.Errorf("index has %d manifests, want 2", len(mi.Manifests))
	}

	step("oci+index")

	// An OCI 1.1 referrer (subject) through a plain PUT.
	empty := testenv.UploadBlob(t, reg, "app/oci", []byte("{}"))
	sbom := []byte(`{"sbom":"` + time.Now().String() + `"}`)
	sbomDigest := testenv.UploadBlob(t, reg, "app/oci", sbom)
	subject := reg.Crane(t, "manifest", reg.Ref("app/oci@"+doci))
	referrer := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"artifactType":"application/vnd.example.sbom",`+
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},`+
		`"layers":[{"mediaType":"application/vnd.example.sbom","digest":"%s","size":%d}],`+
		`"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d}}`,
		empty, sbomDigest, len(sbom), doci, len(subject))
	dr := testenv.PutManifest(t, reg, "app/oci", testenv.Digest([]byte(referrer)), "application/vnd.oci.image.manifest.v1+json", []byte(referrer))
	if dr != testenv.Digest([]byte(referrer)) {
		t.Errorf("referrer digest %s, want %s", dr, testenv.Digest([]byte(referrer)))
	}
	if code, body, _ := testenv.Get(t, reg, "/v2/app/oci/manifests/"+dr, "application/vnd.oci.image.manifest.v1+json"); code != http.StatusOK || !strings.Contains(string(body), doci) {
		t.Errorf("GET referrer: %d %s", code, body)
	}

	step("referrer")

	// An abandoned upload stays in the storage.
	id := testenv.StartAbandonedUpload(t, reg, "app/one")
	if !uploadExists(id) {
		t.Errorf("abandoned upload %s not found in the storage", id)
	}

	step("abandoned upload")

	// Everything survives a restart.
	reg.Restart()
	reg.Crane(t, "validate", "--remote", reg.Ref("app/one:multi"))
	reg.Crane(t, "validate", "--remote", reg.Ref("app/two@"+da))
	step("restart+validate")
}

func TestRegistryV3Filesystem(t *testing.T) {
	t.Parallel()
	storage, root := fsStorageRoot(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{Version: testenv.RegistryV3, Storage: storage})
	exercise(t, reg, fsUploadExists(root))
}

func TestRegistryV28Filesystem(t *testing.T) {
	t.Parallel()
	storage, root := fsStorageRoot(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{Version: testenv.RegistryV28, Storage: storage})
	exercise(t, reg, fsUploadExists(root))
}

// checkMultipart checks that the abandoned uploads left open multipart
// uploads on .../_uploads/<id>/data, found by listing with an empty prefix.
func checkMultipart(t *testing.T, m testenv.MinIOServer, bucket string, ids []string) {
	t.Helper()
	core := minio.Core{Client: m.Client(t)}
	ctx := context.Background()
	all, err := core.ListMultipartUploads(ctx, bucket, "", "", "", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		found := false
		for _, u := range all.Uploads {
			if strings.HasSuffix(u.Key, "/_uploads/"+id+"/data") {
				found = true
			}
		}
		if !found {
			t.Errorf("no open multipart upload for abandoned upload %s; uploads: %+v", id, all.Uploads)
		}
	}
	withPrefix, err := core.ListMultipartUploads(ctx, bucket, "docker/", "", "", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MinIO ListMultipartUploads: %d with prefix \"\", %d with prefix \"docker/\"", len(all.Uploads), len(withPrefix.Uploads))
}

func TestRegistryV3MinIO(t *testing.T) {
	t.Parallel()
	storage, m, bucket := s3Storage(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{Version: testenv.RegistryV3, Storage: storage})
	exercise(t, reg, s3UploadExists(t, m, bucket))
	id := testenv.StartAbandonedUpload(t, reg, "app/abandoned")
	checkMultipart(t, m, bucket, []string{id})
}

func TestRegistryV28MinIO(t *testing.T) {
	t.Parallel()
	storage, m, bucket := s3Storage(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{Version: testenv.RegistryV28, Storage: storage})
	exercise(t, reg, s3UploadExists(t, m, bucket))
	id := testenv.StartAbandonedUpload(t, reg, "app/abandoned")
	checkMultipart(t, m, bucket, []string{id})
}

func TestRegistryV28Swift(t *testing.T) {
	t.Parallel()
	storage, s, container := swiftStorage(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{Version: testenv.RegistryV28, Storage: storage})
	exercise(t, reg, swiftUploadExists(t, s, container))

	// The v2.8 swift driver writes blobs as DLOs over segments/.
	c := s.Connection(t)
	ctx := context.Background()
	info, err := c.QueryInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !info.SupportsBulkDelete() {
		t.Errorf("Swift /info does not advertise bulk_delete")
	}
	names, err := c.ObjectNamesAll(ctx, container, nil)
	if err != nil {
		t.Fatal(err)
	}
	var dlos, segments int
	for _, n := range names {
		switch {
		case strings.HasPrefix(n, "segments/"):
			segments++
		case strings.HasPrefix(n, "files/docker/registry/v2/blobs/") && strings.HasSuffix(n, "/data"):
			_, h, err := c.Object(ctx, container, n)
			if err != nil {
				t.Fatal(err)
			}
			if h["X-Object-Manifest"] != "" {
				dlos++
			}
		}
	}
	if dlos == 0 || segments == 0 {
		t.Errorf("expected DLO blobs and segments in %s; got %d DLOs, %d segments among %d objects", container, dlos, segments, len(names))
	}
	t.Logf("swift container: %d objects, %d DLO blob data objects, %d segments", len(names), dlos, segments)
}

func TestRegistryReadOnly(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	storage := fmt.Sprintf("filesystem:\n  rootdirectory: %s\n", root)
	rw := testenv.StartRegistry(t, testenv.RegistryOptions{Storage: storage})
	d := testenv.PushRandomImage(t, rw, "ro/app:1")
	rw.Stop()
	ro := testenv.StartRegistry(t, testenv.RegistryOptions{Storage: storage, ReadOnly: true})
	ro.Crane(t, "validate", "--remote", ro.Ref("ro/app@"+d))
	code, _, _ := do(t, http.MethodPost, ro.URL()+"/v2/ro/app/blobs/uploads/")
	if code != http.StatusMethodNotAllowed {
		t.Errorf("POST upload on a read-only registry: %d, want 405", code)
	}
}

func do(t *testing.T, method, url string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, resp.Status, resp.Header
}

// The reference garbage collectors run: an image whose tag moved loses its
// blobs with --delete-untagged, the current one keeps them.
func TestReferenceGC(t *testing.T) {
	for _, v := range []string{testenv.RegistryV3, testenv.RegistryV28} {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			reg := testenv.StartRegistry(t, testenv.RegistryOptions{Version: v, Storage: fsStorage(t)})
			oldLayer, newLayer := testenv.RandomBytes(t, 5000), testenv.RandomBytes(t, 5000)
			dOld := testenv.PushRandomImage(t, reg, "gc/app:latest", oldLayer)
			mOld := getManifest(t, reg, "gc/app@"+dOld)
			testenv.PushRandomImage(t, reg, "gc/app:latest", newLayer)
			mNew := getManifest(t, reg, "gc/app:latest")

			out := reg.GarbageCollect(t, "--delete-untagged")
			if !reg.Running() {
				t.Fatal("registry not restarted after GarbageCollect")
			}
			if code, _, _ := testenv.Get(t, reg, "/v2/gc/app/blobs/"+mOld.Layers[0].Digest, ""); code != http.StatusNotFound {
				t.Errorf("old layer still served after GC (%d); GC output:\n%s", code, out)
			}
			if code, _, _ := testenv.Get(t, reg, "/v2/gc/app/blobs/"+mNew.Layers[0].Digest, ""); code != http.StatusOK {
				t.Errorf("current layer gone after GC (%d); GC output:\n%s", code, out)
			}
			reg.Crane(t, "validate", "--remote", reg.Ref("gc/app:latest"))
		})
	}
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("count = %d, %v", n, err)
	}
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || !strings.HasPrefix(db, "postgres_") {
		t.Fatalf("current_database = %q, %v", db, err)
	}
}

func TestRedis(t *testing.T) {
	t.Parallel()
	if addr := testenv.Redis(t); addr == "" {
		t.Fatal("empty Redis address")
	}
}

// fakeTB records Fatalf instead of failing the real test.
type fakeTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fakeTB) Helper()      {}
func (f *fakeTB) Name() string { return "TestFake" }
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func fatalMessage(t *testing.T, fn func(tb testing.TB)) string {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f.msg
}

// A missing server fails the test with a message that says how to start it.
func TestMissingServerFails(t *testing.T) {
	cases := []struct {
		env  string
		fn   func(tb testing.TB)
		want string
	}{
		{testenv.EnvMinIOEndpoint, func(tb testing.TB) { testenv.MinIO(tb) }, "MinIO is not running"},
		{testenv.EnvSwiftAuthURL, func(tb testing.TB) { testenv.Swift(tb) }, "Swift is not running"},
		{testenv.EnvPostgresDSN, func(tb testing.TB) { testenv.Postgres(tb) }, "PostgreSQL is not running"},
		{testenv.EnvRedisAddr, func(tb testing.TB) { testenv.Redis(tb) }, "Redis is not running"},
		{testenv.EnvCrane, func(tb testing.TB) { testenv.Crane(tb) }, "crane is not installed"},
		{testenv.EnvRegistryV28, func(tb testing.TB) {
			testenv.StartRegistry(tb, testenv.RegistryOptions{Version: testenv.RegistryV28, Storage: "inmemory:\n"})
		}, "registry v2.8 is not installed"},
	}
	for _, c := range cases {
		t.Setenv(c.env, "")
		msg := fatalMessage(t, c.fn)
		if !strings.Contains(msg, c.want) || !strings.Contains(msg, "make testenv-up") || !strings.Contains(msg, c.env+" unset") {
			t.Errorf("%s unset: message %q, want %q, `make testenv-up` and %q", c.env, msg, c.want, c.env+" unset")
		}
	}
	t.Setenv(testenv.EnvRedisAddr, "127.0.0.1:1")
	if msg := fatalMessage(t, func(tb testing.TB) { testenv.Redis(tb) }); !strings.Contains(msg, "Redis is not answering at 127.0.0.1:1") {
		t.Errorf("Redis on a closed port: %q", msg)
	}
}

// A registry that cannot start fails the test with the reason.
func TestStartRegistryFailure(t *testing.T) {
	t.Parallel()
	for _, v := range []string{testenv.RegistryV3, testenv.RegistryV28} {
		msg := fatalMessage(t, func(tb testing.TB) {
			testenv.StartRegistry(tb, testenv.RegistryOptions{Version: v, Storage: "nosuchdriver:\n  x: 1\n"})
		})
		if !strings.Contains(msg, "exited during startup") {
			t.Errorf("%s with a bad storage driver: %q", v, msg)
		}
		t.Logf("%s: %s", v, msg)
	}
}
