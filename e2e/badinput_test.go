package e2e

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/internal/testenv"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/storage/filesystem"
)

// runCLI runs regsweep with args and env and returns stderr and the exit
// code.
func runCLI(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(regsweepBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestBadInputStorageAccess: every way of pointing at storage wrongly ends with a
// named error, exit code 4 (storage) or 2 (usage), no secret in the output.
func TestBadInputStorageAccess(t *testing.T) {
	m := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, m)
	s := testenv.Swift(t)
	container := testenv.NewContainer(t, s)
	tlsServer := httptest.NewTLSServer(http.NotFoundHandler())
	defer tlsServer.Close()
	const badSecret = "wrong-secret-Zq81"
	s3 := func(endpoint, bucket string) []string {
		return []string{"inventory", "--s3-endpoint", endpoint, "--s3-bucket", bucket, "--s3-path-style"}
	}
	swift := func(container string) []string {
		return []string{"inventory", "--swift-auth-url", s.AuthURL, "--swift-username", s.User, "--swift-container", container}
	}
	cases := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"s3 wrong credentials", []string{"REGSWEEP_S3_ACCESS_KEY=" + m.AccessKey, "REGSWEEP_S3_SECRET_KEY=" + badSecret}, s3(m.URL(), bucket), 4, "credentials"},
		{"s3 missing bucket", []string{"REGSWEEP_S3_ACCESS_KEY=" + m.AccessKey, "REGSWEEP_S3_SECRET_KEY=" + m.SecretKey}, s3(m.URL(), "no-such-bucket-x1"), 4, `bucket "no-such-bucket-x1" does not exist`},
		{"s3 unreachable", []string{"REGSWEEP_S3_ACCESS_KEY=a", "REGSWEEP_S3_SECRET_KEY=b"}, s3("http://127.0.0.1:1", "bucket-x"), 4, "reach"},
		{"s3 TLS unknown CA", []string{"REGSWEEP_S3_ACCESS_KEY=a", "REGSWEEP_S3_SECRET_KEY=b"}, s3(tlsServer.URL, "bucket-x"), 4, "unknown authority"},
		{"swift wrong password", []string{"REGSWEEP_SWIFT_PASSWORD=" + badSecret}, swift(container), 4, "access denied"},
		{"swift missing container", []string{"REGSWEEP_SWIFT_PASSWORD=" + s.Key}, swift("no-such-container-x1"), 4, `container "no-such-container-x1" does not exist`},
		{"swift unreachable", []string{"REGSWEEP_SWIFT_PASSWORD=x"}, []string{"inventory", "--swift-auth-url", "http://127.0.0.1:1/auth/v1.0", "--swift-username", "u", "--swift-container", "c"}, 4, "reach"},
		{"unsupported driver", nil, []string{"inventory", "--storage-driver", "gcs"}, 2, `"gcs" is not supported`},
		{"s3 DNS failure", []string{"REGSWEEP_S3_ACCESS_KEY=a", "REGSWEEP_S3_SECRET_KEY=b"}, s3("http://regsweep-no-such-host.invalid:9000", "bucket-x"), 4, "cannot reach the S3 endpoint regsweep-no-such-host.invalid"},
		{"swift DNS failure", []string{"REGSWEEP_SWIFT_PASSWORD=x"}, []string{"inventory", "--swift-auth-url", "http://regsweep-no-such-host.invalid:8080/auth/v1.0", "--swift-username", "u", "--swift-container", "c"}, 4, "cannot reach the auth endpoint http://regsweep-no-such-host.invalid"},
	}
	for _, c := range cases {
		out, code := runCLI(t, c.env, c.args...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("%s: exit %d (want %d), output %q (want %q)", c.name, code, c.code, out, c.want)
		}
		if strings.Contains(out, badSecret) || strings.Contains(out, m.SecretKey) || strings.Contains(out, s.Key) {
			t.Errorf("%s: a secret is in the output: %q", c.name, out)
		}
	}
}

// TestBadInputKeyThatDoesNotParse: a stray key in the registry tree is named and
// makes inventory exit 3, and gc refuse (6).
func TestBadInputKeyThatDoesNotParse(t *testing.T) {
	b := filesystemBackend(t)
	testenv.PushRandomImage(t, b.reg, "app:v1")
	stray := filepath.Join(b.fsRoot, "docker/registry/v2/repositories/app/_manifests/notes.txt")
	if err := os.WriteFile(stray, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runCLI(t, nil, "inventory", "--fs-root", b.fsRoot)
	if code != 3 || !strings.Contains(out, "docker/registry/v2/repositories/app/_manifests/notes.txt") {
		t.Errorf("inventory: exit %d, %s", code, out)
	}
	out, code = runCLI(t, nil, "gc", "--fs-root", b.fsRoot, "--cache-dir", t.TempDir())
	if code != 6 || !strings.Contains(out, "unknown_keys") {
		t.Errorf("gc: exit %d, %s", code, out)
	}
}

// badTree is a filesystem registry with one tagged image (app:v1) and one
// orphan blob: a gc that deletes anything at all deletes the orphan, so
// "nothing was deleted" means the run refused.
type badTree struct {
	root   string
	w      *regtree.Writer
	image  regtree.Descriptor
	orphan digest.Digest
	layer  digest.Digest
	config digest.Digest
}

func newBadTree(t *testing.T) *badTree {
	t.Helper()
	root := t.TempDir()
	d, err := filesystem.New(root, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &badTree{root: root, w: regtree.NewWriter(d, 4)}
	b.config, b.layer = digest.FromString(`{"os":"linux"}`), digest.FromString("layer one")
	b.image = b.w.Image("app", []byte(`{"os":"linux"}`), []byte("layer one"))
	b.w.Tag("app", "v1", b.image.Digest)
	b.orphan = b.w.Blob([]byte("orphan blob"))
	return b
}

func (b *badTree) flush(t *testing.T) {
	t.Helper()
	if err := b.w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// file writes a raw file under the root (names a filesystem allows but
// the registry layout does not).
func (b *badTree) file(t *testing.T, rel string, data []byte) {
	t.Helper()
	p := filepath.Join(b.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func specKey(t *testing.T, s layout.Spec) string {
	t.Helper()
	k, err := layout.Path(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// treeFiles lists every file under root with its content.
func treeFiles(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[strings.TrimPrefix(p, root+"/")] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// expectRefusal runs regsweep, checks the exit code and that the output
// holds every wanted string (the object and the cause), is valid UTF-8,
// and that storage is exactly as before.
func expectRefusal(t *testing.T, root string, code int, want []string, args ...string) string {
	t.Helper()
	before := treeFiles(t, root)
	out, got := runCLI(t, nil, args...)
	if got != code {
		t.Errorf("exit %d, want %d; output:\n%s", got, code, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output does not name %q:\n%s", w, out)
		}
	}
	if !utf8.ValidString(out) {
		t.Errorf("output is not valid UTF-8: %q", out)
	}
	after := treeFiles(t, root)
	for k := range before {
		if _, ok := after[k]; !ok {
			t.Errorf("%s was deleted", k)
		}
	}
	return out
}

func gcDeleteArgs(root string, extra ...string) []string {
	return append([]string{"gc", "--fs-root", root, "--delete", "--grace", "0s", "--upload-grace", "0s",
		"--max-delete-fraction", "1", "--cache-dir", filepath.Join(os.TempDir(), "regsweep-badinput-cache-"+filepath.Base(root))}, extra...)
}

// TestBadInputStorageContent: damaged registry content makes `gc --delete`
// refuse (exit 6) with a message naming the object and the cause, and
// delete nothing; each case is a row of docs/bad-input.md.
func TestBadInputStorageContent(t *testing.T) {
	hex := func(d digest.Digest) string { return d.Encoded() }
	cases := []struct {
		name   string
		damage func(t *testing.T, b *badTree) []string // returns the strings the message must hold
	}{
		{"corrupt manifest JSON", func(t *testing.T, b *badTree) []string {
			d := b.w.Blob([]byte(`{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": [`))
			b.w.Revision("app", d)
			b.w.Tag("app", "broken", d)
			return []string{hex(d), "unparseable_manifest", "invalid manifest JSON"}
		}},
		{"unknown media type without references", func(t *testing.T, b *badTree) []string {
			d := b.w.Blob([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.example.thing+json","payload":"x"}`))
			b.w.Revision("app", d)
			b.w.Tag("app", "thing", d)
			return []string{hex(d), "application/vnd.example.thing+json", "has no config, layers, manifests or blobs"}
		}},
		{"manifest whose content is not its digest", func(t *testing.T, b *badTree) []string {
			d := digest.FromString("the manifest that should be here")
			b.w.Raw(specKey(t, layout.BlobData{Digest: d}), []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`))
			b.w.Revision("app", d)
			b.w.Tag("app", "swapped", d)
			return []string{hex(d), "has content with digest"}
		}},
		{"manifest larger than 4 MiB", func(t *testing.T, b *badTree) []string {
			big := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"pad":"` + strings.Repeat("x", 5<<20) + `"}`)
			d := b.w.Blob(big)
			b.w.Revision("app", d)
			b.w.Tag("app", "huge", d)
			return []string{hex(d), "larger than the read limit"}
		}},
		{"index whose child manifest is missing", func(t *testing.T, b *badTree) []string {
			missing := regtree.Descriptor{MediaType: regtree.MediaTypeOCIManifest, Digest: digest.FromString("lost child"), Size: 10}
			idx := b.w.Index("app", b.image, missing)
			b.w.Tag("app", "multi", idx.Digest)
			return []string{hex(missing.Digest), "missing_child_manifest", "storage lacks it"}
		}},
		{"link with garbage", func(t *testing.T, b *badTree) []string {
			k := specKey(t, layout.LayerLink{Repo: "app", Digest: b.layer})
			b.w.Raw(k, []byte("hello, world\n"))
			return []string{k, "not a digest"}
		}},
		{"empty link", func(t *testing.T, b *badTree) []string {
			k := specKey(t, layout.RevisionLink{Repo: "app", Digest: b.image.Digest})
			b.w.Raw(k, []byte{})
			return []string{k, "link is empty"}
		}},
		{"link holding another digest", func(t *testing.T, b *badTree) []string {
			k := specKey(t, layout.LayerLink{Repo: "app", Digest: b.config})
			b.w.Raw(k, []byte(b.orphan.String()))
			return []string{k, "but its path names"}
		}},
		{"tag current link with garbage", func(t *testing.T, b *badTree) []string {
			k := specKey(t, layout.TagCurrentLink{Repo: "app", Tag: "v1"})
			b.w.Raw(k, []byte("latest please"))
			return []string{k, "not a digest"}
		}},
		{"repository name with ..", func(t *testing.T, b *badTree) []string {
			k := "docker/registry/v2/repositories/app/..evil/_manifests/tags/v1/current/link"
			b.file(t, k, []byte(b.image.Digest.String()))
			return []string{k, "unknown_keys", "fit no layout"}
		}},
		{"key with invalid UTF-8", func(t *testing.T, b *badTree) []string {
			b.file(t, "docker/registry/v2/repositories/app/_manifests/tags/v\xff1/current/link", []byte(b.image.Digest.String()))
			return []string{"unknown_keys", "fit no layout", `v\xff1`}
		}},
		{"GitLab metadata database in use", func(t *testing.T, b *badTree) []string {
			b.file(t, "docker/registry/lockfiles/database-in-use", []byte("1"))
			return []string{"database_in_use", "database-in-use"}
		}},
		{"blobs but no repositories", func(t *testing.T, b *badTree) []string {
			if err := os.RemoveAll(filepath.Join(b.root, "docker/registry/v2/repositories")); err != nil {
				t.Fatal(err)
			}
			return []string{"no_repositories", "found no repositories but"}
		}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			b := newBadTree(t)
			b.flush(t)
			want := c.damage(t, b)
			b.flush(t)
			expectRefusal(t, b.root, 6, want, gcDeleteArgs(b.root)...)
		})
	}
}

// TestBadInputTolerated: inputs that are unusual but not damage: gc keeps
// what is needed, names what it reports, and sweeps the rest.
func TestBadInputTolerated(t *testing.T) {
	t.Run("sha512 layer digest", func(t *testing.T) {
		b := newBadTree(t)
		content := []byte("a sha512 layer")
		sum := sha512.Sum512(content)
		l := digest.NewDigestFromEncoded(digest.SHA512, fmt.Sprintf("%x", sum))
		b.w.Raw(specKey(t, layout.BlobData{Digest: l}), content)
		b.w.LayerLink("app", l)
		cfg := b.w.Blob([]byte(`{"sha512":true}`))
		m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":15},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
			regtree.MediaTypeOCIManifest, cfg, l, len(content))
		md := b.w.Blob([]byte(m))
		b.w.Revision("app", md)
		b.w.LayerLink("app", cfg)
		b.w.Tag("app", "sha512", md)
		b.flush(t)
		out, code := runCLI(t, nil, gcDeleteArgs(b.root)...)
		files := treeFiles(t, b.root)
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		if _, ok := files[specKey(t, layout.BlobData{Digest: l})]; !ok {
			t.Errorf("the sha512 layer of a tagged image was deleted")
		}
		if _, ok := files[specKey(t, layout.BlobData{Digest: b.orphan})]; ok {
			t.Errorf("the orphan blob was not deleted:\n%s", out)
		}
	})
	t.Run("blob directory without data", func(t *testing.T) {
		b := newBadTree(t)
		b.flush(t)
		data := filepath.Join(b.root, specKey(t, layout.BlobData{Digest: b.layer}))
		if err := os.Remove(data); err != nil {
			t.Fatal(err)
		}
		before := treeFiles(t, b.root)
		out, code := runCLI(t, nil, gcDeleteArgs(b.root)...)
		after := treeFiles(t, b.root)
		for _, d := range []digest.Digest{b.image.Digest, b.config} {
			if _, ok := after[specKey(t, layout.BlobData{Digest: d})]; !ok {
				t.Errorf("blob %s of the tagged image was deleted", d)
			}
		}
		// The image is broken already: gc reports it and sweeps the rest
		// (exit 0), keeping every other blob of the image and its links.
		if code != 0 || !strings.Contains(out, b.layer.Encoded()) || !strings.Contains(out, "storage lacks it") {
			t.Errorf("gc does not name the missing layer %s (exit %d):\n%s", b.layer, code, out)
		}
		for k := range before {
			if _, ok := after[k]; !ok && k != specKey(t, layout.BlobData{Digest: b.orphan}) {
				t.Errorf("%s was deleted", k)
			}
		}
	})
}

// TestBadInputPlansLocksAndConfig: a lock held by another run, plans that
// are for another storage, tampered, expired or not plans, and broken
// configuration are refused by name, with their exit codes, deleting
// nothing.
func TestBadInputPlansLocksAndConfig(t *testing.T) {
	b := newBadTree(t)
	b.flush(t)
	dir := t.TempDir()
	planFile := filepath.Join(dir, "plan.json")
	if out, code := runCLI(t, nil, "gc", "--fs-root", b.root, "--grace", "0s", "--upload-grace", "0s", "--max-delete-fraction", "1",
		"--cache-dir", filepath.Join(dir, "cache"), "--plan-out", planFile); code != 0 {
		t.Fatalf("writing a plan: exit %d\n%s", code, out)
	}
	raw, err := os.ReadFile(planFile)
	if err != nil {
		t.Fatal(err)
	}
	var plan map[string]any
	if err := json.Unmarshal(raw, &plan); err != nil {
		t.Fatal(err)
	}
	if items, _ := plan["items"].([]any); len(items) == 0 {
		t.Fatalf("the plan deletes nothing, so refusing it proves nothing:\n%s", raw)
	}
	writePlan := func(name string, edit func(map[string]any)) string {
		var p map[string]any
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatal(err)
		}
		edit(p)
		out, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, out, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	sweepArgs := func(plan string) []string {
		return []string{"sweep", "--fs-root", b.root, "--plan", plan, "--delete", "--cache-dir", filepath.Join(dir, "cache")}
	}
	keptConfig := specKey(t, layout.BlobData{Digest: b.config})

	t.Run("plan for another storage", func(t *testing.T) {
		other := newBadTree(t)
		other.flush(t)
		expectRefusal(t, other.root, 9, []string{planFile, "is for filesystem://" + b.root}, "sweep", "--fs-root", other.root, "--plan", planFile, "--delete", "--cache-dir", filepath.Join(dir, "cache"))
	})
	t.Run("tampered plan", func(t *testing.T) {
		f := writePlan("tampered.json", func(p map[string]any) {
			items := p["items"].([]any)
			items[0].(map[string]any)["key"] = keptConfig
		})
		expectRefusal(t, b.root, 9, []string{keptConfig, "does not match"}, sweepArgs(f)...)
	})
	t.Run("expired plan", func(t *testing.T) {
		expectRefusal(t, b.root, 9, []string{planFile, "max-plan-age"}, append(sweepArgs(planFile), "--max-plan-age", "1ns")...)
	})
	// The plan's header is sealed: a creation time edited into the future
	// (or the past), like an edited Harbor flag, is refused as an edit.
	t.Run("plan with an edited header", func(t *testing.T) {
		f := writePlan("future.json", func(p map[string]any) { p["created_at"] = time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339) })
		expectRefusal(t, b.root, 9, []string{f, "edited"}, sweepArgs(f)...)
		f = writePlan("harbor.json", func(p map[string]any) { p["options"].(map[string]any)["harbor"] = true })
		expectRefusal(t, b.root, 9, []string{f, "edited"}, sweepArgs(f)...)
	})
	t.Run("not a plan", func(t *testing.T) {
		f := filepath.Join(dir, "notes.txt")
		if err := os.WriteFile(f, []byte("delete everything\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		expectRefusal(t, b.root, 9, []string{f, "not a regsweep plan"}, sweepArgs(f)...)
	})
	t.Run("lock held", func(t *testing.T) {
		lockInfo := fmt.Sprintf(`{"token":"other","hostname":"other-host","pid":4242,"command":"regsweep gc","started_at":%q,"refreshed_at":%q,"timeout":1800000000000}`,
			time.Now().UTC().Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339))
		b.file(t, "regsweep/lock.json", []byte(lockInfo))
		defer os.Remove(filepath.Join(b.root, "regsweep/lock.json"))
		expectRefusal(t, b.root, 7, []string{"lock", "other-host", "4242"}, gcDeleteArgs(b.root)...)
		expectRefusal(t, b.root, 7, []string{"lock", "other-host"}, sweepArgs(planFile)...)
	})
	t.Run("filesystem root missing", func(t *testing.T) {
		missing := filepath.Join(dir, "no-such-root")
		out, code := runCLI(t, nil, gcDeleteArgs(missing)...)
		if code != 4 || !strings.Contains(out, missing) || !strings.Contains(out, "does not exist") {
			t.Errorf("exit %d (want 4), output:\n%s", code, out)
		}
	})
	t.Run("registry config not YAML", func(t *testing.T) {
		f := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(f, []byte("storage: [\n  filesystem\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		expectRefusal(t, b.root, 2, []string{"not valid YAML"}, "gc", "--registry-config", f, "--delete")
	})
	t.Run("registry config with two drivers", func(t *testing.T) {
		f := filepath.Join(dir, "two.yml")
		if err := os.WriteFile(f, []byte("storage:\n  filesystem:\n    rootdirectory: "+b.root+"\n  s3:\n    bucket: x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		expectRefusal(t, b.root, 2, []string{"several storage drivers", "filesystem, s3"}, "gc", "--registry-config", f, "--delete")
	})
}
