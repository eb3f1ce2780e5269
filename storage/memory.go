package storage

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"io"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
)

// Memory is an in-memory driver for unit tests. Its clock is injectable so
// tests can age objects.
type Memory struct {
	mu      sync.Mutex
	objects map[string]memObject
	// sorted holds the keys in order while no write has changed them
	// (nil then): a listing takes its range by binary search, so that a
	// walk split into many listings does not scan every key each time.
	sorted []string
	now    func() time.Time
	reqs   *Requests
}

type memObject struct {
	data    []byte
	modTime time.Time
}

var _ Driver = (*Memory)(nil)

// NewMemory returns an empty store. now may be nil (time.Now); reqs may be
// nil.
func NewMemory(now func() time.Time, reqs *Requests) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{objects: make(map[string]memObject), now: now, reqs: reqs}
}

func (m *Memory) Name() string     { return "memory" }
func (m *Memory) Location() string { return "memory://" }

func (m *Memory) info(key string, o memObject) ObjectInfo {
	sum := md5.Sum(o.data)
	return ObjectInfo{Key: key, Size: int64(len(o.data)), ModTime: o.modTime, ETag: hex.EncodeToString(sum[:])}
}

func (m *Memory) Walk(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	return m.WalkAfter(ctx, prefix, "", fn)
}

var _ AfterWalker = (*Memory)(nil)

// WalkAfter is Walk over the keys after startAfter.
func (m *Memory) WalkAfter(ctx context.Context, prefix, startAfter string, fn func(ObjectInfo) error) error {
	m.reqs.Add(OpList)
	m.mu.Lock()
	if m.sorted == nil {
		m.sorted = make([]string, 0, len(m.objects))
		for k := range m.objects {
			m.sorted = append(m.sorted, k)
		}
		sort.Strings(m.sorted)
	}
	from := sort.SearchStrings(m.sorted, max(prefix, startAfter))
	var infos []ObjectInfo
	for _, k := range m.sorted[from:] {
		if !strings.HasPrefix(k, prefix) {
			break
		}
		if k > startAfter {
			infos = append(infos, m.info(k, m.objects[k]))
		}
	}
	m.mu.Unlock()
	for _, oi := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(oi); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (m *Memory) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	m.reqs.Add(OpHead)
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[key]
	if !ok {
		return ObjectInfo{}, &PathError{Op: "stat", Driver: "memory", Key: key, Err: ErrNotFound}
	}
	return m.info(key, o), nil
}

func (m *Memory) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	m.reqs.Add(OpGet)
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[key]
	if !ok {
		return nil, &PathError{Op: "get", Driver: "memory", Key: key, Err: ErrNotFound}
	}
	if int64(len(o.data)) > max {
		return nil, &PathError{Op: "get", Driver: "memory", Key: key, Err: ErrTooLarge}
	}
	return append([]byte(nil), o.data...), nil
}

func (m *Memory) Put(ctx context.Context, key string, data []byte) error {
	m.reqs.Add(OpPut)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objects[key] = memObject{data: append([]byte(nil), data...), modTime: m.now()}
	m.sorted = nil
	return nil
}

// Create is Put unless key exists (Creator).
func (m *Memory) Create(ctx context.Context, key string, data []byte) error {
	m.reqs.Add(OpPut)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objects[key]; ok {
		return &PathError{Op: "create", Driver: "memory", Key: key, Err: ErrExists}
	}
	m.objects[key] = memObject{data: append([]byte(nil), data...), modTime: m.now()}
	m.sorted = nil
	return nil
}

// PutAt stores an object with a given modification time (tests only).
func (m *Memory) PutAt(key string, data []byte, modTime time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objects[key] = memObject{data: append([]byte(nil), data...), modTime: modTime}
	m.sorted = nil
}

func (m *Memory) Delete(ctx context.Context, keys []string) ([]DeleteResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.reqs.Add(OpDelete)
	m.mu.Lock()
	defer m.mu.Unlock()
	var res []DeleteResult
	for _, k := range keys {
		if _, ok := m.objects[k]; !ok {
			res = append(res, DeleteResult{Key: k, Err: &PathError{Op: "delete", Driver: "memory", Key: k, Err: ErrNotFound}})
			continue
		}
		delete(m.objects, k)
		m.sorted = nil
	}
	return res, nil
}

// Keys returns every stored key, sorted (tests only).
func (m *Memory) Keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := make([]string, 0, len(m.objects))
	for k := range m.objects {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var _ DirLister = (*Memory)(nil)

// ListDir lists one level below prefix.
func (m *Memory) ListDir(ctx context.Context, prefix string, fn func(ObjectInfo, bool) error) error {
	m.reqs.Add(OpList)
	m.mu.Lock()
	dirs := map[string]bool{}
	var objects []ObjectInfo
	for k, o := range m.objects {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			dirs[prefix+rest[:i+1]] = true
		} else {
			objects = append(objects, m.info(k, o))
		}
	}
	m.mu.Unlock()
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		if err := fn(ObjectInfo{Key: d}, true); err != nil {
			return err
		}
	}
	for _, oi := range objects {
		if err := fn(oi, false); err != nil {
			return err
		}
	}
	return ctx.Err()
}

var _ Streamer = (*Memory)(nil)

// Open streams an object.
func (m *Memory) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	b, err := m.Get(ctx, key, math.MaxInt64)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}
