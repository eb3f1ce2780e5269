package manifestcache

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func manifest(i int) ([]byte, digest.Digest) {
	b := fmt.Appendf(nil, `{"schemaVersion":2,"config":{"digest":"sha256:%064d"}}`, i)
	return b, digest.FromBytes(b)
}

func open(t *testing.T, dir string) *Cache {
	t.Helper()
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func closeCache(t *testing.T, c *Cache) {
	t.Helper()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func packs(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+packSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func wantHit(t *testing.T, c *Cache, i int) {
	t.Helper()
	b, d := manifest(i)
	got, ok := c.Get(d, 1<<20)
	if !ok || !bytes.Equal(got, b) {
		t.Fatalf("manifest %d: Get = %q, %v; want a hit", i, got, ok)
	}
}

func wantMiss(t *testing.T, c *Cache, i int) {
	t.Helper()
	_, d := manifest(i)
	if got, ok := c.Get(d, 1<<20); ok {
		t.Fatalf("manifest %d: Get = %q, want a miss", i, got)
	}
}

// reopen closes c and opens dir again, as the next run does; the test's
// end closes it.
func reopen(t *testing.T, c *Cache, dir string) *Cache {
	t.Helper()
	closeCache(t, c)
	c = open(t, dir)
	t.Cleanup(func() { closeCache(t, c) })
	return c
}

// wantHits wants manifests 0 to n-1 to hit.
func wantHits(t *testing.T, c *Cache, n int) {
	t.Helper()
	for i := range n {
		wantHit(t, c, i)
	}
}

func put(t *testing.T, c *Cache, i int) {
	t.Helper()
	b, d := manifest(i)
	if err := c.Put(d, b); err != nil {
		t.Fatal(err)
	}
}

func TestPutGetAcrossRuns(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	c := open(t, dir)
	wantMiss(t, c, 0)
	for i := range 100 {
		put(t, c, i)
	}
	put(t, c, 7) // again: not written twice
	if err := c.Put("sha256:not a digest", []byte("{}")); err == nil {
		t.Fatal("Put took a malformed digest")
	}
	// Read back before Close, from the unflushed buffer's file.
	for i := range 100 {
		wantHit(t, c, i)
	}
	if _, d := manifest(0); !c.Has(d) {
		t.Fatal("Has(0) = false after Put")
	}
	_, d := manifest(0)
	if _, ok := c.Get(d, 10); ok {
		t.Fatal("Get with a smaller maxSize hit")
	}
	closeCache(t, c)

	ps := packs(t, dir)
	if len(ps) != 1 {
		t.Fatalf("packs after one run: %v", ps)
	}
	if fi, err := os.Stat(ps[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("pack mode: %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode: %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	b, _ := os.ReadFile(ps[0])
	if n := bytes.Count(b, []byte(string(mustDigest(7))+" ")); n != 1 {
		t.Fatalf("manifest 7 is in the pack %d times", n)
	}

	c2 := open(t, dir)
	for i := range 100 {
		wantHit(t, c2, i)
	}
	wantMiss(t, c2, 100)
	closeCache(t, c2)
	if ps := packs(t, dir); len(ps) != 1 {
		t.Fatalf("a run that added nothing left packs %v", ps)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, tempPrefix+"*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func mustDigest(i int) digest.Digest { _, d := manifest(i); return d }

// onePack runs one run that caches manifests 0 to n-1 in dir and returns
// the pack it leaves, with its content.
func onePack(t *testing.T, dir string, n int) (string, []byte) {
	t.Helper()
	c := open(t, dir)
	for i := range n {
		put(t, c, i)
	}
	closeCache(t, c)
	p := packs(t, dir)[0]
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, b
}

// A record whose content went bad is a miss; its re-read shadows it in
// later runs.
func TestCorruptRecordIsShadowedByItsReread(t *testing.T) {
	dir := t.TempDir()
	p, b := onePack(t, dir, 3)
	content, _ := manifest(1)
	at := bytes.Index(b, content)
	b[at+5] ^= 0xff
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}

	c := open(t, dir)
	wantHit(t, c, 0)
	wantMiss(t, c, 1)
	wantHit(t, c, 2)
	put(t, c, 1) // what a source does after the miss
	wantHit(t, c, 1)
	wantHits(t, reopen(t, c, dir), 3)
}

// A pack cut short keeps the records before the cut; files that are not
// packs are not read; temporary packs of killed runs go once stale.
func TestDamagedAndForeignFiles(t *testing.T) {
	dir := t.TempDir()
	p, b := onePack(t, dir, 3)
	last, _ := manifest(2)
	if err := os.WriteFile(p, b[:len(b)-len(last)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(dir, "00000000000000000000-notes.pack")
	if err := os.WriteFile(foreign, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, tempPrefix+"stale")
	fresh := filepath.Join(dir, tempPrefix+"fresh")
	for _, f := range []string{stale, fresh} {
		if err := os.WriteFile(f, []byte(header), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTemp)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}

	c := open(t, dir)
	wantHit(t, c, 0)
	wantHit(t, c, 1)
	wantMiss(t, c, 2)
	closeCache(t, c)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary pack kept (%v)", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a live run's temporary pack removed: %v", err)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("a file that is not a pack was touched: %v", err)
	}
}

// Each run that adds something adds a pack; past maxPacks a closing run
// merges them into one, dropping records that no longer verify.
func TestMerge(t *testing.T) {
	dir := t.TempDir()
	for i := range maxPacks {
		c := open(t, dir)
		put(t, c, i)
		closeCache(t, c)
	}
	if n := len(packs(t, dir)); n != maxPacks {
		t.Fatalf("%d packs after %d runs", n, maxPacks)
	}
	// Corrupt manifest 3 in its pack.
	for _, p := range packs(t, dir) {
		b, _ := os.ReadFile(p)
		content, _ := manifest(3)
		if at := bytes.Index(b, content); at >= 0 {
			b[at+1] ^= 0xff
			os.WriteFile(p, b, 0o600)
		}
	}
	c := open(t, dir)
	put(t, c, maxPacks)
	closeCache(t, c)

	ps := packs(t, dir)
	if len(ps) != 1 {
		t.Fatalf("packs after the merge: %v", ps)
	}
	b, _ := os.ReadFile(ps[0])
	if n := strings.Count(string(b), string(mustDigest(3))+" "); n != 0 {
		t.Fatal("the merge kept a record that does not verify")
	}
	if n := strings.Count(string(b), string(mustDigest(0))+" "); n != 1 {
		t.Fatalf("the merged pack holds manifest 0 %d times, want once", n)
	}
	c = open(t, dir)
	defer closeCache(t, c)
	for i := range maxPacks + 1 {
		if i == 3 {
			wantMiss(t, c, i)
		} else {
			wantHit(t, c, i)
		}
	}
}

// Puts and Gets from many goroutines, as a prefetch and a mark make them
// (run with -race).
func TestConcurrent(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				n := (i*8 + w) % 400
				b, d := manifest(n)
				if err := c.Put(d, b); err != nil {
					t.Error(err)
					return
				}
				if got, ok := c.Get(d, 1<<20); !ok || !bytes.Equal(got, b) {
					t.Errorf("manifest %d: miss right after Put", n)
					return
				}
			}
		})
	}
	wg.Wait()
	wantHits(t, reopen(t, c, dir), 400)
}

// Whatever a file holds, indexing it does not panic and every record it
// yields lies within the file, with a header that parses.
func FuzzIndexPack(f *testing.F) {
	b0, d0 := manifest(0)
	f.Add([]byte(header + recordHeader(d0, len(b0)) + string(b0)))
	f.Add([]byte(header + "sha256:zz 3\nabc"))
	f.Add([]byte(header + string(d0) + " 99999999999\n"))
	f.Add([]byte("not a pack"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		var locs []location
		scanPack(r, false, func(d digest.Digest, loc location, _ []byte) {
			if loc.off < int64(loc.header) || loc.off+int64(loc.size) > int64(len(data)) {
				t.Fatalf("record %s at %d+%d (header %d) outside a %d-byte file", d, loc.off, loc.size, loc.header, len(data))
			}
			hdr := string(data[loc.off-int64(loc.header) : loc.off])
			if got, size, ok := parseRecordHeader(hdr); !ok || got != d || size != loc.size {
				t.Fatalf("header %q does not give %s %d", hdr, d, loc.size)
			}
			locs = append(locs, loc)
		})
		// With content, as a merge reads: the same records, each with the
		// bytes at its location.
		i := 0
		scanPack(r, true, func(d digest.Digest, loc location, content []byte) {
			if i >= len(locs) || loc != locs[i] || !bytes.Equal(content, data[loc.off:loc.off+int64(loc.size)]) {
				t.Fatalf("record %d (%s) read with its content differs from its index entry", i, d)
			}
			i++
		})
		if i != len(locs) {
			t.Fatalf("%d records with content, %d without", i, len(locs))
		}
	})
}

// Commit puts what a run has read so far into place, where a run killed
// later leaves it; the run goes on reading and adding.
func TestCommit(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	put(t, c, 0)
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := len(packs(t, dir)); n != 1 {
		t.Fatalf("%d packs after Commit, want 1", n)
	}
	wantHit(t, c, 0)
	put(t, c, 1)
	wantHit(t, c, 1)

	// Another process sees the committed pack and not what came after.
	other := open(t, dir)
	wantHit(t, other, 0)
	wantMiss(t, other, 1)
	closeCache(t, other)

	closeCache(t, c)
	if n := len(packs(t, dir)); n != 2 {
		t.Fatalf("%d packs after Close, want 2", n)
	}
	wantMiss(t, c, 0) // closed
	if b, d := manifest(2); c.Put(d, b) == nil {
		t.Fatal("Put after Close succeeded")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// More packs than Open keeps open (runs killed after committing) are
// merged at Open, two files at a time: a cache never uses up descriptors.
func TestOpenMergesTooManyPacks(t *testing.T) {
	dir := t.TempDir()
	n := maxOpenPacks + 6
	for i := range n { // as runs killed after committing leave them
		b, d := manifest(i)
		pack := header + recordHeader(d, len(b)) + string(b)
		if err := os.WriteFile(filepath.Join(dir, packName()), []byte(pack), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(packs(t, dir)); got != n {
		t.Fatalf("%d packs, want %d", got, n)
	}
	c := open(t, dir)
	defer closeCache(t, c)
	if len(c.packs) != 1 || len(packs(t, dir)) != 1 {
		t.Fatalf("Open holds %d packs, the directory has %d; want one merged pack", len(c.packs), len(packs(t, dir)))
	}
	for i := range n {
		wantHit(t, c, i)
	}
}

// A write that fails (a full disk) gives up this run's pack: what it held
// becomes misses, later Puts fail at once, and nothing is left behind.
func TestWriteFailureCostsOnlyMisses(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	put(t, c, 0)
	c.packs[c.outPack].Close() // every later write to the pack fails
	big := bytes.Repeat([]byte("x"), 128<<10)
	if err := c.Put(digest.FromBytes(big), big); err == nil {
		t.Fatal("a Put that had to write succeeded")
	}
	wantMiss(t, c, 0)
	b, d := manifest(1)
	if err := c.Put(d, b); err == nil {
		t.Fatal("a Put after a failed write succeeded")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close after a failed write: %v", err)
	}
	if ps := packs(t, dir); len(ps) != 0 {
		t.Fatalf("packs left: %v", ps)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, tempPrefix+"*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
