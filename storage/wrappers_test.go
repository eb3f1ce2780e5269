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
