package e2e

// Concurrent pushes while `regsweep gc --delete` runs (issues 6 and 15).
//
// A registry has no lock regsweep can take, so in plain-registry mode a
// window remains: a push that links a planned blob after the last recheck
// listing has passed it and before the deletion lands can lose it
// (docs/safety.md, section 10). The tests split in two:
//
//   - TestConcurrentPushesReadOnlyCycles* (here) run the procedure
//     docs/safety.md calls safe: the registry is switched to read-only for
//     every gc run (`--require-readonly` checks it) and back to writable
//     between runs, while clients push, delete, re-push and mount the whole
//     time. Every storage mutation by the registry then happens while no gc
//     runs, and every manifest PUT is verified by the registry against a
//     storage gc is not changing; gc itself works on a frozen store. So
//     every push that reported success, and every tag, must pull: by
//     design, not by luck of timing.
//   - busy_test.go leaves the registry writable and asserts what gc
//     promises there: it finishes, and a push loses nothing unless it
//     overlaps the window.

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
	code, h, _, err := c.exchange(method, u, contentType, "", body)
	return code, h, err
}

// exchange sends one request and returns the answer, its body read.
func (c rawClient) exchange(method, u, contentType, accept string, body []byte) (int, http.Header, []byte, error) {
	if strings.HasPrefix(u, "/") {
		u = c.base + u
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
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

// deleteManifest deletes a manifest (by digest) or a tag.
func (c rawClient) deleteManifest(repo, ref string) error {
	code, _, err := c.do(http.MethodDelete, "/v2/"+repo+"/manifests/"+ref, "", nil)
	if err != nil {
		return err
	}
	return statusErr("DELETE manifest", code, http.StatusAccepted)
}

// get fetches path and returns its status and body.
func (c rawClient) get(path, accept string) (int, []byte, error) {
	code, _, b, err := c.exchange(http.MethodGet, path, "", accept, nil)
	return code, b, err
}

// pull fetches repo:ref and everything it references, verifying every
// digest. lost says what the registry no longer has (404) or serves wrong;
// err is a failure to ask (a registry restarting, a 5xx), which proves
// nothing either way.
func (c rawClient) pull(repo, ref, wantDigest string) (lost, err error) {
	code, body, err := c.get("/v2/"+repo+"/manifests/"+ref, acceptAll)
	switch {
	case err != nil:
		return nil, err
	case code == http.StatusNotFound:
		return fmt.Errorf("%s:%s: manifest: HTTP %d%s", repo, ref, code, registryErrorCode(body)), nil
	case code != http.StatusOK:
		return nil, fmt.Errorf("%s:%s: manifest: HTTP %d%s", repo, ref, code, registryErrorCode(body))
	}
	if d := sha(body); wantDigest != "" && d != wantDigest {
		return fmt.Errorf("%s:%s: manifest %s, pushed %s", repo, ref, d, wantDigest), nil
	}
	var m manifestDoc
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("%s:%s: %v", repo, ref, err), nil
	}
	for _, b := range m.blobs() {
		code, data, err := c.get("/v2/"+repo+"/blobs/"+b, "")
		switch {
		case err != nil:
			return nil, err
		case code == http.StatusNotFound:
			return fmt.Errorf("%s:%s: blob %s: HTTP %d%s", repo, ref, b, code, registryErrorCode(data)), nil
		case code != http.StatusOK:
			return nil, fmt.Errorf("%s:%s: blob %s: HTTP %d%s", repo, ref, b, code, registryErrorCode(data))
		case sha(data) != b:
			return fmt.Errorf("%s:%s: blob %s: served %s", repo, ref, b, sha(data)), nil
		}
	}
	for _, child := range m.Manifests {
		if lost, err := c.pull(repo, child.Digest, child.Digest); lost != nil || err != nil {
			return lost, err
		}
	}
	return nil, nil
}

// registryErrorCode is " (CODE)" for a registry's error body, or "".
func registryErrorCode(body []byte) string {
	var doc struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &doc) != nil || len(doc.Errors) == 0 {
		return ""
	}
	return " (" + doc.Errors[0].Code + ")"
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
	Accepted                         int // pushes the registry accepted (manifest PUT 201)
	Unverified                       int // accepted pushes that could not be pulled just before their deletion (registry restarting)
	Transient                        int // accepted pushes that did not pull during a gc run, just before their deletion, and pulled once it ended
}

// pushRecord is a push the registry accepted: what was pushed, and when,
// from before its first request (which may write a link) to the answer to
// its manifest PUT.
type pushRecord struct {
	ref, digest string
	start, end  time.Time
}

// lostPush is an accepted push that did not pull afterwards.
type lostPush struct {
	pushRecord
	why error
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
// not deleted or overwritten since: each must pull afterwards. A push is
// pulled just before a worker deletes it or moves its tag, so that a push
// lost and then deleted is not missed.
type load struct {
	t     *testing.T
	reg   *testenv.Registry
	raw   rawClient
	crane string
	dir   string

	// gc is held by the test while a gc run goes (runGC): a worker whose
	// pull failed during a run waits for its end to pull again.
	gc sync.RWMutex

	mu       sync.Mutex
	expected map[string]pushRecord // by repo:tag
	lost     []lostPush            // found when retired
	stats    loadStats
	problems []string // unexpected answers (not refusals): reported at the end
}

func newLoad(t *testing.T, reg *testenv.Registry) *load {
	return &load{t: t, reg: reg, raw: newRawClient(reg), crane: testenv.Crane(t), dir: t.TempDir(), expected: map[string]pushRecord{}}
}

func (l *load) count(f func(s *loadStats)) {
	l.mu.Lock()
	f(&l.stats)
	l.mu.Unlock()
}

// accepted records a push the registry accepted, started at start.
func (l *load) accepted(ref, digest string, start time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expected[ref] = pushRecord{ref: ref, digest: digest, start: start, end: time.Now()}
	l.stats.Accepted++
}

// retire takes ref out of what must pull at the end, before a worker
// deletes it or moves its tag, and pulls it first.
func (l *load) retire(ref string) {
	l.mu.Lock()
	rec, ok := l.expected[ref]
	delete(l.expected, ref)
	l.mu.Unlock()
	if !ok {
		return
	}
	repo, tag, _ := strings.Cut(ref, ":")
	lost, err := l.raw.pull(repo, tag, rec.digest)
	transient := false
	if lost != nil {
		// During a run an image pushed again in the link phase does not
		// pull for a moment: its links are deleted, then written again
		// before the blobs go. What counts is whether it pulls after.
		l.gc.RLock()
		lost, err = l.raw.pull(repo, tag, rec.digest)
		l.gc.RUnlock()
		transient = lost == nil && err == nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case lost != nil:
		l.lost = append(l.lost, lostPush{rec, lost})
	case err != nil:
		l.stats.Unverified++
	case transient:
		l.stats.Transient++
	}
}

// runGC is runGCWatched with the load told that a run goes.
func (l *load) runGC(t *testing.T, b *backendUnderTest, on func(ev gcEvent, p *gcProc)) watchedRun {
	l.gc.Lock()
	defer l.gc.Unlock()
	return runGCWatched(t, b, on)
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
	tarball := layerTarball(l.t, l.dir, testenv.RandomBytes(l.t, 4096))
	start := time.Now()
	digest, err := l.craneAppend(tarball, ref)
	l.count(func(s *loadStats) {
		s.CranePushes++
		if err != nil {
			s.CranePushFailed++
		}
	})
	if err == nil {
		l.accepted(ref, digest, start)
	}
	return err == nil
}

// recycle deletes a pushed image (its blobs become garbage) or re-pushes a
// deleted one with the same bytes (the digests gc may be deleting now).
func (l *load) recycle(r *recycled) bool {
	if r.pushed {
		// Forget it first: while its deletion is under way it may or may
		// not be there.
		l.retire(r.ref())
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
	start := time.Now()
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
	l.accepted(r.ref(), digest, start)
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
	l.retire(dst + ":" + tag)
	start := time.Now()
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
		l.accepted(dst+":"+tag, src.raw.digest, start)
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
func pullErr(reg *testenv.Registry, repo, ref, wantDigest string) error {
	lost, err := newRawClient(reg).pull(repo, ref, wantDigest)
	if lost != nil {
		return lost
	}
	return err
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
	expected, lostExpected int        // successful pushes, and those that no longer pull
	lost                   []lostPush // those, with the ones lost before a worker deleted them
	tags, brokenTags       int        // every tag served, and those that do not pull
	dangling               int        // links to missing blobs in storage
	details                []string   // the first few of each
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
	expected := make(map[string]pushRecord, len(l.expected))
	for k, v := range l.expected {
		expected[k] = v
	}
	o.lost = append(o.lost, l.lost...)
	l.mu.Unlock()
	for _, p := range o.lost {
		o.note("pushed successfully, lost before it was deleted: %v", p.why)
	}
	for ref, rec := range expected {
		o.expected++
		repo, tag, _ := strings.Cut(ref, ":")
		if err := pullErr(b.reg, repo, tag, rec.digest); err != nil {
			o.lostExpected++
			o.lost = append(o.lost, lostPush{rec, err})
			o.note("pushed successfully, lost: %v", err)
		}
	}
	for _, ref := range allTags(t, b.reg) {
		o.tags++
		repo, tag, _ := strings.Cut(ref, ":")
		if err := pullErr(b.reg, repo, tag, ""); err != nil {
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
	var runs []watchedRun
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
		r := runGCWatched(t, b, nil, "--require-readonly", "--registry-config", b.reg.ConfigPath)
		if r.code != 0 {
			t.Fatalf("cycle %d: gc --delete --require-readonly on a read-only registry exited %d", cycle, r.code)
		}
		runs = append(runs, r)
		ran := time.Since(phase) - switched
		setReadOnly(t, b.reg, false)
		t.Logf("cycle %d: switched to read-only in %s, gc took %s and deleted %d blobs, back to writable after %s in all",
			cycle, switched.Round(time.Millisecond), ran.Round(time.Millisecond), r.deleted["blob"], time.Since(phase).Round(time.Millisecond))

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
	l.accepted("fixed/a:v1", fixed.digest, time.Now())
	l.accepted("fixed/b:v1", fixed.digest, time.Now())

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
		deletedBlobs += r.deleted["blob"]
	}

	o := verifyAfterLoad(t, b, l)
	checkUntouched(t, b.reg, c)
	t.Logf("%s, read-only cycles: %d gc runs deleted %d blobs; load %+v; verified %d successful pushes and %d tags",
		b.name, len(runs), deletedBlobs, l.stats, o.expected, o.tags)
	for _, p := range l.problems {
		t.Error(p)
	}
	if len(o.lost) > 0 || o.brokenTags > 0 || o.dangling > 0 {
		t.Errorf("with gc only while the registry is read-only: %d of %d successful pushes lost, %d of %d tags broken, %d dangling links:\n%s",
			len(o.lost), l.stats.Accepted, o.brokenTags, o.tags, o.dangling, strings.Join(o.details, "\n"))
	}
	if l.stats.RawRepushes+l.stats.CraneRepushes == 0 || l.stats.MountPushes == 0 || l.stats.CranePushes == 0 {
		t.Errorf("the load did not run every scenario: %+v", l.stats)
	}
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
			r := runGCWatched(t, b, nil, "--require-readonly", "--registry-config", b.reg.ConfigPath)
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
			r = runGCWatched(t, b, nil, "--require-readonly", "--registry-config", ro.ConfigPath)
			if r.code != 0 || r.deleted["blob"] == 0 {
				t.Fatalf("read-only registry: exit %d, %d blobs deleted; want 0 and the garbage deleted", r.code, r.deleted["blob"])
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

// runMayFail is backendUnderTest.run for runs that may fail.
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
	refuseSecrets(t, b, args, stdout.String(), stderr.String())
	return stdout.String(), stderr.String(), code
}

// refuseSecrets fails the test if regsweep printed one of b's secrets.
// main prefixes errors with "regsweep: ", which is also the test MinIO's
// access key, so that prefix is taken out first.
func refuseSecrets(t *testing.T, b *backendUnderTest, args []string, stdout, stderr string) {
	t.Helper()
	out := stdout + strings.ReplaceAll("\n"+stderr, "\nregsweep: ", "\n")
	for _, secret := range b.cfg.Secrets() {
		if strings.Contains(out, secret) {
			t.Fatalf("regsweep %v printed a secret", args)
		}
	}
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
