package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// flakyWalk fails a listing once after handing out `after` keys.
type flakyWalk struct {
	Driver
	after, failures int
	reverse         bool
}

func (f *flakyWalk) Walk(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	var all []ObjectInfo
	if err := f.Driver.Walk(ctx, prefix, func(oi ObjectInfo) error { all = append(all, oi); return nil }); err != nil {
		return err
	}
	if f.reverse {
		for i, j := 0, len(all)-1; i < j; i, j = i+1, j-1 {
			all[i], all[j] = all[j], all[i]
		}
	}
	for i, oi := range all {
		if i == f.after && f.failures > 0 {
			f.failures--
			return fmt.Errorf("listing page: %w", ErrTransient)
		}
		if err := fn(oi); err != nil {
			return err
		}
	}
	return nil
}

func noSleep(context.Context, time.Duration) error { return nil }

func TestRetryWalkResumesWithoutDuplicates(t *testing.T) {
	mem := NewMemory(nil, nil)
	for i := 0; i < 50; i++ {
		mem.Put(context.Background(), fmt.Sprintf("k/%03d", i), []byte("x"))
	}
	flaky := &flakyWalk{Driver: mem, after: 20, failures: 2}
	d := Retry(flaky, RetryPolicy{Attempts: 5, Sleep: noSleep})
	seen := map[string]int{}
	if err := d.Walk(context.Background(), "k/", func(oi ObjectInfo) error { seen[oi.Key]++; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 50 {
		t.Fatalf("got %d keys, want 50", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s handed out %d times", k, n)
		}
	}
}

func TestRetryWalkUnorderedListingIsNotRetried(t *testing.T) {
	mem := NewMemory(nil, nil)
	for i := 0; i < 10; i++ {
		mem.Put(context.Background(), fmt.Sprintf("k/%03d", i), []byte("x"))
	}
	flaky := &flakyWalk{Driver: mem, after: 5, failures: 1, reverse: true}
	d := Retry(flaky, RetryPolicy{Attempts: 5, Sleep: noSleep})
	err := d.Walk(context.Background(), "k/", func(ObjectInfo) error { return nil })
	if !errors.Is(err, ErrTransient) {
		t.Fatalf("an unordered listing that failed midway must fail, got %v", err)
	}
}

func TestRetryGivesUpAndKeepsTheError(t *testing.T) {
	mem := NewMemory(nil, nil)
	mem.Put(context.Background(), "k/1", []byte("x"))
	flaky := &flakyWalk{Driver: mem, after: 0, failures: 10}
	err := Retry(flaky, RetryPolicy{Attempts: 3, Sleep: noSleep}).Walk(context.Background(), "k/", func(ObjectInfo) error { return nil })
	if !errors.Is(err, ErrTransient) {
		t.Fatalf("want the transient error after the last try, got %v", err)
	}
	if flaky.failures != 7 {
		t.Errorf("tried %d times, want 3", 10-flaky.failures)
	}
}

// largeObjectStore is a Memory with the LargeObjects capability, whose
// LargeObject counts its calls.
type largeObjectStore struct {
	*Memory
	calls int
}

func (s *largeObjectStore) LargeObject(ctx context.Context, key string) (ObjectInfo, string, error) {
	s.calls++
	oi, err := s.Stat(ctx, key)
	return oi, "", err
}

func (s *largeObjectStore) WalkSegments(ctx context.Context, fn func(ObjectInfo) error) error {
	return nil
}

func (s *largeObjectStore) DeleteSegments(ctx context.Context, names []string) ([]DeleteResult, error) {
	return nil, nil
}

// blockingGet holds a Get until release is closed: it keeps a slot.
type blockingGet struct {
	Driver
	started, release chan struct{}
}

func (b *blockingGet) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	close(b.started)
	<-b.release
	return nil, nil
}

// Capabilities are found below the wrappers: they must still wait for the
// chain's rate limit and slots, or --rate-limit would not bound a Swift
// walk's HEAD per blob.
func TestCapabilitiesArePaced(t *testing.T) {
	ctx := context.Background()
	store := &largeObjectStore{Memory: NewMemory(nil, nil)}
	if err := store.Put(ctx, "a", []byte("x")); err != nil {
		t.Fatal(err)
	}

	// A rate of one call in a thousand seconds: the first call takes the
	// only token, the second waits (and its short context gives up).
	rated := RateLimit(Retry(store, DefaultRetry()), 0.001)
	lo, ok := LargeObjectsOf(rated)
	if !ok {
		t.Fatal("LargeObjectsOf found nothing")
	}
	if _, _, err := lo.LargeObject(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, _, err := lo.LargeObject(short, "a"); err == nil {
		t.Fatal("a second LargeObject went past a rate limit of one call")
	}
	if store.calls != 1 {
		t.Fatalf("%d LargeObject calls reached the store, want 1", store.calls)
	}
	st, ok := StreamerOf(rated) // audit --verify's reads
	if !ok {
		t.Fatal("StreamerOf found nothing")
	}
	shortOpen, cancelOpen := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelOpen()
	if _, err := st.Open(shortOpen, "a"); err == nil {
		t.Fatal("Open went past the rate limit")
	}
	cr, ok := CreatorOf(rated)
	if !ok {
		t.Fatal("CreatorOf found nothing")
	}
	short2, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	if err := cr.Create(short2, "b", nil); err == nil {
		t.Fatal("Create went past the rate limit")
	}

	// One slot, held by a Get: LargeObject waits for it, a listing does not.
	hold := &blockingGet{Driver: store, started: make(chan struct{}), release: make(chan struct{})}
	limited := Limit(&capabilities{hold, store}, 1)
	go limited.Get(ctx, "a", 10)
	<-hold.started
	lo, _ = LargeObjectsOf(limited)
	short3, cancel3 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel3()
	if _, _, err := lo.LargeObject(short3, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("LargeObject with every slot taken: %v, want to wait for one", err)
	}
	if err := lo.WalkSegments(ctx, func(ObjectInfo) error { return nil }); err != nil {
		t.Fatalf("WalkSegments with every slot taken: %v (listings take no slot)", err)
	}
	close(hold.release)
	if _, _, err := lo.LargeObject(ctx, "a"); err != nil {
		t.Fatal(err)
	}
}

// capabilities is a driver whose plain calls go to one driver and whose
// LargeObjects capability is another's.
type capabilities struct {
	Driver
	*largeObjectStore
}

func TestReadAtMost(t *testing.T) {
	for _, c := range []struct {
		body        string
		size, limit int64
		want        string
		tooLarge    bool
	}{
		{"hello", 5, 10, "hello", false},
		{"hello", -1, 10, "hello", false},
		{"hello", 3, 10, "hello", false}, // longer than the store said
		{"hello", 9, 10, "hello", false}, // shorter
		{"", 0, 10, "", false},
		{"hello", 5, 5, "hello", false},
		{"hello world", 11, 4, "", true},
		{"hello world", 4, 4, "", true}, // said to fit, but does not
		{"hello world", -1, 4, "", true},
	} {
		got, err := ReadAtMost(strings.NewReader(c.body), c.size, c.limit)
		if c.tooLarge {
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("ReadAtMost(%q, size %d, limit %d) = %q, %v; want ErrTooLarge", c.body, c.size, c.limit, got, err)
			}
			continue
		}
		if err != nil || string(got) != c.want {
			t.Errorf("ReadAtMost(%q, size %d, limit %d) = %q, %v; want %q", c.body, c.size, c.limit, got, err, c.want)
		}
	}
}
