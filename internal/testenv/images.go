package testenv

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var httpClient = &http.Client{
	Timeout:   2 * time.Minute,
	Transport: &http.Transport{Proxy: nil}, // loopback only, never a proxy
}

// RandomBytes returns n random bytes (e.g. layer contents for PushRandomImage).
func RandomBytes(tb testing.TB, n int) []byte {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return b
}

// Digest returns the sha256 digest ("sha256:<hex>") of b.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// layerTar writes a tar holding content as one regular file, byte-for-byte
// the same for the same content (fixed name, times and owners), so the same
// bytes always give the same layer digest.
func layerTar(tb testing.TB, dir string, content []byte) string {
	tb.Helper()
	sum := sha256.Sum256(content)
	id := hex.EncodeToString(sum[:])
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     "regsweep/" + id[:16] + ".bin",
		Size:     int64(len(content)),
		Mode:     0o644,
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatUSTAR,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		tb.Fatal(err)
	}
	if _, err := tw.Write(content); err != nil {
		tb.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, id+".tar")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// PushRandomImage builds an image with `crane append` (empty base, Docker
// media types) whose layers are tarballs each holding one file with the given
// contents, pushes it to reg as ref, and returns its manifest digest.
//
// ref is "repo:tag", or just "repo" to push by digest without a tag. With no
// layers one random 4 KiB layer is used. The image is a function of its
// layers: the same layer bytes give the same layer blobs (share them across
// repositories by passing the same bytes) and the same manifest.
func PushRandomImage(tb testing.TB, reg *Registry, ref string, layers ...[]byte) string {
	tb.Helper()
	return pushImage(tb, reg, ref, false, layers)
}

// PushRandomOCIImage is PushRandomImage with OCI media types.
func PushRandomOCIImage(tb testing.TB, reg *Registry, ref string, layers ...[]byte) string {
	tb.Helper()
	return pushImage(tb, reg, ref, true, layers)
}

func pushImage(tb testing.TB, reg *Registry, ref string, oci bool, layers [][]byte) string {
	tb.Helper()
	if strings.Contains(ref, "@") {
		tb.Fatalf("PushRandomImage: ref %q must be repo:tag or repo, not a digest", ref)
	}
	if len(layers) == 0 {
		layers = [][]byte{RandomBytes(tb, 4096)}
	}
	dir := tb.TempDir()
	args := []string{"append"}
	if oci {
		args = append(args, "--oci-empty-base")
	}
	for _, l := range layers {
		args = append(args, "-f", layerTar(tb, dir, l))
	}
	repo, tag := splitTag(ref)
	if tag != "" {
		out := reg.Crane(tb, append(args, "-t", reg.Ref(ref))...)
		_, digest, ok := strings.Cut(lastLine(out), "@")
		if !ok {
			tb.Fatalf("crane append printed %q, want ref@digest", out)
		}
		return digest
	}
	// No tag: build a tarball, then push it by digest.
	tarball := filepath.Join(dir, "image.tar")
	reg.Crane(tb, append(args, "-t", reg.Ref(repo+":untagged"), "-o", tarball)...)
	digest := reg.Crane(tb, "digest", "--tarball", tarball)
	reg.Crane(tb, "push", tarball, reg.Ref(repo+"@"+digest))
	return digest
}

// PushIndex creates a manifest list / image index with `crane index append`
// from the manifests (digests "sha256:..." in repo, or full references) and
// pushes it as ref ("repo:tag"). It returns the index digest.
func PushIndex(tb testing.TB, reg *Registry, ref string, manifests ...string) string {
	tb.Helper()
	repo, _ := splitTag(ref)
	args := []string{"index", "append", "-t", reg.Ref(ref)}
	for _, m := range manifests {
		if strings.HasPrefix(m, "sha256:") {
			m = reg.Ref(repo + "@" + m)
		}
		args = append(args, "-m", m)
	}
	reg.Crane(tb, args...)
	return reg.Crane(tb, "digest", reg.Ref(ref))
}

func splitTag(ref string) (repo, tag string) {
	slash := strings.LastIndex(ref, "/")
	if colon := strings.LastIndex(ref, ":"); colon > slash {
		return ref[:colon], ref[colon+1:]
	}
	return ref, ""
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// PutManifest PUTs body as /v2/<repo>/manifests/<reference> with the given
// Content-Type (e.g. an OCI 1.1 referrer with a subject, which crane cannot
// push) and returns the digest the registry reports.
func PutManifest(tb testing.TB, reg *Registry, repo, reference, mediaType string, body []byte) string {
	tb.Helper()
	resp := do(tb, http.MethodPut, reg.URL()+"/v2/"+repo+"/manifests/"+reference, mediaType, body, http.StatusCreated)
	if d := resp.Header.Get("Docker-Content-Digest"); d != "" {
		return d
	}
	return Digest(body)
}

// UploadBlob uploads data to repo with a monolithic upload (POST, then PUT
// with the digest) and returns its digest.
func UploadBlob(tb testing.TB, reg *Registry, repo string, data []byte) string {
	tb.Helper()
	resp := do(tb, http.MethodPost, reg.URL()+"/v2/"+repo+"/blobs/uploads/", "", nil, http.StatusAccepted)
	loc := location(tb, reg, resp)
	digest := Digest(data)
	q := loc.Query()
	q.Set("digest", digest)
	loc.RawQuery = q.Encode()
	do(tb, http.MethodPut, loc.String(), "application/octet-stream", data, http.StatusCreated)
	return digest
}

// StartAbandonedUpload starts a blob upload in repo, PATCHes one chunk of
// random data into it and never finishes it. It returns the upload's UUID.
func StartAbandonedUpload(tb testing.TB, reg *Registry, repo string) string {
	tb.Helper()
	resp := do(tb, http.MethodPost, reg.URL()+"/v2/"+repo+"/blobs/uploads/", "", nil, http.StatusAccepted)
	loc := location(tb, reg, resp)
	resp = do(tb, http.MethodPatch, loc.String(), "application/octet-stream", RandomBytes(tb, 1024), http.StatusAccepted)
	id := resp.Header.Get("Docker-Upload-UUID")
	if id == "" {
		tb.Fatalf("PATCH %s: no Docker-Upload-UUID header", loc)
	}
	return id
}

func location(tb testing.TB, reg *Registry, resp *http.Response) *url.URL {
	tb.Helper()
	base, _ := url.Parse(reg.URL() + "/")
	loc, err := base.Parse(resp.Header.Get("Location"))
	if err != nil || resp.Header.Get("Location") == "" {
		tb.Fatalf("%s %s: bad Location %q: %v", resp.Request.Method, resp.Request.URL, resp.Header.Get("Location"), err)
	}
	return loc
}

// do sends one request and fails the test unless the status is want. The
// returned response's body has been read and closed.
func do(tb testing.TB, method, u, contentType string, body []byte, want int) *http.Response {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, u, err)
	}
	respBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		tb.Fatalf("%s %s: %s (want %d): %s", method, u, resp.Status, want, bytes.TrimSpace(respBody))
	}
	return resp
}

// Get fetches path (e.g. "/v2/repo/manifests/tag") from reg with the given
// Accept header and returns the status code, body and headers. It fails the
// test only on transport errors.
func Get(tb testing.TB, reg *Registry, path, accept string) (int, []byte, http.Header) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, reg.URL()+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		tb.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, b, resp.Header
}
