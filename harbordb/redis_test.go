package harbordb_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/regsweep/regsweep/harbordb"
	"github.com/regsweep/regsweep/internal/testenv"
)

// Redis database numbers this test owns on the shared test server (the
// registry cache patterns are fixed, so it cannot use a key prefix).
const (
	redisTargetDB  = 14
	redisControlDB = 15
)

func TestPurgeRegistryCache(t *testing.T) {
	ctx := context.Background()
	addr := testenv.Redis(t)
	target := redis.NewClient(&redis.Options{Addr: addr, DB: redisTargetDB})
	control := redis.NewClient(&redis.Options{Addr: addr, DB: redisControlDB})
	defer target.Close()
	defer control.Close()
	for _, c := range []*redis.Client{target, control} {
		if err := c.FlushDB(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.FlushDB(context.Background()) })
	}

	// More keys than one SCAN page (COUNT 1000), of both patterns, and keys
	// that look alike but are not the registry's cache.
	const nBlobs, nRepo = 2500, 1800
	var cache []string
	for i := range nBlobs {
		cache = append(cache, fmt.Sprintf("blobs::sha256:%064x", i))
	}
	for i := range nRepo {
		cache = append(cache, fmt.Sprintf("repository::library/app%d::blobs::sha256:%064x", i%7, i))
	}
	others := []string{"blobs:sha256:single-colon", "xblobs::a", "repository:x", "cache:quota:project:1", "upload:abc:size", "Blobs::upper"}
	for _, c := range []*redis.Client{target, control} {
		pipe := c.Pipeline()
		for _, k := range append(append([]string{}, cache...), others...) {
			pipe.Set(ctx, k, "v", 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}

	url := fmt.Sprintf("redis://%s/%d?idle_timeout_seconds=30", addr, redisTargetDB)
	deleted, err := harbordb.PurgeRegistryCache(ctx, url)
	if err != nil {
		t.Fatalf("PurgeRegistryCache: %v", err)
	}
	if deleted != nBlobs+nRepo {
		t.Errorf("deleted %d keys, want %d", deleted, nBlobs+nRepo)
	}
	left, err := target.Keys(ctx, "*").Result() // test-side check only
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(sorted(left), ",") != strings.Join(sorted(others), ",") {
		t.Errorf("keys left in db %d: %v, want %v", redisTargetDB, left, others)
	}
	if n := control.DBSize(ctx).Val(); n != int64(len(cache)+len(others)) {
		t.Errorf("db %d (not named by the URL) has %d keys, want %d", redisControlDB, n, len(cache)+len(others))
	}

	// ?db= names the database too; nothing left to delete there.
	if n, err := harbordb.PurgeRegistryCache(ctx, fmt.Sprintf("redis://%s?db=%d", addr, redisTargetDB)); err != nil || n != 0 {
		t.Errorf("second purge: %d, %v", n, err)
	}
}

func TestPurgeRegistryCacheErrors(t *testing.T) {
	const pw = "redis-Pa55word"
	for _, u := range []string{
		"redis://:" + pw + "@127.0.0.1:1/1",   // nothing listens
		"redis://:" + pw + "@127.0.0.1:1/one", // bad db number
		"http://:" + pw + "@127.0.0.1:1/1",    // bad scheme
		"redis+sentinel://:" + pw + "@127.0.0.1:1/mymaster/x",
	} {
		_, err := harbordb.PurgeRegistryCache(context.Background(), u)
		if err == nil {
			t.Errorf("%s: no error", harbordb.RedactRedisURL(u))
			continue
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("error %q contains the password", err)
		}
		if !strings.Contains(err.Error(), "127.0.0.1:1") {
			t.Errorf("error %q does not name the server", err)
		}
	}
}

func sorted(s []string) []string {
	out := append([]string{}, s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}
