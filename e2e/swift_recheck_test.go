package e2e

// Swift's listings may lag its writes, and an orphan segment set was
// judged against the walk's blobs only (issue 15, item 6). These tests run
// against the real Swift, with the driver and wrappers the CLI opens, and
// land a write at the moment the window would let it through.

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	ncw "github.com/ncw/swift/v2"
	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/backend"
	"github.com/regsweep/regsweep/gc"
	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/internal/testenv"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/lock"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/sweep"
)

type swiftStore struct {
	d         storage.Driver
	raw       *ncw.Connection
	container string
}

func openSwiftStore(t *testing.T) swiftStore {
	t.Helper()
	s := testenv.Swift(t)
	container := testenv.NewContainer(t, s)
	d, err := backend.Open(context.Background(), backend.Config{Driver: "swift", Swift: backend.SwiftConfig{AuthURL: s.AuthURL,
		Username: s.User, Password: s.Key, Container: container, AuthVersion: 1}}, backend.OpenOptions{Concurrency: 8, Retry: storage.DefaultRetry()})
	if err != nil {
		t.Fatal(err)
	}
	return swiftStore{d: d, raw: s.Connection(t), container: container}
}

// planAndRun plans a gc --delete --delete-untagged --grace 0s
// --upload-grace 0s of d as the CLI does (gc.Analyze, gc.Execute), with
// the hooks given.
func planAndRun(t *testing.T, d storage.Driver, check func(p *sweep.Plan), o gc.ExecOptions) *sweep.Result {
	t.Helper()
	ctx := context.Background()
	a, err := gc.Analyze(ctx, d, mark.StorageSource(d, "", 0), gc.Options{DeleteUntagged: true, MaxDeleteFraction: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Plan.Guards) > 0 {
		t.Fatalf("guards: %v", a.Plan.Guards)
	}
	check(a.Plan)
	held, lctx, err := lock.Acquire(ctx, d, lock.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release(context.WithoutCancel(ctx))
	r, err := gc.Execute(lctx, a, held, o)
	if err != nil {
		t.Fatal(err)
	}
	return r.Sweep
}

func hasKey(p *sweep.Plan, key string) bool {
	for _, it := range p.Items {
		if it.Key == key {
			return true
		}
	}
	return false
}

// A planned revision link that a push writes again after the recheck's
// listing, just before the link phase, stays: each planned link is HEAD'ed
// before its batch is deleted, which no listing lag can hide.
func TestSwiftLinkRewrittenAfterTheRecheckStays(t *testing.T) {
	st := openSwiftStore(t)
	ctx := context.Background()
	w := regtree.NewWriter(st.d, 4)
	keep := w.Image("keep", []byte(`{"keep":1}`), []byte("keep-layer"))
	w.Tag("keep", "v1", keep.Digest)
	m := w.Image("app", []byte(`{"swift":1}`), []byte("swift-layer"))
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rev, _ := layout.Path(layout.RevisionLink{Repo: "app", Digest: m.Digest})
	r := planAndRun(t, st.d, func(p *sweep.Plan) {
		if !hasKey(p, rev) {
			t.Fatalf("scenario: %s should be planned", rev)
		}
	}, gc.ExecOptions{BeforePhase: func(ph int) error {
		if ph != 1 {
			return nil
		}
		time.Sleep(1100 * time.Millisecond) // Swift's Last-Modified has whole seconds
		w := regtree.NewWriter(st.d, 1)
		w.Revision("app", m.Digest)
		w.Tag("app", "again", m.Digest)
		return w.Flush(ctx)
	}})
	if r.Kept[sweep.KindRevisionLink] != 1 {
		t.Errorf("kept %v: the rewritten revision link should have been left out of its batch", r.Kept)
	}
	for _, k := range []string{rev, blobPath(m.Digest)} {
		if _, err := st.d.Stat(ctx, k); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
}

func blobPath(d digest.Digest) string {
	k, _ := layout.Path(layout.BlobData{Digest: d})
	return k
}

// An orphan segment set that a blob written after the walk points at (its
// listing lagged, or its upload completed since) stays: the recheck before
// the blobs lists the blobs too when orphan segments are planned.
func TestSwiftOrphanSegmentsRecheckedAgainstFreshBlobs(t *testing.T) {
	st := openSwiftStore(t)
	ctx := context.Background()
	w := regtree.NewWriter(st.d, 4)
	keep := w.Image("keep", []byte(`{"keep":2}`), []byte("keep-layer-2"))
	w.Tag("keep", "v1", keep.Digest)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	const prefix = "segments/abc/0123456789abcdef0123456789abcdef01234567"
	var content []byte
	for i := 1; i <= 2; i++ {
		part := bytes.Repeat([]byte{byte('a' + i)}, 64)
		content = append(content, part...)
		if err := st.raw.ObjectPutBytes(ctx, st.container, prefix+"/"+strings.Repeat("0", 15)+string(rune('0'+i)), part, "application/octet-stream"); err != nil {
			t.Fatal(err)
		}
	}
	blob := digest.FromBytes(content)
	r := planAndRun(t, st.d, func(p *sweep.Plan) {
		if !hasKey(p, prefix+"/0000000000000001") {
			t.Fatalf("scenario: the orphan segments should be planned: %v", p.Items)
		}
	}, gc.ExecOptions{AfterLinks: func(ctx context.Context) error {
		// The DLO whose segments these are appears now.
		_, err := st.raw.ObjectPut(ctx, st.container, "files/"+blobPath(blob), bytes.NewReader(nil), false, "", "application/octet-stream",
			ncw.Headers{"X-Object-Manifest": st.container + "/" + prefix, "Content-Length": "0"})
		return err
	}})
	if r.Deleted[sweep.KindSegment] != 0 {
		t.Errorf("deleted %d segments of a blob written since the walk", r.Deleted[sweep.KindSegment])
	}
	got, err := st.d.Get(ctx, blobPath(blob), 1<<20)
	if err != nil || !bytes.Equal(got, content) {
		t.Errorf("the blob written since the walk reads %d bytes, %v; want its %d", len(got), err, len(content))
	}
}
