// Package e2e runs regsweep against the real registry on every backend:
// images are pushed with crane through distribution (v3 on filesystem and
// S3/MinIO, v2.8.3 on Swift), then regsweep's inventory and gc are checked
// against what was pushed and against what still pulls.
package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regsweep/regsweep/backend"
	"github.com/regsweep/regsweep/internal/testenv"
	"github.com/regsweep/regsweep/walker"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// regsweepBinary builds the CLI once for the whole package.
func regsweepBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "regsweep-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "regsweep")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/regsweep").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// backendUnderTest is one storage with a registry on it.
type backendUnderTest struct {
	name     string
	reg      *testenv.Registry
	cfg      backend.Config
	flags    []string // regsweep flags selecting the storage
	env      []string // secrets go through the environment
	fsRoot   string   // filesystem only
	registry string   // the registry's storage YAML
}

func filesystemBackend(t *testing.T) *backendUnderTest {
	root := t.TempDir()
	storageYAML := fmt.Sprintf("filesystem:\n  rootdirectory: %s\n", root)
	b := &backendUnderTest{name: "filesystem", fsRoot: root, registry: storageYAML,
		cfg:   backend.Config{Driver: "filesystem", Filesystem: backend.FilesystemConfig{RootDirectory: root}},
		flags: []string{"--fs-root", root}}
	b.reg = testenv.StartRegistry(t, testenv.RegistryOptions{Version: testenv.RegistryV3, Storage: storageYAML})
	return b
}

func minioBackend(t *testing.T) *backendUnderTest {
	m := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, m)
	storageYAML := fmt.Sprintf("s3:\n  region: us-east-1\n  bucket: %s\n  accesskey: %s\n  secretkey: %s\n  regionendpoint: %s\n  forcepathstyle: true\n  secure: false\n  v4auth: true\n  rootdirectory: /registry\n",
		bucket, m.AccessKey, m.SecretKey, m.URL())
	b := &backendUnderTest{name: "s3", registry: storageYAML,
		cfg: backend.Config{Driver: "s3", S3: backend.S3Config{Region: "us-east-1", RegionEndpoint: m.URL(), Bucket: bucket,
			AccessKey: m.AccessKey, SecretKey: m.SecretKey, RootDirectory: "/registry", ForcePathStyle: true, V4Auth: true}},
		flags: []string{"--s3-endpoint", m.URL(), "--s3-bucket", bucket, "--s3-root", "/registry", "--s3-path-style"},
		env:   []string{"REGSWEEP_S3_ACCESS_KEY=" + m.AccessKey, "REGSWEEP_S3_SECRET_KEY=" + m.SecretKey}}
	b.reg = testenv.StartRegistry(t, testenv.RegistryOptions{Version: testenv.RegistryV3, Storage: storageYAML})
	return b
}

func swiftBackend(t *testing.T) *backendUnderTest {
	s := testenv.Swift(t)
	container := testenv.NewContainer(t, s)
	storageYAML := fmt.Sprintf("swift:\n  authurl: %s\n  username: %s\n  password: %s\n  container: %s\n  authversion: 1\n", s.AuthURL, s.User, s.Key, container)
	b := &backendUnderTest{name: "swift", registry: storageYAML,
		cfg: backend.Config{Driver: "swift", Swift: backend.SwiftConfig{AuthURL: s.AuthURL, Username: s.User, Password: s.Key,
			Container: container, AuthVersion: 1}},
		flags: []string{"--swift-auth-url", s.AuthURL, "--swift-username", s.User, "--swift-container", container, "--swift-auth-version", "1"},
		env:   []string{"REGSWEEP_SWIFT_PASSWORD=" + s.Key}}
	b.reg = testenv.StartRegistry(t, testenv.RegistryOptions{Version: testenv.RegistryV28, Storage: storageYAML})
	return b
}

// regsweep runs the CLI on the backend and returns stdout and the exit code.
func (b *backendUnderTest) regsweep(t *testing.T, args ...string) (string, int) {
	t.Helper()
	stdout, stderr, code := b.run(t, args...)
	if code != 0 {
		t.Logf("regsweep %v exited %d; stderr:\n%s", args, code, stderr)
	}
	return stdout, code
}

// run runs the CLI on the backend and returns stdout, stderr and the exit
// code, failing the test if either output holds a secret.
func (b *backendUnderTest) run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(regsweepBinary(t), append(args, b.flags...)...)
	cmd.Env = append(os.Environ(), b.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("regsweep %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	for _, secret := range b.cfg.Secrets() {
		// The access key is an identifier (the security tests check it
		// apart), and the test MinIO's is the word "regsweep".
		if secret == b.cfg.S3.AccessKey {
			continue
		}
		if strings.Contains(stdout.String(), secret) || strings.Contains(stderr.String(), secret) {
			t.Fatalf("regsweep %v printed a secret", args)
		}
	}
	return stdout.String(), stderr.String(), code
}

// inventory walks the storage directly (what the test checks against).
func (b *backendUnderTest) inventory(t *testing.T) *walker.Inventory {
	t.Helper()
	ctx := context.Background()
	d, err := backend.Open(ctx, b.cfg, backend.OpenOptions{Concurrency: 8, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	// After a SIGKILL the store may still be carrying out the killed
	// client's last request (Swift's bulk delete goes on server-side), and
	// a walk then fails closed with ErrVanished: wait for it to settle.
	for attempt := 1; ; attempt++ {
		inv, err := walker.Collect(ctx, d, walker.DefaultOptions())
		if err == nil {
			return inv
		}
		if !errors.Is(err, walker.ErrVanished) || attempt == 10 {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// manifestDoc is what the test reads of a manifest to follow it.
type manifestDoc struct {
	MediaType string `json:"mediaType"`
	Config    *struct {
		Digest string `json:"digest"`
	} `json:"config"`
	Layers []struct {
		Digest string `json:"digest"`
	} `json:"layers"`
	Manifests []struct {
		Digest string `json:"digest"`
	} `json:"manifests"`
}

// blobs are the digests of the manifest's config and layers.
func (m manifestDoc) blobs() []string {
	var out []string
	if m.Config != nil {
		out = append(out, m.Config.Digest)
	}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

const acceptAll = "application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json," +
	"application/vnd.docker.distribution.manifest.list.v2+json,application/vnd.docker.distribution.manifest.v2+json"

// pull fetches a manifest and everything it references through the
// registry, verifying every digest, and returns the digests it needed.
func pull(t *testing.T, reg *testenv.Registry, repo, ref string) []string {
	t.Helper()
	code, body, _ := testenv.Get(t, reg, "/v2/"+repo+"/manifests/"+ref, acceptAll)
	if code != http.StatusOK {
		t.Errorf("pull %s:%s: manifest: HTTP %d %s", repo, ref, code, body)
		return nil
	}
	d := sha(body)
	if strings.HasPrefix(ref, "sha256:") && d != ref {
		t.Errorf("pull %s@%s: manifest has digest %s", repo, ref, d)
	}
	needed := []string{d}
	var m manifestDoc
	if err := json.Unmarshal(body, &m); err != nil {
		t.Errorf("pull %s:%s: %v", repo, ref, err)
		return needed
	}
	for _, b := range m.blobs() {
		code, data, _ := testenv.Get(t, reg, "/v2/"+repo+"/blobs/"+b, "")
		if code != http.StatusOK || sha(data) != b {
			t.Errorf("pull %s:%s: blob %s: HTTP %d, digest %s", repo, ref, b, code, sha(data))
		}
		needed = append(needed, b)
	}
	for _, c := range m.Manifests {
		needed = append(needed, pull(t, reg, repo, c.Digest)...)
	}
	return needed
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// corpus is what was pushed and what must survive.
type corpus struct {
	kept        [][2]string // repo, reference (tag or digest) that must pull after gc
	keptBlobs   map[string]bool
	emptiedRepo string
	repos       []string // repositories in storage before gc
	tags        int
	manifests   int
	uploads     int
}

func referrer(t *testing.T, reg *testenv.Registry, repo, subject string, payload []byte) string {
	t.Helper()
	emptyCfg := testenv.UploadBlob(t, reg, repo, []byte("{}"))
	layer := testenv.UploadBlob(t, reg, repo, payload)
	body, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"artifactType":  "application/vnd.example.signature.v1",
		"config":        map[string]any{"mediaType": "application/vnd.oci.empty.v1+json", "digest": emptyCfg, "size": 2},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.example.signature.v1", "digest": layer, "size": len(payload)}},
		"subject":       map[string]any{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": subject, "size": 1},
	})
	return testenv.PutManifest(t, reg, repo, sha(body), "application/vnd.oci.image.manifest.v1+json", body)
}

// pushCorpus pushes the corpus: nested repositories, layers shared
// across repositories, a re-tag leaving an untagged manifest, a multi-arch
// index with untagged children, OCI referrers (of a kept and of an
// untagged manifest), a deleted manifest, an abandoned upload, a
// repository whose only image was deleted, and an unused uploaded blob.
func pushCorpus(t *testing.T, reg *testenv.Registry) *corpus {
	t.Helper()
	r := func(n int) []byte { return testenv.RandomBytes(t, n) }
	base := r(3000)
	c := &corpus{}

	testenv.PushRandomImage(t, reg, "lib/app:v1", base, r(1000)) // re-tagged below: untagged
	dA := reg.Crane(t, "digest", reg.Ref("lib/app:v1"))
	dB := testenv.PushRandomImage(t, reg, "lib/app:v1", base, r(1100))
	testenv.PushRandomImage(t, reg, "lib/app/sub:v1", base, r(1200))
	testenv.PushRandomImage(t, reg, "other/x:v1", base, r(1300))
	c1 := testenv.PushRandomImage(t, reg, "multi/arch", r(1400))
	c2 := testenv.PushRandomImage(t, reg, "multi/arch", r(1500))
	testenv.PushIndex(t, reg, "multi/arch:latest", c1, c2)
	sigKept := referrer(t, reg, "lib/app", dB, r(100))
	referrer(t, reg, "lib/app", dA, r(110)) // its subject goes: so does it
	dv1 := testenv.PushRandomImage(t, reg, "del/me:v1", r(1600))
	testenv.PushRandomImage(t, reg, "del/me:v2", base, r(1700))
	reg.Crane(t, "delete", reg.Ref("del/me@"+dv1))
	dg := testenv.PushRandomImage(t, reg, "gone/repo:v1", r(1800))
	reg.Crane(t, "delete", reg.Ref("gone/repo@"+dg))
	testenv.StartAbandonedUpload(t, reg, "lib/app")
	testenv.UploadBlob(t, reg, "other/x", r(500)) // linked, used by nothing

	c.kept = [][2]string{{"lib/app", "v1"}, {"lib/app", sigKept}, {"lib/app/sub", "v1"}, {"other/x", "v1"},
		{"multi/arch", "latest"}, {"multi/arch", c1}, {"multi/arch", c2}, {"del/me", "v2"}}
	c.emptiedRepo = "gone/repo"
	c.repos = []string{"del/me", "gone/repo", "lib/app", "lib/app/sub", "multi/arch", "other/x"}
	c.tags = 5       // lib/app:v1, lib/app/sub:v1, other/x:v1, multi/arch:latest, del/me:v2
	c.manifests = 10 // lib/app: dA, dB, 2 referrers; sub; other; multi: c1, c2, index; del/me: v2
	c.uploads = 1
	c.keptBlobs = map[string]bool{}
	for _, k := range c.kept {
		for _, d := range pull(t, reg, k[0], k[1]) {
			c.keptBlobs[d] = true
		}
	}
	return c
}

func blobSet(inv *walker.Inventory) map[string]bool {
	s := map[string]bool{}
	for d := range inv.Blobs.All() {
		s[d.String()] = true
	}
	return s
}

func diff(a, b map[string]bool) []string {
	var out []string
	for k := range a {
		if !b[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

type inventoryDoc struct {
	Totals struct {
		Repositories, Tags, Manifests, LayerLinks, Blobs, Uploads, UnknownKeys int
	} `json:"totals"`
	Repositories []struct {
		Name string `json:"name"`
	} `json:"repositories"`
	Requests map[string]int64 `json:"requests"`
}

type gcDoc struct {
	DryRun bool           `json:"dry_run"`
	Plan   map[string]any `json:"plan"`
	Result *struct {
		Deleted    map[string]int `json:"deleted"`
		Failed     map[string]int `json:"failed"`
		FreedBytes int64          `json:"freed_bytes"`
	} `json:"result"`
	Guards []any `json:"guards"`
}

func num(m map[string]any, k string) int64 {
	f, _ := m[k].(float64)
	return int64(f)
}

func runScenario(t *testing.T, b *backendUnderTest) {
	c := pushCorpus(t, b.reg)

	// inventory matches what was pushed.
	out, code := b.regsweep(t, "inventory", "--format", "json")
	if code != 0 {
		t.Fatalf("inventory exited %d", code)
	}
	var inv inventoryDoc
	if err := json.Unmarshal([]byte(out), &inv); err != nil {
		t.Fatalf("inventory JSON: %v", err)
	}
	var names []string
	for _, r := range inv.Repositories {
		names = append(names, r.Name)
	}
	before := b.inventory(t)
	if strings.Join(names, ",") != strings.Join(c.repos, ",") || inv.Totals.Tags != c.tags ||
		inv.Totals.Manifests != c.manifests || inv.Totals.Uploads != c.uploads || inv.Totals.Blobs != before.Blobs.Len() || inv.Totals.UnknownKeys != 0 {
		t.Errorf("inventory: repos %v tags %d manifests %d uploads %d blobs %d unknown %d; want repos %v tags %d manifests %d uploads %d blobs %d",
			names, inv.Totals.Tags, inv.Totals.Manifests, inv.Totals.Uploads, inv.Totals.Blobs, inv.Totals.UnknownKeys,
			c.repos, c.tags, c.manifests, c.uploads, before.Blobs.Len())
	}
	if b.name == "s3" && len(before.Multipart) != 1 {
		t.Errorf("the abandoned upload's multipart upload was not found: %v", before.Multipart)
	}
	garbage := diff(blobSet(before), c.keptBlobs)
	if missing := diff(c.keptBlobs, blobSet(before)); len(missing) > 0 {
		t.Fatalf("kept blobs not in storage before gc: %v", missing)
	}

	// A dry run plans exactly the garbage and writes nothing.
	gcArgs := []string{"gc", "--delete-untagged", "--grace", "0s", "--upload-grace", "0s", "--max-delete-fraction", "0.9", "--cache-dir", t.TempDir(), "--format", "json"}
	out, code = b.regsweep(t, gcArgs...)
	if code != 0 {
		t.Fatalf("gc dry run exited %d: %s", code, out)
	}
	var dry gcDoc
	if err := json.Unmarshal([]byte(out), &dry); err != nil {
		t.Fatal(err)
	}
	if num(dry.Plan, "blobs") != int64(len(garbage)) || num(dry.Plan, "repositories") != 1 || num(dry.Plan, "uploads") != 1 {
		t.Errorf("dry run plans %v; the garbage is %d blobs, 1 repository, 1 upload", dry.Plan, len(garbage))
	}
	if b.name == "s3" && num(dry.Plan, "multipart_uploads") != 1 {
		t.Errorf("dry run plans %d multipart uploads, want the abandoned one", num(dry.Plan, "multipart_uploads"))
	}
	if after := b.inventory(t); after.Keys != before.Keys || after.Blobs.Len() != before.Blobs.Len() {
		t.Errorf("the dry run changed storage: %d keys before, %d after", before.Keys, after.Keys)
	}

	// The real run.
	out, code = b.regsweep(t, append(gcArgs, "--delete")...)
	if code != 0 {
		t.Fatalf("gc --delete exited %d: %s", code, out)
	}
	var real gcDoc
	if err := json.Unmarshal([]byte(out), &real); err != nil {
		t.Fatal(err)
	}
	after := b.inventory(t)
	if left := diff(blobSet(after), c.keptBlobs); len(left) > 0 {
		t.Errorf("garbage blobs left: %v", left)
	}
	if lost := diff(c.keptBlobs, blobSet(after)); len(lost) > 0 {
		t.Fatalf("KEPT BLOBS DELETED: %v", lost)
	}
	if freed := before.BlobBytes - after.BlobBytes; real.Result == nil || freed != num(dry.Plan, "blob_bytes") || real.Result.FreedBytes != num(dry.Plan, "bytes") {
		t.Errorf("freed %d blob bytes, the dry run said %d; freed %+v in all, the dry run said %d", freed, num(dry.Plan, "blob_bytes"), real.Result, num(dry.Plan, "bytes"))
	}
	if _, ok := after.Repositories[c.emptiedRepo]; ok {
		t.Errorf("emptied repository %s still has keys", c.emptiedRepo)
	}
	for name, r := range after.Repositories {
		if len(r.Uploads) > 0 {
			t.Errorf("%s: %d uploads left", name, len(r.Uploads))
		}
		for d := range r.Layers.All() {
			if !after.Blobs.Has(d) {
				t.Errorf("%s: dangling layer link %s", name, d)
			}
		}
		for d := range r.Revisions.All() {
			if !after.Blobs.Has(d) {
				t.Errorf("%s: dangling revision link %s", name, d)
			}
		}
	}
	if len(after.Multipart) > 0 {
		t.Errorf("multipart uploads left: %v", after.Multipart)
	}

	// Every kept image pulls through a restarted registry (no stale cache),
	// and the emptied repository is gone from the catalog.
	b.reg.Restart()
	for _, k := range c.kept {
		pull(t, b.reg, k[0], k[1])
	}
	_, catalog, _ := testenv.Get(t, b.reg, "/v2/_catalog", "")
	if strings.Contains(string(catalog), c.emptiedRepo) {
		t.Errorf("catalog still lists %s: %s", c.emptiedRepo, catalog)
	}

	// A second run plans nothing.
	out, code = b.regsweep(t, gcArgs...)
	var second gcDoc
	json.Unmarshal([]byte(out), &second)
	for k, v := range second.Plan {
		if strings.HasPrefix(k, "total") || k == "kept_blobs" {
			continue
		}
		if f, _ := v.(float64); f != 0 || code != 0 {
			t.Errorf("second run plans %s=%v (exit %d)", k, v, code)
		}
	}
}

func TestRegistryFilesystem(t *testing.T) { runScenario(t, filesystemBackend(t)) }
func TestRegistryS3(t *testing.T)         { runScenario(t, minioBackend(t)) }
func TestRegistrySwift(t *testing.T)      { runScenario(t, swiftBackend(t)) }

func countUploads(repos map[string]*walker.Repository) int {
	n := 0
	for _, r := range repos {
		n += len(r.Uploads)
	}
	return n
}
