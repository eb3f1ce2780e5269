package e2e

// Concurrent pushes while `regsweep gc --delete` runs (issue 6).
//
// A registry has no lock regsweep can take, so in plain-registry mode a
// window remains: a push that links a planned blob after the last recheck
// and before the deletion lands can lose it (docs/safety.md). The tests
// here therefore split in two:
//
//   - TestConcurrentPushesReadOnlyCycles* asserts. It runs the procedure
//     docs/safety.md calls safe: the registry is switched to read-only for
//     every gc run (`--require-readonly` checks it) and back to writable
//     between runs, while clients push, delete, re-push and mount the whole
//     time. Every storage mutation by the registry then happens while no gc
//     runs, and every manifest PUT is verified by the registry against a
//     storage gc is not changing; gc itself works on a frozen store. So
//     every push that reported success, and every tag, must pull: by
//     design, not by luck of timing.
//   - TestConcurrentPushesMeasure measures. It leaves the registry writable
//     and loops gc under the same random load, or fires re-pushes and
//     mounts of garbage at the moment gc starts deleting, then counts
//     pushes the registry accepted that no longer pull, and logs the
//     figures. Only what holds in any mode is asserted: images tagged
//     before the runs and never touched again pull (every run marks them,
//     and a recheck only ever removes items from a plan).
//
// REGSWEEP_CONCURRENT_RUNS=n makes the measurement run every combination
// (filesystem and S3, grace 0s and 5s, random and aimed) with n gc runs
// each, for soak runs; make test runs two short ones.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regsweep/regsweep/internal/testenv"
)

// ---------------------------------------------------------------- images ---

// rawImage is an OCI image pushed over plain HTTP. Its bytes are fixed, so a
// re-push gives the same digests as the garbage gc may be deleting.
type rawImage struct {
	config   []byte
	layers   [][]byte
	manifest []byte
	digest   string
}

func newRawImage(t *testing.T) *rawImage {
	im := &rawImage{
		config: []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"comment":%q}`, testenv.Digest(testenv.RandomBytes(t, 16)))),
		layers: [][]byte{testenv.RandomBytes(t, 2048), testenv.RandomBytes(t, 3072)},
	}
	desc := func(mt string, b []byte) map[string]any {
		return map[string]any{"mediaType": mt, "digest": testenv.Digest(b), "size": len(b)}
	}
	var layers []any
	for _, l := range im.layers {
		layers = append(layers, desc("application/vnd.oci.image.layer.v1.tar", l))
	}
	im.manifest, _ = json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": ociManifest,
		"config": desc("application/vnd.oci.image.config.v1+json", im.config), "layers": layers})
	im.digest = testenv.Digest(im.manifest)
	return im
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

func (im *rawImage) blobs() [][]byte { return append([][]byte{im.config}, im.layers...) }

// layerTarball writes a tarball of content that is byte-for-byte the same for
// the same content, so `crane append` re-pushes the same digests.
func layerTarball(t *testing.T, dir string, content []byte) string {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "data.bin", Size: int64(len(content)), Mode: 0o644,
		ModTime: time.Unix(0, 0), Format: tar.FormatUSTAR})
	tw.Write(content)
	tw.Close()
	path := filepath.Join(dir, testenv.Digest(content)[7:23]+".tar")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// ------------------------------------------------------------ raw client ---

// rawClient speaks the distribution API directly and returns errors instead
// of failing the test: during a load, refusals (a read-only registry, a
// restart) are expected.
type rawClient struct {
	base string
	hc   *http.Client
}

func newRawClient(reg *testenv.Registry) rawClient {
	return rawClient{base: reg.URL(), hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}}
}

func (c rawClient) do(method, u, contentType string, body []byte) (int, http.Header, error) {
	if strings.HasPrefix(u, "/") {
		u = c.base + u
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header, nil
}

func statusErr(what string, code int, want int) error {
	if code == want {
		return nil
	}
	return fmt.Errorf("%s: HTTP %d", what, code)
}

// finishUpload PUTs data to an upload's Location with its digest.
func (c rawClient) finishUpload(h http.Header, data []byte) error {
	base, _ := url.Parse(c.base + "/")
	loc, err := base.Parse(h.Get("Location"))
	if err != nil || h.Get("Location") == "" {
		return fmt.Errorf("bad upload Location %q", h.Get("Location"))
	}
	q := loc.Query()
	q.Set("digest", testenv.Digest(data))
	loc.RawQuery = q.Encode()
	code, _, err := c.do(http.MethodPut, loc.String(), "application/octet-stream", data)
	if err != nil {
		return err
	}
	return statusErr("PUT upload", code, http.StatusCreated)
}

// pushBlob pushes data to repo the way clients do: HEAD first, upload only
// if the registry does not have it. uploaded says it had to.
func (c rawClient) pushBlob(repo string, data []byte) (uploaded bool, err error) {
	code, _, err := c.do(http.MethodHead, "/v2/"+repo+"/blobs/"+testenv.Digest(data), "", nil)
	if err != nil {
		return false, err
	}
	if code == http.StatusOK {
		return false, nil
	}
	if code != http.StatusNotFound {
		return false, fmt.Errorf("HEAD blob: HTTP %d", code)
	}
	code, h, err := c.do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		return false, err
	}
	if err := statusErr("POST upload", code, http.StatusAccepted); err != nil {
		return false, err
	}
	return true, c.finishUpload(h, data)
}

// mountBlob mounts data's blob from repo from into repo to; when the
// registry cannot mount it (202: it started an upload instead) the data is
// uploaded.
func (c rawClient) mountBlob(to, from string, data []byte) (mounted bool, err error) {
	q := url.Values{"mount": {testenv.Digest(data)}, "from": {from}}
	code, h, err := c.do(http.MethodPost, "/v2/"+to+"/blobs/uploads/?"+q.Encode(), "", nil)
	switch {
	case err != nil:
		return false, err
	case code == http.StatusCreated:
		return true, nil
	case code == http.StatusAccepted:
		return false, c.finishUpload(h, data)
	}
	return false, fmt.Errorf("POST mount: HTTP %d", code)
}

func (c rawClient) putManifest(repo, ref string, im *rawImage) error {
	code, _, err := c.do(http.MethodPut, "/v2/"+repo+"/manifests/"+ref, ociManifest, im.manifest)
	if err != nil {
		return err
	}
	return statusErr("PUT manifest", code, http.StatusCreated)
}

func (c rawClient) deleteManifest(repo, digest string) error {
	code, _, err := c.do(http.MethodDelete, "/v2/"+repo+"/manifests/"+digest, "", nil)
	if err != nil {
		return err
	}
	return statusErr("DELETE manifest", code, http.StatusAccepted)
}

// ------------------------------------------------------------------ load ---

// loadStats counts what the clients did, by scenario.
type loadStats struct {
	CranePushes, CranePushFailed     int // new images (crane append)
	CraneRepushes, CraneRepushFailed int // re-pushes of deleted images, same digests (crane append)
	RawRepushes, RawRepushFailed     int // the same over raw HTTP (HEAD, upload if missing, PUT)
	Recollected                      int // blobs a raw re-push found gone (gc had collected them) and uploaded again
	MountPushes, MountPushFailed     int // manifests pushed into another repository over mounted blobs
	Mounted, MountFallbacks          int // blobs mounted; mounts of a once-pushed source refused (collected) and uploaded instead
	Deletes, DeleteFailed            int // manifest deletions (making garbage to re-push)
}

// recycled is an image a worker deletes and re-pushes, over and over.
type recycled struct {
	repo, tag string
	raw       *rawImage // pushed over raw HTTP; nil: with crane
	tarball   string    // crane's layer
	digest    string    // known after the first push
	pushed    bool      // the last operation was a successful push
}

func (r *recycled) ref() string { return r.repo + ":" + r.tag }

// load is the concurrent client: workers push, delete, re-push and mount
// until stopped. expected holds every push that reported success and was
// not deleted since: each must pull afterwards (asserted or counted).
type load struct {
	t     *testing.T
	reg   *testenv.Registry
	raw   rawClient
	crane string
	dir   string

	mu       sync.Mutex
	expected map[string]string // repo:tag -> manifest digest
	stats    loadStats
	problems []string // unexpected answers (not refusals): reported at the end
}

func newLoad(t *testing.T, reg *testenv.Registry) *load {
	return &load{t: t, reg: reg, raw: newRawClient(reg), crane: testenv.Crane(t), dir: t.TempDir(), expected: map[string]string{}}
}

func (l *load) count(f func(s *loadStats)) {
	l.mu.Lock()
	f(&l.stats)
	l.mu.Unlock()
}

func (l *load) setExpected(ref, digest string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if digest == "" {
		delete(l.expected, ref)
	} else {
		l.expected[ref] = digest
	}
}

func (l *load) problem(format string, args ...any) {
	l.mu.Lock()
	l.problems = append(l.problems, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

// craneRun runs crane with a deadline; errors are returned, not fatal.
func (l *load) craneRun(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.crane, append([]string{"--insecure"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("crane %s: %v: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// craneAppend pushes an image of one layer with crane and returns its digest.
func (l *load) craneAppend(tarball, ref string) (string, error) {
	out, err := l.craneRun("append", "-f", tarball, "-t", l.reg.Ref(ref))
	if err != nil {
		return "", err
	}
	_, digest, ok := strings.Cut(finalLine(out), "@")
	if !ok {
		return "", fmt.Errorf("crane append printed %q", out)
	}
	return digest, nil
}

// worker runs its share of the load until stop is closed.
func (l *load) worker(w int, stop <-chan struct{}) {
	var rawPool, cranePool []*recycled
	for k := 0; k < 3; k++ {
		rawPool = append(rawPool, &recycled{repo: fmt.Sprintf("recycle/raw%d-%d", w, k), tag: "v1", raw: newRawImage(l.t)})
		cranePool = append(cranePool, &recycled{repo: fmt.Sprintf("recycle/crane%d-%d", w, k), tag: "v1",
			tarball: layerTarball(l.t, l.dir, testenv.RandomBytes(l.t, 4096))})
	}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		var ok bool
		switch i % 4 {
		case 0:
			ok = l.pushNew(w, i)
		case 1:
			ok = l.recycle(cranePool[(i/4)%len(cranePool)])
		case 2:
			ok = l.mountPush(w, rawPool[(i/4)%len(rawPool)])
		case 3:
			ok = l.recycle(rawPool[(i/4)%len(rawPool)])
		}
		if !ok {
			// Refused (read-only, restarting): do not spin on two shared cores.
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// pushNew pushes a new image with crane (new blobs: what the grace
// protects).
func (l *load) pushNew(w, i int) bool {
	ref := fmt.Sprintf("fresh/w%d:%d", w, i)
	digest, err := l.craneAppend(layerTarball(l.t, l.dir, testenv.RandomBytes(l.t, 4096)), ref)
	l.count(func(s *loadStats) {
		s.CranePushes++
		if err != nil {
			s.CranePushFailed++
		}
	})
	if err == nil {
		l.setExpected(ref, digest)
	}
	return err == nil
}

// recycle deletes a pushed image (its blobs become garbage) or re-pushes a
// deleted one with the same bytes (the digests gc may be deleting now).
func (l *load) recycle(r *recycled) bool {
	if r.pushed {
		// Forget it first: while its deletion is under way it may or may
		// not be there.
		l.setExpected(r.ref(), "")
		var err error
		if r.raw != nil {
			err = l.raw.deleteManifest(r.repo, r.digest)
		} else {
			_, err = l.craneRun("delete", l.reg.Ref(r.repo+"@"+r.digest))
		}
		r.pushed = false
		l.count(func(s *loadStats) {
			s.Deletes++
			if err != nil {
				s.DeleteFailed++
			}
		})
		return err == nil
	}
	var digest string
	var err error
	if r.raw != nil {
		digest, err = r.raw.digest, l.rawPush(r.repo, r.tag, r.raw, r.digest != "")
	} else {
		digest, err = l.craneAppend(r.tarball, r.ref())
	}
	l.count(func(s *loadStats) {
		if r.raw != nil {
			s.RawRepushes++
			if err != nil {
				s.RawRepushFailed++
			}
		} else {
			s.CraneRepushes++
			if err != nil {
				s.CraneRepushFailed++
			}
		}
	})
	if err != nil {
		return false
	}
	if r.digest != "" && r.digest != digest {
		l.problem("%s re-pushed as %s, first pushed as %s: the same bytes must give the same digest", r.ref(), digest, r.digest)
	}
	r.digest, r.pushed = digest, true
	l.setExpected(r.ref(), digest)
	return true
}

// rawPush pushes im; again says it was pushed before, so a blob the
// registry no longer has was collected meanwhile.
func (l *load) rawPush(repo, tag string, im *rawImage, again bool) error {
	for _, b := range im.blobs() {
		uploaded, err := l.raw.pushBlob(repo, b)
		if err != nil {
			return err
		}
		if uploaded && again {
			l.count(func(s *loadStats) { s.Recollected++ })
		}
	}
	return l.raw.putManifest(repo, tag, im)
}

// mountPush mounts a recycled image's blobs (garbage while it is deleted)
// into another repository and pushes its manifest there. The tag moves on
// each time, so earlier mounts turn into untagged garbage.
func (l *load) mountPush(w int, src *recycled) bool {
	dst, tag := fmt.Sprintf("mounted/w%d", w), "latest"
	l.setExpected(dst+":"+tag, "")
	err := func() error {
		for _, b := range src.raw.blobs() {
			mounted, err := l.raw.mountBlob(dst, src.repo, b)
			if err != nil {
				return err
			}
			l.count(func(s *loadStats) {
				switch {
				case mounted:
					s.Mounted++
				case src.digest != "":
					// Pushed before, so refused because collected (or
					// deleted and not re-pushed yet).
					s.MountFallbacks++
				}
			})
		}
		return l.raw.putManifest(dst, tag, src.raw)
	}()
	l.count(func(s *loadStats) {
		s.MountPushes++
		if err != nil {
			s.MountPushFailed++
		}
	})
	if err == nil {
		l.setExpected(dst+":"+tag, src.raw.digest)
	}
	return err == nil
}

// run starts workers and returns a function that stops them and waits.
func (l *load) run(workers int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.worker(w, done)
		}()
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// ---------------------------------------------------------- verification ---

// pullErr pulls repo:ref through the registry and verifies every digest,
// returning what is wrong instead of failing the test.
func pullErr(t *testing.T, reg *testenv.Registry, repo, ref, wantDigest string) error {
	code, body, _ := testenv.Get(t, reg, "/v2/"+repo+"/manifests/"+ref, acceptAll)
	if code != http.StatusOK {
		return fmt.Errorf("%s:%s: manifest: HTTP %d", repo, ref, code)
	}
	if d := sha(body); wantDigest != "" && d != wantDigest {
		return fmt.Errorf("%s:%s: manifest %s, pushed %s", repo, ref, d, wantDigest)
	}
	var m manifestDoc
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("%s:%s: %v", repo, ref, err)
	}
	for _, b := range m.blobs() {
		code, data, _ := testenv.Get(t, reg, "/v2/"+repo+"/blobs/"+b, "")
		if code != http.StatusOK || sha(data) != b {
			return fmt.Errorf("%s:%s: blob %s: HTTP %d", repo, ref, b, code)
		}
	}
	for _, c := range m.Manifests {
		if err := pullErr(t, reg, repo, c.Digest, c.Digest); err != nil {
			return err
		}
	}
	return nil
}

// allTags lists every repository:tag the registry serves.
func allTags(t *testing.T, reg *testenv.Registry) []string {
	t.Helper()
	var repos []string
	for last := ""; ; {
		code, body, _ := testenv.Get(t, reg, "/v2/_catalog?n=1000&last="+url.QueryEscape(last), "")
		var cat struct {
			Repositories []string `json:"repositories"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &cat) != nil {
			t.Fatalf("catalog: HTTP %d %s", code, body)
		}
		repos = append(repos, cat.Repositories...)
		if len(cat.Repositories) < 1000 {
			break
		}
		last = cat.Repositories[len(cat.Repositories)-1]
	}
	var refs []string
	for _, repo := range repos {
		code, body, _ := testenv.Get(t, reg, "/v2/"+repo+"/tags/list", "")
		var tl struct {
			Tags []string `json:"tags"`
		}
		if code == http.StatusNotFound {
			continue // a repository with no tags left
		}
		if code != http.StatusOK || json.Unmarshal(body, &tl) != nil {
			t.Fatalf("tags of %s: HTTP %d %s", repo, code, body)
		}
		for _, tag := range tl.Tags {
			refs = append(refs, repo+":"+tag)
		}
	}
	sort.Strings(refs)
	return refs
}

// outcome is what a verification found.
type outcome struct {
	expected, lostExpected int      // successful pushes, and those that no longer pull
	tags, brokenTags       int      // every tag served, and those that do not pull
	dangling               int      // links to missing blobs in storage
	details                []string // the first few of each
}

func (o *outcome) note(format string, args ...any) {
	if len(o.details) < 20 {
		o.details = append(o.details, fmt.Sprintf(format, args...))
	}
}

// verifyAfterLoad restarts the registry (no cached state) and pulls everything.
func verifyAfterLoad(t *testing.T, b *backendUnderTest, l *load) outcome {
	t.Helper()
	b.reg.Restart()
	var o outcome
	l.mu.Lock()
	expected := make(map[string]string, len(l.expected))
	for k, v := range l.expected {
		expected[k] = v
	}
	l.mu.Unlock()
	for ref, digest := range expected {
		o.expected++
		repo, tag, _ := strings.Cut(ref, ":")
		if err := pullErr(t, b.reg, repo, tag, digest); err != nil {
			o.lostExpected++
			o.note("pushed successfully, lost: %v", err)
		}
	}
	for _, ref := range allTags(t, b.reg) {
		o.tags++
		repo, tag, _ := strings.Cut(ref, ":")
		if err := pullErr(t, b.reg, repo, tag, ""); err != nil {
			o.brokenTags++
			o.note("tag does not pull: %v", err)
		}
	}
	inv := b.inventory(t)
	for name, r := range inv.Repositories {
		for d := range r.Layers.All() {
			if !inv.Blobs.Has(d) {
				o.dangling++
				o.note("%s: layer link to missing blob %s", name, d)
			}
		}
		for d := range r.Revisions.All() {
			if !inv.Blobs.Has(d) {
				o.dangling++
				o.note("%s: revision link to missing blob %s", name, d)
			}
		}
	}
	return o
}

// ------------------------------------------------------------------- gc ---

// gcRun is one gc --delete under load.
type gcRun struct {
	code           int
	why            string // a short class of the error, when it failed
	deletedBlobs   int
	deletedLinks   int
	recheckDropped int
}

func runGCDelete(t *testing.T, b *backendUnderTest, grace string, extra ...string) gcRun {
	t.Helper()
	args := append([]string{"gc", "--delete", "--delete-untagged", "--grace", grace, "--upload-grace", "0s",
		"--max-delete-fraction", "1", "--cache-dir", t.TempDir(), "--format", "json", "--quiet"}, extra...)
	stdout, stderr, code := runMayFail(t, b, args...)
	r := gcRun{code: code}
	var doc struct {
		Result *struct {
			Deleted map[string]int `json:"deleted"`
		} `json:"result"`
		Recheck *struct {
			Dropped int `json:"dropped"`
		} `json:"recheck"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil && code == 0 {
		t.Fatalf("gc printed no JSON report: %v\n%s\n%s", err, stdout, stderr)
	}
	if doc.Result != nil {
		r.deletedBlobs = doc.Result.Deleted["blob"]
		for k, n := range doc.Result.Deleted {
			if strings.HasSuffix(k, "_link") {
				r.deletedLinks += n
			}
		}
	}
	if doc.Recheck != nil {
		r.recheckDropped = doc.Recheck.Dropped
	}
	if code != 0 {
		line := finalLine(stderr)
		switch {
		case strings.Contains(line, "listed but not found when read"):
			r.why = "walk: a key vanished between listing and reading"
		case strings.Contains(line, "exists but the walk did not list it"):
			r.why = "recheck: a key appeared since the walk"
		default:
			r.why = line
			if len(r.why) > 80 {
				r.why = r.why[:80]
			}
		}
		t.Logf("gc exited %d: %s", code, line)
	}
	return r
}

// ------------------------------------------------------- registry modes ---

var readOnlyLine = regexp.MustCompile(`(?m)^(\s+readonly:\n\s+enabled: )(true|false)$`)

// setReadOnly switches the registry's read-only maintenance mode in its
// config.yml and restarts it, as an operator would. The first call also
// gives it a drain timeout, so a restart lets requests in flight finish
// instead of cutting a manifest deletion in half.
func setReadOnly(t *testing.T, reg *testenv.Registry, on bool) {
	t.Helper()
	raw, err := os.ReadFile(reg.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(raw)
	if !readOnlyLine.MatchString(cfg) {
		t.Fatalf("no storage.maintenance.readonly.enabled in %s:\n%s", reg.ConfigPath, cfg)
	}
	cfg = readOnlyLine.ReplaceAllString(cfg, "${1}"+strconv.FormatBool(on))
	if !strings.Contains(cfg, "draintimeout") {
		cfg = strings.Replace(cfg, "\nhttp:\n", "\nhttp:\n  draintimeout: 30s\n", 1)
	}
	if err := os.WriteFile(reg.ConfigPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	reg.Restart()
}

// ------------------------------------------------------------------ tests ---

func concurrentBackends() map[string]func(*testing.T) *backendUnderTest {
	return map[string]func(*testing.T) *backendUnderTest{"filesystem": filesystemBackend, "s3": minioBackend}
}

func TestConcurrentPushesReadOnlyCyclesFilesystem(t *testing.T) {
	runReadOnlyCycles(t, filesystemBackend(t))
}
func TestConcurrentPushesReadOnlyCyclesS3(t *testing.T) { runReadOnlyCycles(t, minioBackend(t)) }

// runReadOnlyCycles asserts the safe procedure: gc runs only while the
// registry is read-only, clients push all the time.
func runReadOnlyCycles(t *testing.T, b *backendUnderTest) {
	const cycles = 6
	c := pushCorpus(t, b.reg)
	setReadOnly(t, b.reg, false) // adds the drain timeout
	l := newLoad(t, b.reg)
	raw := newRawClient(b.reg)

	// A fixed image is deleted before every gc and re-pushed, and mounted
	// into a second repository, after it: the same digests gc has just
	// collected, every cycle, whatever the scheduling of the workers.
	fixed := newRawImage(t)
	stop := l.run(3)
	var runs []gcRun
	recollectedFixed, fallbacksFixed := 0, 0
	for cycle := 0; cycle < cycles; cycle++ {
		if cycle > 0 {
			for _, repo := range []string{"fixed/a", "fixed/b"} {
				if err := raw.deleteManifest(repo, fixed.digest); err != nil {
					t.Fatalf("cycle %d: deleting %s@%s: %v", cycle, repo, fixed.digest, err)
				}
			}
		}
		time.Sleep(time.Second) // the workers push meanwhile

		phase := time.Now()
		setReadOnly(t, b.reg, true)
		switched := time.Since(phase)
		r := runGCDelete(t, b, "0s", "--require-readonly", "--registry-config", b.reg.ConfigPath)
		if r.code != 0 {
			t.Fatalf("cycle %d: gc --delete --require-readonly on a read-only registry exited %d", cycle, r.code)
		}
		runs = append(runs, r)
		ran := time.Since(phase) - switched
		setReadOnly(t, b.reg, false)
		t.Logf("cycle %d: switched to read-only in %s, gc took %s and deleted %d blobs, back to writable after %s in all",
			cycle, switched.Round(time.Millisecond), ran.Round(time.Millisecond), r.deletedBlobs, time.Since(phase).Round(time.Millisecond))

		for _, blob := range fixed.blobs() {
			uploaded, err := raw.pushBlob("fixed/a", blob)
			if err != nil {
				t.Fatalf("cycle %d: re-pushing a blob of the fixed image: %v", cycle, err)
			}
			if uploaded && cycle > 0 {
				recollectedFixed++
			}
		}
		if err := raw.putManifest("fixed/a", "v1", fixed); err != nil {
			t.Fatalf("cycle %d: re-pushing the fixed image: %v", cycle, err)
		}
		for _, blob := range fixed.blobs() {
			mounted, err := raw.mountBlob("fixed/b", "fixed/a", blob)
			if err != nil {
				t.Fatalf("cycle %d: mounting into fixed/b: %v", cycle, err)
			}
			if !mounted {
				fallbacksFixed++
			}
		}
		if err := raw.putManifest("fixed/b", "v1", fixed); err != nil {
			t.Fatalf("cycle %d: pushing the fixed image over mounted blobs: %v", cycle, err)
		}
	}
	stop()
	l.setExpected("fixed/a:v1", fixed.digest)
	l.setExpected("fixed/b:v1", fixed.digest)

	// The fixed image was garbage at every gc after the first (deleted,
	// grace 0, nothing else uses its blobs) and the registry was frozen,
	// so each of those runs collected all of its blobs.
	if want := (cycles - 1) * len(fixed.blobs()); recollectedFixed != want {
		t.Errorf("the fixed image's blobs were found collected and re-uploaded %d times, want %d (every gc collects them)", recollectedFixed, want)
	}
	if fallbacksFixed != 0 {
		t.Errorf("%d mounts from fixed/a were refused right after the re-push", fallbacksFixed)
	}
	deletedBlobs := 0
	for _, r := range runs {
		deletedBlobs += r.deletedBlobs
	}

	o := verifyAfterLoad(t, b, l)
	for _, k := range c.kept {
		if err := pullErr(t, b.reg, k[0], k[1], ""); err != nil {
			t.Errorf("corpus image: %v", err)
		}
	}
	t.Logf("%s, read-only cycles: %d gc runs deleted %d blobs; load %+v; verified %d successful pushes and %d tags",
		b.name, len(runs), deletedBlobs, l.stats, o.expected, o.tags)
	for _, p := range l.problems {
		t.Error(p)
	}
	if o.lostExpected > 0 || o.brokenTags > 0 || o.dangling > 0 {
		t.Errorf("with gc only while the registry is read-only: %d of %d successful pushes lost, %d of %d tags broken, %d dangling links:\n%s",
			o.lostExpected, o.expected, o.brokenTags, o.tags, o.dangling, strings.Join(o.details, "\n"))
	}
	if l.stats.RawRepushes+l.stats.CraneRepushes == 0 || l.stats.MountPushes == 0 || l.stats.CranePushes == 0 {
		t.Errorf("the load did not run every scenario: %+v", l.stats)
	}
}

// TestConcurrentPushesMeasure measures, without asserting on the figures,
// how often plain-registry mode loses a push: under a random load (workers
// pushing, deleting, re-pushing and mounting while gc loops) and aimed at
// the window (re-pushes fired the moment gc starts deleting). make test runs
// two short configurations; REGSWEEP_CONCURRENT_RUNS=n runs every
// combination of backend, grace (0s, 5s) and load with n gc runs each.
func TestConcurrentPushesMeasure(t *testing.T) {
	type config struct {
		backend, grace, kind string
		runs                 int
	}
	configs := []config{{"s3", "0s", "load", 4}, {"filesystem", "0s", "window", 4}}
	if n, err := strconv.Atoi(os.Getenv("REGSWEEP_CONCURRENT_RUNS")); err == nil && n > 0 {
		configs = nil
		for _, kind := range []string{"load", "window"} {
			for _, backend := range []string{"filesystem", "s3"} {
				for _, grace := range []string{"0s", "5s"} {
					configs = append(configs, config{backend, grace, kind, n})
				}
			}
		}
	}
	opens := map[string]func(*testing.T) *backendUnderTest{"filesystem": filesystemBackend, "s3": minioBackend}
	for _, c := range configs {
		t.Run(c.kind+"/"+c.backend+"/grace="+c.grace, func(t *testing.T) {
			if c.kind == "load" {
				runMeasure(t, c.backend, c.grace, c.runs, opens[c.backend])
			} else {
				runWindow(t, c.backend, c.grace, c.runs, opens[c.backend])
			}
		})
	}
}

// runMeasure loops gc on a writable registry under a random load and logs
// how often a push was lost. It asserts only what holds in any mode.
func runMeasure(t *testing.T, name, grace string, runs int, open func(*testing.T) *backendUnderTest) {
	b := open(t)
	c := pushCorpus(t, b.reg)
	l := newLoad(t, b.reg)
	stop := l.run(3)
	codes, whys := map[int]int{}, map[string]int{}
	var deletedBlobs, deletedLinks, dropped int
	for i := 0; i < runs; i++ {
		r := runGCDelete(t, b, grace)
		codes[r.code]++
		if r.why != "" {
			whys[r.why]++
		}
		deletedBlobs += r.deletedBlobs
		deletedLinks += r.deletedLinks
		dropped += r.recheckDropped
	}
	stop()
	o := verifyAfterLoad(t, b, l)
	// Tagged before the runs and never touched: marked by every run.
	for _, k := range c.kept {
		if err := pullErr(t, b.reg, k[0], k[1], ""); err != nil {
			t.Errorf("an image nobody touched during the runs: %v", err)
		}
	}
	for _, p := range l.problems {
		t.Error(p)
	}
	s := l.stats
	pushes := s.CranePushes + s.CraneRepushes + s.RawRepushes + s.MountPushes
	t.Logf("MEASURE %s grace=%s: %d gc runs (exit codes %v; failures %v) deleted %d blobs and %d links, rechecks dropped %d items; "+
		"%d pushes (%d new, %d crane re-pushes, %d raw re-pushes, %d mount pushes; %d blobs found collected and re-uploaded, %d mounted, %d mounts refused), %d deletes; "+
		"failed pushes (client saw an error): %d; LOST after a successful push: %d of %d; broken tags: %d of %d; dangling links: %d",
		name, grace, runs, codes, whys, deletedBlobs, deletedLinks, dropped,
		pushes, s.CranePushes, s.CraneRepushes, s.RawRepushes, s.MountPushes, s.Recollected, s.Mounted, s.MountFallbacks, s.Deletes,
		s.CranePushFailed+s.CraneRepushFailed+s.RawRepushFailed+s.MountPushFailed, o.lostExpected, o.expected, o.brokenTags, o.tags, o.dangling)
	for _, d := range o.details {
		t.Logf("  %s", d)
	}
}

// ------------------------------------------------- the window, targeted ---

// runWindow aims at the window itself: before each gc run a few images are
// pushed and deleted (garbage), and the moment gc logs that it starts
// deleting links (the plan was rechecked just before), or that it rechecked
// the plan before the blobs, they are re-pushed (HEAD, upload what is
// missing, PUT) or mounted into another repository and pushed there. A
// re-push that the registry accepted but that no longer pulls afterwards is
// a bite. Logged, not asserted: this is the window docs/safety.md
// documents, and read-only mode is the way to close it.
func runWindow(t *testing.T, name, grace string, runs int, open func(*testing.T) *backendUnderTest) {
	b := open(t)
	c := pushCorpus(t, b.reg)
	raw := newRawClient(b.reg)
	age, _ := time.ParseDuration(grace)
	type trial struct {
		trigger       string
		repushes, ok  int
		lost          []string
		failedPushes  int
		deletedBlobs  int
		triggerMissed bool
	}
	var trials []trial
	for i := 0; i < runs; i++ {
		tr := trial{trigger: []string{"links", "blobs"}[i%2]}
		const k = 4
		ims := make([]*rawImage, k)
		for j := range ims {
			ims[j] = newRawImage(t)
			repo := fmt.Sprintf("window/%d-%d", i, j)
			if err := rawPushImage(raw, repo, ims[j]); err != nil {
				t.Fatalf("pushing %s: %v", repo, err)
			}
			if err := raw.deleteManifest(repo, ims[j].digest); err != nil {
				t.Fatal(err)
			}
		}
		// Garbage only once older than the grace: wait it out
		// (less the time the run takes to its plan).
		time.Sleep(age)

		var wg sync.WaitGroup
		var mu sync.Mutex
		repush := func() {
			for j, im := range ims {
				wg.Add(1)
				go func() {
					defer wg.Done()
					src := fmt.Sprintf("window/%d-%d", i, j)
					repo, err := src, error(nil)
					if j%2 == 0 {
						err = rawPushImage(raw, repo, im)
					} else {
						repo = fmt.Sprintf("window-mount/%d-%d", i, j)
						err = mountPushAll(raw, repo, src, im)
					}
					mu.Lock()
					defer mu.Unlock()
					tr.repushes++
					if err != nil {
						tr.failedPushes++
						return
					}
					tr.ok++
					tr.lost = append(tr.lost, repo+"@"+im.digest)
				}()
			}
		}
		r := runGCTriggered(t, b, grace, tr.trigger, repush)
		tr.triggerMissed = !r.triggered
		tr.deletedBlobs = r.deletedBlobs
		wg.Wait()
		// Keep only the re-pushes that do not pull: the bites.
		var lost []string
		for _, ref := range tr.lost {
			repo, digest, _ := strings.Cut(ref, "@")
			if err := pullErr(t, b.reg, repo, digest, digest); err != nil {
				lost = append(lost, err.Error())
			}
		}
		tr.lost = lost
		trials = append(trials, tr)
	}
	b.reg.Restart()
	for _, k := range c.kept {
		if err := pullErr(t, b.reg, k[0], k[1], ""); err != nil {
			t.Errorf("an image nobody touched during the runs: %v", err)
		}
	}
	byTrigger := map[string][4]int{} // runs, accepted re-pushes, lost, runs with a bite
	for _, tr := range trials {
		v := byTrigger[tr.trigger]
		v[0]++
		v[1] += tr.ok
		v[2] += len(tr.lost)
		if len(tr.lost) > 0 {
			v[3]++
		}
		byTrigger[tr.trigger] = v
		for _, l := range tr.lost {
			t.Logf("  bite (re-push at the start of the %s phase): %s", tr.trigger, l)
		}
		if tr.triggerMissed {
			t.Logf("  a run never reached its %s phase (nothing to delete there)", tr.trigger)
		}
	}
	for _, trig := range []string{"links", "blobs"} {
		v := byTrigger[trig]
		t.Logf("WINDOW %s grace=%s, re-push at the start of the %s phase: %d runs, %d re-pushes accepted by the registry, %d of them LOST (%d runs with a bite)",
			name, grace, trig, v[0], v[1], v[2], v[3])
	}
}

// rawPushImage pushes im as repo:v1 the way clients do (HEAD, upload what
// is missing, PUT).
func rawPushImage(c rawClient, repo string, im *rawImage) error {
	for _, b := range im.blobs() {
		if _, err := c.pushBlob(repo, b); err != nil {
			return err
		}
	}
	return c.putManifest(repo, "v1", im)
}

func mountPushAll(c rawClient, repo, from string, im *rawImage) error {
	for _, b := range im.blobs() {
		if _, err := c.mountBlob(repo, from, b); err != nil {
			return err
		}
	}
	return c.putManifest(repo, "v1", im)
}

type triggeredRun struct {
	gcRun
	triggered bool
}

// runGCTriggered runs gc --delete and calls fire as soon as its log says
// the link phase starts ("links": the first "sweeping") or the blob phase
// is next ("blobs": the second "rechecked the plan").
func runGCTriggered(t *testing.T, b *backendUnderTest, grace, at string, fire func()) triggeredRun {
	t.Helper()
	args := append([]string{"gc", "--delete", "--delete-untagged", "--grace", grace, "--upload-grace", "0s",
		"--max-delete-fraction", "1", "--cache-dir", t.TempDir(), "--format", "json"}, b.flags...)
	cmd := exec.Command(regsweepBinary(t), args...)
	cmd.Env = append(os.Environ(), b.env...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var res triggeredRun
	var lastErr string
	rechecks := 0
	buf := make([]byte, 0, 64<<10)
	sc := bufioScanner(pipe, buf)
	for sc.Scan() {
		line := sc.Text()
		lastErr = line
		if res.triggered {
			continue
		}
		switch {
		case at == "links" && strings.Contains(line, "msg=sweeping"),
			at == "blobs" && strings.Contains(line, "rechecked the plan") && func() bool { rechecks++; return rechecks == 2 }():
			res.triggered = true
			fire()
		}
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Result *struct {
			Deleted map[string]int `json:"deleted"`
		} `json:"result"`
	}
	if json.Unmarshal(stdout.Bytes(), &doc) == nil && doc.Result != nil {
		res.deletedBlobs = doc.Result.Deleted["blob"]
	}
	if res.code != 0 {
		t.Logf("gc exited %d: %s", res.code, lastErr)
	}
	return res
}

// ---------------------------------------------- --require-readonly, real ---

// TestReadOnlyRequiredOnRealRegistry runs gc --delete --require-readonly
// with the config.yml of a real registry: refused (exit 6, nothing deleted)
// while it is writable, allowed once it runs read-only.
func TestReadOnlyRequiredOnRealRegistry(t *testing.T) {
	for name, open := range concurrentBackends() {
		t.Run(name, func(t *testing.T) {
			b := open(t)
			c := pushCorpus(t, b.reg)
			before := blobSet(b.inventory(t))
			r := runGCDelete(t, b, "0s", "--require-readonly", "--registry-config", b.reg.ConfigPath)
			if r.code != exitGuardCode {
				t.Fatalf("writable registry: exit %d, want %d", r.code, exitGuardCode)
			}
			if after := blobSet(b.inventory(t)); len(after) != len(before) {
				t.Fatalf("the refused run deleted blobs: %d before, %d after", len(before), len(after))
			}
			b.reg.Stop()
			ro := testenv.StartRegistry(t, testenv.RegistryOptions{Version: testenv.RegistryV3, Storage: b.registry, ReadOnly: true})
			if code, _, err := newRawClient(ro).do(http.MethodPost, "/v2/probe/blobs/uploads/", "", nil); err != nil || code != http.StatusMethodNotAllowed {
				t.Fatalf("the read-only registry answered an upload with %d (%v), want 405", code, err)
			}
			b.reg = ro
			r = runGCDelete(t, b, "0s", "--require-readonly", "--registry-config", ro.ConfigPath)
			if r.code != 0 || r.deletedBlobs == 0 {
				t.Fatalf("read-only registry: exit %d, %d blobs deleted; want 0 and the garbage deleted", r.code, r.deletedBlobs)
			}
			ro.Restart()
			for _, k := range c.kept {
				pull(t, ro, k[0], k[1])
			}
		})
	}
}

const exitGuardCode = 6

// TestReadOnlyVerdictMatchesRegistry starts the real registry with each
// configuration and environment and asks it for an upload: regsweep's
// --require-readonly must allow a deleting run exactly when the registry
// refuses the upload (405), and refuse it when the registry accepts it or
// does not start.
func TestReadOnlyVerdictMatchesRegistry(t *testing.T) {
	bin := testenv.StartRegistry(t, testenv.RegistryOptions{Version: testenv.RegistryV3, Storage: "inmemory: {}\n"})
	bin.Stop()
	root := t.TempDir()
	file := func(readonly string) string {
		return fmt.Sprintf("version: 0.1\nlog:\n  level: error\nhttp:\n  addr: %%s\nstorage:\n  filesystem:\n    rootdirectory: %s\n  maintenance:\n    uploadpurging:\n      enabled: false\n%s", root, readonly)
	}
	cases := []struct {
		name, readonly string
		env            []string
	}{
		{"true", "    readonly:\n      enabled: true\n", nil},
		{"false", "    readonly:\n      enabled: false\n", nil},
		{"absent", "", nil},
		{"yes", "    readonly:\n      enabled: yes\n", nil},
		{"quoted", "    readonly:\n      enabled: \"true\"\n", nil},
		{"env map on", "    readonly:\n      enabled: false\n", []string{`REGISTRY_STORAGE_MAINTENANCE_READONLY={"enabled": true}`}},
		{"env map off", "    readonly:\n      enabled: true\n", []string{`REGISTRY_STORAGE_MAINTENANCE_READONLY={"enabled": false}`}},
		{"env _ENABLED on", "    readonly:\n      enabled: false\n", []string{"REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED=true"}},
		{"env _ENABLED alone", "", []string{"REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED=true"}},
		{"env section", "", []string{`REGISTRY_STORAGE_MAINTENANCE={"readonly": {"enabled": true}}`}},
		{"env order", "", []string{`REGISTRY_STORAGE_MAINTENANCE={"readonly": {"enabled": true}}`, `REGISTRY_STORAGE_MAINTENANCE_READONLY={"enabled": false}`}},
	}
	b := fsBackendAt(root)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := freeLoopback(t)
			cfg := filepath.Join(t.TempDir(), "config.yml")
			if err := os.WriteFile(cfg, []byte(fmt.Sprintf(file(c.readonly), addr)), 0o644); err != nil {
				t.Fatal(err)
			}
			registryReadOnly, how := probeRegistry(t, bin.Binary, cfg, addr, c.env)

			b.env = c.env
			stdout, stderr, code := runMayFail(t, b, "gc", "--delete", "--require-readonly", "--registry-config", cfg, "--grace", "0s", "--cache-dir", "")
			switch {
			case registryReadOnly && code != 0:
				t.Errorf("the registry is read-only (%s) but regsweep exited %d: %s%s", how, code, stdout, stderr)
			case !registryReadOnly && code != exitGuardCode:
				t.Errorf("the registry is not read-only (%s) but regsweep exited %d, want %d: %s", how, code, exitGuardCode, stderr)
			default:
				t.Logf("registry: %s; regsweep exit %d", how, code)
			}
		})
	}
}

// probeRegistry serves cfg with env and reports whether an upload is
// refused as read-only.
func probeRegistry(t *testing.T, bin, cfg, addr string, env []string) (bool, string) {
	t.Helper()
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	c := rawClient{base: "http://" + addr, hc: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}}
	for i := 0; ; i++ {
		select {
		case <-exited:
			return false, "did not start: " + panicLine(out.String())
		default:
		}
		if code, _, err := c.do(http.MethodGet, "/v2/", "", nil); err == nil && code == http.StatusOK {
			break
		}
		if i > 600 {
			t.Fatalf("registry %s not ready: %s", cfg, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, _, err := c.do(http.MethodPost, "/v2/probe/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return code == http.StatusMethodNotAllowed, fmt.Sprintf("upload answered %d", code)
}

func freeLoopback(t *testing.T) string {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// finalLine is the last non-empty line of s.
func finalLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndex(s, "\n")+1:]
}

// runMayFail is backendUnderTest.run for runs that may fail: main prefixes
// errors with "regsweep: ", which is also the test MinIO's access key, so
// that prefix is taken out before outputs are searched for secrets.
func runMayFail(t *testing.T, b *backendUnderTest, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(regsweepBinary(t), append(args, b.flags...)...)
	cmd.Env = append(os.Environ(), b.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	code := 0
	if err := cmd.Run(); err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("regsweep %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	out := stdout.String() + strings.ReplaceAll("\n"+stderr.String(), "\nregsweep: ", "\n")
	for _, secret := range b.cfg.Secrets() {
		if strings.Contains(out, secret) {
			t.Fatalf("regsweep %v printed a secret", args)
		}
	}
	return stdout.String(), stderr.String(), code
}

func panicLine(log string) string {
	for _, line := range strings.Split(log, "\n") {
		if strings.HasPrefix(line, "panic:") {
			return line
		}
	}
	return finalLine(log)
}

func bufioScanner(r io.Reader, buf []byte) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(buf, 1<<20)
	return sc
}
