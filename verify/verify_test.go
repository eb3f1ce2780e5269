package verify_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/verify"
)

func TestVerifyFlagsOnlyTheCorruptBlob(t *testing.T) {
	mem := storage.NewMemory(nil, nil)
	var digests []digest.Digest
	for i := 0; i < 20; i++ {
		b := []byte{byte(i), 1, 2, 3}
		d := digest.FromBytes(b)
		k, _ := layout.Path(layout.BlobData{Digest: d})
		if i == 7 {
			b = []byte{7, 1, 2, 4} // a flipped byte
		}
		mem.Put(context.Background(), k, b)
		digests = append(digests, d)
	}
	var bad []digest.Digest
	seen := 0
	err := verify.Blobs(context.Background(), mem, digests, verify.Options{Concurrency: 4}, func(r verify.Result) error {
		seen++
		if r.Actual != r.Digest {
			bad = append(bad, r.Digest)
		}
		return nil
	})
	if err != nil || seen != 20 || len(bad) != 1 || bad[0] != digests[7] {
		t.Fatalf("err %v, seen %d, bad %v", err, seen, bad)
	}
}

// A blob whose content hashes to another digest is a digest_mismatch
// finding naming the blob, its key, its size and the digest it hashes to;
// every blob is counted as hashed.
func TestMismatchesAreDigestMismatchFindings(t *testing.T) {
	mem := storage.NewMemory(nil, nil)
	var digests []digest.Digest
	var key string
	for i := range 5 {
		b := []byte{byte(i), 1, 2, 3}
		d := digest.FromBytes(b)
		k, _ := layout.Path(layout.BlobData{Digest: d})
		if i == 3 {
			b, key = []byte{3, 1, 2, 4, 5}, k
		}
		mem.Put(context.Background(), k, b)
		digests = append(digests, d)
	}
	var hashed int64
	got, err := verify.Mismatches(context.Background(), mem, digests, verify.Options{Concurrency: 2}, func(n int64) { hashed += n })
	want := finding.Finding{Kind: finding.DigestMismatch, Digest: digests[3], Key: key, Size: 5,
		Explanation: "content hashes to " + digest.FromBytes([]byte{3, 1, 2, 4, 5}).String()}
	if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], want) || hashed != 4*4+5 {
		t.Fatalf("err %v, hashed %d, findings %+v; want %+v", err, hashed, got, want)
	}
	if got[0].Severity() != finding.Broken {
		t.Errorf("a digest mismatch is %q, want broken", got[0].Severity())
	}
}

func TestVerifyMissingBlobIsAnError(t *testing.T) {
	mem := storage.NewMemory(nil, nil)
	err := verify.Blobs(context.Background(), mem, []digest.Digest{digest.FromString("x")}, verify.Options{Concurrency: 2}, func(verify.Result) error { return nil })
	if !storage.IsNotFound(err) {
		t.Fatalf("want not found, got %v", err)
	}
}

func TestVerifyWithABandwidthBoundHashesEverything(t *testing.T) {
	mem := storage.NewMemory(nil, nil)
	b := make([]byte, 600<<10)
	for i := range b {
		b[i] = byte(i)
	}
	d := digest.FromBytes(b)
	k, _ := layout.Path(layout.BlobData{Digest: d})
	mem.Put(context.Background(), k, b)
	var got verify.Result
	err := verify.Blobs(context.Background(), mem, []digest.Digest{d}, verify.Options{Concurrency: 1, BytesPerSecond: 1 << 20}, func(r verify.Result) error {
		got = r
		return nil
	})
	if err != nil || got.Actual != d || got.Bytes != int64(len(b)) {
		t.Fatalf("err %v, result %+v", err, got)
	}
}
