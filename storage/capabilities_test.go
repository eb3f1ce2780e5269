package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// fullStore is a memory store with every capability. Each method counts
// its calls, and with flaky each fails once with a transient error first.
type fullStore struct {
	*Memory
	mu    sync.Mutex
	calls map[string]int
	flaky bool
	fails map[string]bool
}

func newFullStore() *fullStore {
	return &fullStore{Memory: NewMemory(nil, nil), calls: map[string]int{}, fails: map[string]bool{}}
}

func (f *fullStore) note(method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[method]++
	if f.flaky && !f.fails[method] {
		f.fails[method] = true
		return fmt.Errorf("%s: %w", method, ErrTransient)
	}
	return nil
}

func (f *fullStore) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *fullStore) WalkAfter(ctx context.Context, prefix, after string, fn func(ObjectInfo) error) error {
	if err := f.note("WalkAfter"); err != nil {
		return err
	}
	return f.Memory.WalkAfter(ctx, prefix, after, fn)
}

func (f *fullStore) ListDir(ctx context.Context, prefix string, fn func(ObjectInfo, bool) error) error {
	if err := f.note("ListDir"); err != nil {
		return err
	}
	return f.Memory.ListDir(ctx, prefix, fn)
}

func (f *fullStore) WalkMultipartUploads(ctx context.Context, prefix string, fn func(MultipartUpload) error) error {
	return f.note("WalkMultipartUploads")
}

func (f *fullStore) AbortMultipartUpload(ctx context.Context, key, id string) error {
	return f.note("AbortMultipartUpload")
}

func (f *fullStore) LargeObject(ctx context.Context, key string) (ObjectInfo, string, error) {
	return ObjectInfo{Key: key}, "", f.note("LargeObject")
}

func (f *fullStore) WalkSegments(ctx context.Context, fn func(ObjectInfo) error) error {
	return f.note("WalkSegments")
}

func (f *fullStore) DeleteSegments(ctx context.Context, names []string) ([]DeleteResult, error) {
	return nil, f.note("DeleteSegments")
}

func (f *fullStore) RemoveEmptyDirs(context.Context, []string, func(string) bool) (int, error) {
	return 0, f.note("RemoveEmptyDirs")
}

func (f *fullStore) Create(ctx context.Context, key string, data []byte) error {
	if err := f.note("Create"); err != nil {
		return err
	}
	return f.Memory.Create(ctx, key, data)
}

func (f *fullStore) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := f.note("Open"); err != nil {
		return nil, err
	}
	return io.NopCloser(strings.NewReader("x")), nil
}

func (f *fullStore) Volume() (string, error) { return "vol", f.note("Volume") }

// capabilityCall is one method of a capability, called through c.
type capabilityCall struct {
	method string
	write  bool // it changes storage
	list   bool // a listing: no slot
	// request is false for what makes no request (a volume's name)
	noRequest bool
	invoke    func(ctx context.Context, c Capabilities) error
}

// capabilityCalls lists every method of every capability, by field.
var capabilityCalls = map[string][]capabilityCall{
	"AfterWalker": {{method: "WalkAfter", list: true, invoke: func(ctx context.Context, c Capabilities) error {
		return c.AfterWalker.WalkAfter(ctx, "k/", "", func(ObjectInfo) error { return nil })
	}}},
	"DirLister": {{method: "ListDir", list: true, invoke: func(ctx context.Context, c Capabilities) error {
		return c.DirLister.ListDir(ctx, "k/", func(ObjectInfo, bool) error { return nil })
	}}},
	"MultipartUploads": {
		{method: "WalkMultipartUploads", list: true, invoke: func(ctx context.Context, c Capabilities) error {
			return c.MultipartUploads.WalkMultipartUploads(ctx, "", func(MultipartUpload) error { return nil })
		}},
		{method: "AbortMultipartUpload", write: true, invoke: func(ctx context.Context, c Capabilities) error {
			return c.MultipartUploads.AbortMultipartUpload(ctx, "k/u", "id")
		}},
	},
	"LargeObjects": {
		{method: "LargeObject", invoke: func(ctx context.Context, c Capabilities) error {
			_, _, err := c.LargeObjects.LargeObject(ctx, "k/a")
			return err
		}},
		{method: "WalkSegments", list: true, invoke: func(ctx context.Context, c Capabilities) error {
			return c.LargeObjects.WalkSegments(ctx, func(ObjectInfo) error { return nil })
		}},
		{method: "DeleteSegments", write: true, invoke: func(ctx context.Context, c Capabilities) error {
			_, err := c.LargeObjects.DeleteSegments(ctx, []string{"s/1"})
			return err
		}},
	},
	"DirRemover": {{method: "RemoveEmptyDirs", write: true, invoke: func(ctx context.Context, c Capabilities) error {
		_, err := c.DirRemover.RemoveEmptyDirs(ctx, []string{"k/"}, func(string) bool { return false })
		return err
	}}},
	"Creator": {{method: "Create", write: true, invoke: func(ctx context.Context, c Capabilities) error {
		return c.Creator.Create(ctx, fmt.Sprintf("k/created-%p", &ctx), []byte("x"))
	}}},
	"Streamer": {{method: "Open", invoke: func(ctx context.Context, c Capabilities) error {
		rc, err := c.Streamer.Open(ctx, "k/a")
		if err == nil {
			rc.Close()
		}
		return err
	}}},
	"Volumer": {{method: "Volume", noRequest: true, invoke: func(ctx context.Context, c Capabilities) error {
		_, err := c.Volumer.Volume()
		return err
	}}},
}

// Every capability is in the table, so the checks below cover a new one
// as soon as it is added to Capabilities.
func TestCapabilityTableCoversEveryCapability(t *testing.T) {
	typ := reflect.TypeOf(Capabilities{})
	for i := range typ.NumField() {
		f := typ.Field(i)
		calls, ok := capabilityCalls[f.Name]
		if !ok {
			t.Errorf("capability %s is not in capabilityCalls", f.Name)
			continue
		}
		if want := f.Type.NumMethod(); len(calls) != want {
			t.Errorf("capability %s has %d methods, capabilityCalls calls %d", f.Name, want, len(calls))
		}
	}
}

func fieldsOf(c Capabilities) map[string]bool {
	v := reflect.ValueOf(c)
	out := map[string]bool{}
	for i := range v.NumField() {
		out[v.Type().Field(i).Name] = !v.Field(i).IsNil()
	}
	return out
}

// Every wrapper keeps every capability of what it wraps, and each
// behaviour applies to every capability's calls.
func TestEveryWrapperKeepsAndGuardsEveryCapability(t *testing.T) {
	ctx := context.Background()
	waits := 0
	var waitMu sync.Mutex
	countingWait := paced(func(context.Context) error { waitMu.Lock(); waits++; waitMu.Unlock(); return nil })
	wrappers := map[string]func(Driver) Driver{
		"ReadOnly":  ReadOnly,
		"Limit":     func(d Driver) Driver { return Limit(d, 2) },
		"Retry":     func(d Driver) Driver { return Retry(d, RetryPolicy{Attempts: 3, Sleep: noSleep}) },
		"RateLimit": func(d Driver) Driver { return wrap(d, countingWait) },
		"chain":     func(d Driver) Driver { return Limit(RateLimit(Retry(ReadOnly(d), DefaultRetry()), 1000), 4) },
	}
	for name, w := range wrappers {
		store := newFullStore()
		for i, f := range fieldsOf(CapabilitiesOf(store)) {
			if !f {
				t.Fatalf("the test store lacks %s", i)
			}
		}
		for field, has := range fieldsOf(CapabilitiesOf(w(store))) {
			if !has {
				t.Errorf("%s drops the capability %s", name, field)
			}
		}
	}

	t.Run("read-only refuses every write", func(t *testing.T) {
		store := newFullStore()
		store.Put(ctx, "k/a", []byte("x"))
		c := CapabilitiesOf(ReadOnly(store))
		for field, calls := range capabilityCalls {
			for _, cc := range calls {
				err := cc.invoke(ctx, c)
				switch {
				case cc.write && !errors.Is(err, ErrReadOnly):
					t.Errorf("%s.%s through ReadOnly: %v, want ErrReadOnly", field, cc.method, err)
				case cc.write && store.count(cc.method) != 0:
					t.Errorf("%s.%s through ReadOnly reached the store", field, cc.method)
				case !cc.write && err != nil:
					t.Errorf("%s.%s (a read) through ReadOnly: %v", field, cc.method, err)
				}
			}
		}
	})
	t.Run("the rate limit paces every call", func(t *testing.T) {
		store := newFullStore()
		store.Put(ctx, "k/a", []byte("x"))
		c := CapabilitiesOf(wrap(store, countingWait))
		for field, calls := range capabilityCalls {
			for _, cc := range calls {
				waitMu.Lock()
				before := waits
				waitMu.Unlock()
				if err := cc.invoke(ctx, c); err != nil {
					t.Errorf("%s.%s: %v", field, cc.method, err)
				}
				waitMu.Lock()
				paced := waits > before
				waitMu.Unlock()
				if !paced && !cc.noRequest {
					t.Errorf("%s.%s went past the rate limit", field, cc.method)
				}
			}
		}
	})
	t.Run("slots hold every call but listings", func(t *testing.T) {
		store := newFullStore()
		store.Put(ctx, "k/a", []byte("x"))
		s := slots(make(chan struct{}, 1))
		s <- struct{}{} // every slot taken
		c := CapabilitiesOf(wrap(store, s))
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		for field, calls := range capabilityCalls {
			for _, cc := range calls {
				err := cc.invoke(cancelled, c)
				switch {
				case cc.list || cc.noRequest:
					// A listing takes no slot (its consumer may read).
				case !errors.Is(err, context.Canceled) || store.count(cc.method) != 0:
					t.Errorf("%s.%s with every slot taken: %v, and it reached the store %d times", field, cc.method, err, store.count(cc.method))
				}
			}
		}
	})
	t.Run("the retry retries every call", func(t *testing.T) {
		store := newFullStore()
		store.Put(ctx, "k/a", []byte("x"))
		store.flaky = true
		c := CapabilitiesOf(Retry(store, RetryPolicy{Attempts: 3, Sleep: noSleep}))
		for field, calls := range capabilityCalls {
			for _, cc := range calls {
				if cc.noRequest {
					continue
				}
				if err := cc.invoke(ctx, c); err != nil {
					t.Errorf("%s.%s failing once through Retry: %v", field, cc.method, err)
				}
			}
		}
	})
}

// A wrapper that is not Capable offers only its own method set: a test
// wrapper embedding the Driver interface cannot let a capability bypass it.
func TestWrapperWithoutCapabilitiesOffersNone(t *testing.T) {
	type hiding struct{ Driver }
	for field, has := range fieldsOf(CapabilitiesOf(hiding{newFullStore()})) {
		if has {
			t.Errorf("a plain wrapper offers %s of what it wraps", field)
		}
	}
}
