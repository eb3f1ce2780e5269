package walker_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/walker"
)

func generate(t *testing.T, d storage.Driver, spec regtree.Spec) regtree.Counts {
	t.Helper()
	c, err := regtree.Generate(context.Background(), d, spec, 8)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var smallSpec = regtree.Spec{Seed: 1, Repositories: 12, ImagesPerRepo: 4, TagsPerRepo: 2, LayersPerImg: 3,
	SharedLayers: 3, OrphanBlobs: 5, MultiArch: true, Uploads: 2}

func TestCollectCountsWhatWasWritten(t *testing.T) {
	reqs := &storage.Requests{}
	d := storage.NewMemory(nil, reqs)
	want := generate(t, d, smallSpec)
	before := reqs.Snapshot()
	inv, err := walker.Collect(context.Background(), d, walker.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if got := len(inv.Repositories); got != want.Repositories {
		t.Errorf("repositories: got %d want %d", got, want.Repositories)
	}
	if inv.Blobs.Len() != want.Blobs || inv.BlobBytes != want.BlobBytes {
		t.Errorf("blobs: got %d (%d bytes) want %d (%d bytes)", inv.Blobs.Len(), inv.BlobBytes, want.Blobs, want.BlobBytes)
	}
	var tags, manifests, layers, uploads int
	for _, r := range inv.Repositories {
		manifests += r.Revisions.Len()
		layers += r.Layers.Len()
		uploads += len(r.Uploads)
		for _, tag := range r.Tags {
			if tag.HasCurrent {
				tags++
			}
		}
	}
	// The generator counts a layer link per image layer, also when two
	// images of a repository share one: count distinct links instead.
	if tags != want.Tags || manifests != want.Manifests || uploads != want.Uploads {
		t.Errorf("tags/manifests/uploads: got %d/%d/%d want %d/%d/%d", tags, manifests, uploads, want.Tags, want.Manifests, want.Uploads)
	}
	if layers == 0 || layers > want.LayerLinks {
		t.Errorf("layer links: got %d, generator wrote at most %d", layers, want.LayerLinks)
	}
	if len(inv.Corrupt) != 0 || len(inv.Unknown) != 0 {
		t.Errorf("healthy tree reported corrupt %v unknown %v", inv.Corrupt, inv.Unknown)
	}
	// ETags prove every link, tag current links included (their ETag names
	// one of the tag's index entries): only startedat files are read.
	after := reqs.Snapshot()
	if gets := after["get"] - before["get"]; gets != int64(uploads) {
		t.Errorf("GETs: got %d, want one per upload start time (%d)", gets, uploads)
	}
	for _, r := range inv.Repositories {
		for name, tag := range r.Tags {
			if inIndex := tag.Index.Has(tag.Current); !tag.HasCurrent || !inIndex {
				t.Errorf("%s:%s: current %s not resolved to an index entry", r.Name, name, tag.Current)
			}
		}
	}
}

func TestWithoutETagsEveryLinkIsRead(t *testing.T) {
	reqs := &storage.Requests{}
	d := storage.NewMemory(nil, reqs)
	generate(t, d, smallSpec)
	opts := walker.DefaultOptions()
	opts.TrustETags = false
	before := reqs.Snapshot()["get"]
	inv, err := walker.Collect(context.Background(), d, opts)
	if err != nil {
		t.Fatal(err)
	}
	links := 0
	for _, r := range inv.Repositories {
		links += r.Revisions.Len() + r.Layers.Len() + len(r.Tags) /* current */
		for _, tag := range r.Tags {
			links += tag.Index.Len()
		}
		links += len(r.Uploads)
	}
	if got := reqs.Snapshot()["get"] - before; got != int64(links) {
		t.Errorf("GETs without ETags: got %d want %d", got, links)
	}
}

func TestCorruptLinksAndUnknownKeys(t *testing.T) {
	d := storage.NewMemory(nil, nil)
	w := regtree.NewWriter(d, 4)
	img := w.Image("a", []byte(`{"c":1}`), []byte("layer"))
	w.Tag("a", "latest", img.Digest)
	other := digest.FromString("other")
	key := func(s layout.Spec) string { k, _ := layout.Path(s); return k }
	w.Raw(key(layout.LayerLink{Repo: "b", Digest: other}), []byte("garbage"))
	w.Raw(key(layout.RevisionLink{Repo: "b", Digest: other}), nil)
	w.Raw(key(layout.LayerLink{Repo: "c", Digest: other}), []byte(img.Digest.String()))
	w.Raw(key(layout.TagCurrentLink{Repo: "c", Tag: "broken"}), []byte("sha256:nothex"))
	w.Raw("docker/registry/v2/repositories/a/_manifests/stray", []byte("x"))
	w.Raw("docker/registry/v2/blobs/sha256/ab/notablob", []byte("x"))
	w.Raw("docker/registry/v2/blobs/md5/zz", []byte("x")) // listed by the one-pass walk only
	w.Raw("scheduler-state.json", []byte("{}"))           // outside the registry tree: never listed
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	inv, err := walker.Collect(context.Background(), d, walker.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, e := range inv.Corrupt {
		reasons[e.Key] = e.CorruptReason
	}
	if len(reasons) != 4 {
		t.Fatalf("corrupt links: got %d %v, want 4", len(reasons), reasons)
	}
	for k, r := range reasons {
		switch {
		case strings.Contains(k, "/b/_layers/") && !strings.Contains(r, "not a digest"):
			t.Errorf("%s: reason %q", k, r)
		case strings.Contains(k, "/b/_manifests/") && !strings.Contains(r, "empty"):
			t.Errorf("%s: reason %q", k, r)
		case strings.Contains(k, "/c/_layers/") && !strings.Contains(r, "its path names"):
			t.Errorf("%s: reason %q", k, r)
		}
	}
	if tag := inv.Repositories["c"].Tags["broken"]; tag == nil || !tag.HasCurrent || tag.Current != "" || tag.CurrentCorrupt == "" {
		t.Errorf("corrupt tag current link: %+v", tag)
	}
	var unknown []string
	for _, e := range inv.Unknown {
		unknown = append(unknown, e.Key)
	}
	if len(unknown) != 3 {
		t.Errorf("unknown keys: %v, want the three stray keys under docker/registry/v2/", unknown)
	}
}

// A walk's problems are findings where it finds them: a corrupt link
// names its repository, digest and key and why; a key that fits no layout
// is broken storage, and a driver's temporary file says what it becomes.
func TestWalkFindings(t *testing.T) {
	d := storage.NewMemory(nil, nil)
	w := regtree.NewWriter(d, 4)
	other := digest.FromString("other")
	link, _ := layout.Path(layout.LayerLink{Repo: "b", Digest: other})
	w.Raw(link, []byte("garbage"))
	w.Raw(link+".0f8fad5b-d9cb-469f-a165-70867728950e.tmp", []byte(other.String()))
	w.Raw("docker/registry/v2/blobs/sha256/ab/notablob", []byte("xyz"))
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	inv, err := walker.Collect(context.Background(), d, walker.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Corrupt) != 1 {
		t.Fatalf("corrupt links: %v", inv.Corrupt)
	}
	f, ok := inv.Corrupt[0].Finding()
	want := finding.Finding{Kind: finding.CorruptLink, Repo: "b", Digest: other, Key: link,
		Explanation: `corrupt layer_link: link content is not a digest ("garbage")`}
	if !ok || !reflect.DeepEqual(f, want) {
		t.Errorf("corrupt link finding %+v, want %+v", f, want)
	}
	got := map[string]string{}
	for _, f := range inv.UnknownKeys() {
		if f.Kind != finding.UnknownKey || f.Severity() != finding.Broken {
			t.Errorf("unknown key finding %+v", f)
		}
		got[f.Key] = f.Explanation
	}
	wantUnknown := map[string]string{
		"docker/registry/v2/blobs/sha256/ab/notablob": "key under docker/registry/v2/ that fits no registry layout",
		link + ".0f8fad5b-d9cb-469f-a165-70867728950e.tmp": "a storage driver's temporary file for " + link +
			": a write in flight, or one a crash cut short (gc ignores it)",
	}
	if !maps.Equal(got, wantUnknown) {
		t.Errorf("unknown keys %v, want %v", got, wantUnknown)
	}
	for _, r := range inv.Repositories {
		for d := range r.Layers.All() {
			if _, ok := (walker.Entry{Kind: walker.KindLayerLink, Repo: r.Name, Digest: d}).Finding(); ok {
				t.Errorf("a sound link is a finding")
			}
		}
	}
}

// failingWalk fails the listing of one prefix after handing out a few keys.
type failingWalk struct {
	storage.Driver
	prefix string
}

func (f failingWalk) Walk(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if strings.HasPrefix(prefix, f.prefix) || strings.HasPrefix(f.prefix, prefix) {
		n := 0
		err := f.Driver.Walk(ctx, prefix, func(oi storage.ObjectInfo) error {
			if n++; n > 3 {
				return errors.New("connection reset by peer")
			}
			return fn(oi)
		})
		if err != nil {
			return err
		}
		return errors.New("listing ended early")
	}
	return f.Driver.Walk(ctx, prefix, fn)
}

func TestListingErrorFailsTheWalk(t *testing.T) {
	for _, prefix := range []string{layout.RepositoriesPrefix, layout.BlobsPrefix + "sha256/7"} {
		mem := storage.NewMemory(nil, nil)
		generate(t, mem, smallSpec)
		_, err := walker.Collect(context.Background(), failingWalk{mem, prefix}, walker.DefaultOptions())
		if !errors.Is(err, walker.ErrWalk) {
			t.Errorf("%s: want ErrWalk, got %v", prefix, err)
		}
	}
}

// failingGet fails every read of a link.
type failingGet struct{ storage.Driver }

func (f failingGet) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	return nil, &storage.PathError{Op: "get", Driver: "test", Key: key, Err: storage.ErrAccessDenied}
}

func TestUnreadableLinkFailsTheWalk(t *testing.T) {
	mem := storage.NewMemory(nil, nil)
	generate(t, mem, smallSpec)
	_, err := walker.Collect(context.Background(), failingGet{mem}, walker.DefaultOptions())
	if !errors.Is(err, walker.ErrWalk) || !errors.Is(err, storage.ErrAccessDenied) {
		t.Fatalf("want ErrWalk wrapping ErrAccessDenied, got %v", err)
	}
}

func TestWalkStopsOnCallbackErrorAndCancel(t *testing.T) {
	mem := storage.NewMemory(nil, nil)
	generate(t, mem, smallSpec)
	stop := errors.New("stop")
	calls := 0
	err := walker.Walk(context.Background(), mem, walker.DefaultOptions(), func(walker.Entry) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("callback error: err %v after %d calls", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	err = walker.Walk(ctx, mem, walker.DefaultOptions(), func(walker.Entry) error { cancel(); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancel: %v", err)
	}
}

func TestUploadStartTimeIsRead(t *testing.T) {
	mem := storage.NewMemory(nil, nil)
	w := regtree.NewWriter(mem, 2)
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	w.Upload("r", "u1", started, []byte("partial"))
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	inv, err := walker.Collect(context.Background(), mem, walker.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	u := inv.Repositories["r"].Uploads["u1"]
	if u == nil || !u.StartedAt.Equal(started) || len(u.Files) != 3 {
		t.Fatalf("upload: %+v", u)
	}
}

// TestWalkMoreEntriesThanBuffered walks far more entries than the walker
// buffers, with fewer listing slots than shards (a walk like that once
// deadlocked: the goroutine that drains entries was starting listings).
func TestWalkMoreEntriesThanBuffered(t *testing.T) {
	mem := storage.NewMemory(nil, nil)
	w := regtree.NewWriter(mem, 8)
	for i := 0; i < 20000; i++ {
		w.Blob([]byte(fmt.Sprintf("blob %d", i)))
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []int{1, 2, 16} {
		opts := walker.DefaultOptions()
		opts.Concurrency = c
		done := make(chan error, 1)
		var n int
		go func() {
			done <- walker.Walk(context.Background(), mem, opts, func(walker.Entry) error { n++; return nil })
		}()
		select {
		case err := <-done:
			if err != nil || n != 20000 {
				t.Fatalf("concurrency %d: %d entries, %v", c, n, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("concurrency %d: walk hangs", c)
		}
	}
}

func TestShardedRepositoriesWalkFindsTheSame(t *testing.T) {
	mem := storage.NewMemory(nil, nil)
	generate(t, mem, smallSpec)
	w := regtree.NewWriter(mem, 2)
	img := w.Image("0digit/first", []byte(`{"c":2}`), []byte("l"))
	w.Tag("0digit/first", "v", img.Digest)
	// Stray objects at each level the shards descend through: each is
	// listed once, from the listing of its directory.
	strays := []string{"zz", "team0/stray", "team0/app0/stray", "team0/app0/_layers/stray"}
	for _, k := range strays {
		w.Raw("docker/registry/v2/repositories/"+k, []byte("stray object"))
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	one, err := walker.Collect(context.Background(), mem, walker.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	// 7 top-level names, 13 repositories: fewer than the listings allowed
	// at once, so the shards go two levels down, into the repositories.
	opts := walker.DefaultOptions()
	opts.Parallel = true
	sharded, err := walker.Collect(context.Background(), mem, opts)
	if err != nil {
		t.Fatal(err)
	}
	unknown := func(inv *walker.Inventory) []string {
		var keys []string
		for _, e := range inv.Unknown {
			keys = append(keys, e.Key)
		}
		slices.Sort(keys)
		return keys
	}
	if one.Keys != sharded.Keys || len(one.Repositories) != len(sharded.Repositories) || len(one.Repositories) != 13 {
		t.Fatalf("one pass: %d keys, %d repos; sharded: %d keys, %d repos",
			one.Keys, len(one.Repositories), sharded.Keys, len(sharded.Repositories))
	}
	if u1, u2 := unknown(one), unknown(sharded); !slices.Equal(u1, u2) || len(u2) != len(strays) {
		t.Fatalf("unknown keys: one pass %q, sharded %q", u1, u2)
	}
	for name, r := range one.Repositories {
		s := sharded.Repositories[name]
		if s == nil || len(s.Tags) != len(r.Tags) || s.Revisions.Len() != r.Revisions.Len() || s.Layers.Len() != r.Layers.Len() {
			t.Fatalf("repository %s differs between one pass and shards", name)
		}
	}
}

// goneStartedAt is storage where an upload finished between the listing
// and the read of its startedat.
type goneStartedAt struct{ storage.Driver }

func (g goneStartedAt) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	if strings.HasSuffix(key, "/startedat") {
		return nil, &storage.PathError{Op: "get", Driver: "test", Key: key, Err: storage.ErrNotFound}
	}
	return g.Driver.Get(ctx, key, max)
}

func TestUploadThatFinishesDuringTheWalk(t *testing.T) {
	mem := storage.NewMemory(nil, nil)
	w := regtree.NewWriter(mem, 2)
	w.Upload("r", "u1", time.Now(), []byte("partial"))
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	inv, err := walker.Collect(context.Background(), goneStartedAt{mem}, walker.DefaultOptions())
	if err != nil {
		t.Fatalf("an upload that completes during the walk fails it: %v", err)
	}
	u := inv.Repositories["r"].Uploads["u1"]
	if u == nil || !u.StartedAt.IsZero() || len(u.Files) != 2 {
		t.Fatalf("upload: %+v, want its other files without a start time", u)
	}
}

// A sharded walk of a store larger than a listing page per shard splits
// its blob shards, and still hands out each blob once; a small store's
// shards do not split.
func TestBlobShardsSplitWhenLarge(t *testing.T) {
	count := func(n, concurrency int) (blobs map[string]int, lists int64) {
		reqs := &storage.Requests{}
		mem := storage.NewMemory(nil, reqs)
		w := regtree.NewWriter(mem, 8)
		for i := 0; i < n; i++ {
			w.Blob([]byte(fmt.Sprintf("blob %d", i)))
		}
		if err := w.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		before := reqs.Snapshot()["list"]
		opts := walker.DefaultOptions()
		opts.Parallel = true
		opts.Concurrency = concurrency
		blobs = map[string]int{}
		err := walker.Walk(context.Background(), mem, opts, func(e walker.Entry) error {
			if e.Kind != walker.KindBlob {
				t.Errorf("unexpected entry %s %s", e.Kind, e.Key)
			}
			blobs[e.Key]++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return blobs, reqs.Snapshot()["list"] - before
	}
	// 18 shards (16 sha256 ones, sha384, sha512), one delimiter listing of
	// the repository tree and one of the registry root (for keys outside
	// the layout).
	const unsplit = 18 + 1 + 1
	if _, lists := count(300, 4); lists != unsplit {
		t.Fatalf("a store of 300 blobs took %d listings, want %d (no split)", lists, unsplit)
	}
	const n = 40000                               // 2,500 per one-digit shard: each splits once or twice
	for _, concurrency := range []int{1, 2, 16} { // one slot: a split must not wait for itself
		blobs, lists := count(n, concurrency)
		if len(blobs) != n {
			t.Fatalf("concurrency %d: %d blobs handed out, want %d", concurrency, len(blobs), n)
		}
		for k, c := range blobs {
			if c != 1 {
				t.Fatalf("blob %s handed out %d times", k, c)
			}
		}
		// Each one-digit shard: its first listing, the rest of the
		// two-digit prefix it split in, and the later two-digit prefixes.
		if lists <= unsplit+16 || lists > unsplit+16*17 {
			t.Fatalf("%d listings for %d blobs: the shards did not split as they should", lists, n)
		}
		t.Logf("concurrency %d: %d listings", concurrency, lists)
	}
}

// A shard that splits still lists every key under it, whatever follows its
// digit: directories and objects that no hex digit names are found too.
func TestBlobShardSplitMissesNothing(t *testing.T) {
	mem := storage.NewMemory(nil, nil)
	ctx := context.Background()
	for i := 0; i < 1600; i++ {
		hex := fmt.Sprintf("a%x%062x", i%4, i) // directories a0 to a3: the split is in one of them
		if err := mem.Put(ctx, layout.BlobsPrefix+"sha256/"+hex[:2]+"/"+hex+"/data", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"sha256/a:/x", "sha256/aZ/stray", "sha256/a_", "sha256/ag/stray", "sha256/a~", "sha256/aB/x", "sha256/a3", "sha256/a3x/y", "sha256/b0/x"} {
		if err := mem.Put(ctx, layout.BlobsPrefix+k, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	walk := func(parallel bool) map[string]int {
		opts := walker.DefaultOptions()
		opts.Parallel, opts.Concurrency = parallel, 4
		seen := map[string]int{}
		if err := walker.Walk(ctx, mem, opts, func(e walker.Entry) error { seen[e.Key]++; return nil }); err != nil {
			t.Fatal(err)
		}
		return seen
	}
	one, sharded := walk(false), walk(true)
	if len(one) != 1600+9 {
		t.Fatalf("one pass found %d keys", len(one))
	}
	for k := range one {
		if sharded[k] != 1 {
			t.Errorf("sharded walk handed out %s %d times", k, sharded[k])
		}
	}
	if len(sharded) != len(one) {
		t.Errorf("sharded walk found %d keys, one pass %d", len(sharded), len(one))
	}
}

// Every key under the registry root that is not in blobs/ or
// repositories/ is reported as unknown: distribution writes nothing else
// there (issue 15). A walk of the repository tree only does not look.
func TestKeysOutsideTheLayoutAreReported(t *testing.T) {
	ctx := context.Background()
	strays := []string{layout.Root + "stray/x.txt", layout.Root + "notes", layout.Root + "blobsX/y", layout.Root + "old/deep/er/key"}
	for _, mem := range []storage.Driver{storage.NewMemory(nil, nil), hidingCapabilities{storage.NewMemory(nil, nil)}} {
		for _, k := range append([]string{layout.BlobsPrefix + "sha256/ab/ab" + strings.Repeat("0", 62) + "/data"}, strays...) {
			if err := mem.Put(ctx, k, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		for _, parallel := range []bool{false, true} {
			opts := walker.DefaultOptions()
			opts.Parallel = parallel
			inv, err := walker.Collect(ctx, mem, opts)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range inv.Unknown {
				got = append(got, e.Key)
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(strays))
			if !slices.Equal(got, want) || inv.Blobs.Len() != 1 {
				t.Errorf("%T parallel %v: unknown %v, want %v; %d blobs", mem, parallel, got, want, inv.Blobs.Len())
			}
			opts.RepositoriesOnly = true
			if inv, err := walker.Collect(ctx, mem, opts); err != nil || len(inv.Unknown) != 0 {
				t.Errorf("a walk of the repository tree reported %v (%v)", inv.Unknown, err)
			}
		}
	}
}

// hidingCapabilities is a store that offers no capability: the walk lists
// the whole root for keys outside the layout.
type hidingCapabilities struct{ storage.Driver }
