// Package filesystem is the storage driver for distribution's filesystem
// driver: keys are paths below a root directory.
package filesystem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/regsweep/regsweep/storage"
)

// DefaultRoot is distribution's default rootdirectory.
const DefaultRoot = "/var/lib/registry"

// Driver reads and deletes below Root.
type Driver struct {
	root        string
	concurrency int
	reqs        *storage.Requests
}

var (
	_ storage.Driver     = (*Driver)(nil)
	_ storage.DirRemover = (*Driver)(nil)
)

// New opens root. concurrency bounds parallel directory reads and deletes.
// The root must exist: a mistyped root would otherwise look like an empty
// registry.
func New(root string, concurrency int, reqs *storage.Requests) (*Driver, error) {
	if root == "" {
		root = DefaultRoot
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &storage.PathError{Op: "open", Driver: "filesystem", Key: abs, Err: fmt.Errorf("root directory does not exist: %w", storage.ErrNotFound)}
		}
		return nil, &storage.PathError{Op: "open", Driver: "filesystem", Key: abs, Err: translate(err)}
	}
	if !st.IsDir() {
		return nil, &storage.PathError{Op: "open", Driver: "filesystem", Key: abs, Err: errors.New("root is not a directory")}
	}
	if concurrency < 1 {
		concurrency = 1
	}
	return &Driver{root: abs, concurrency: concurrency, reqs: reqs}, nil
}

func (d *Driver) Name() string     { return "filesystem" }
func (d *Driver) Location() string { return "filesystem://" + d.root }

// Root is the absolute root directory.
func (d *Driver) Root() string { return d.root }

func (d *Driver) fullPath(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || path.Clean(key) != strings.TrimSuffix(key, "/") || strings.Contains(key, "\x00") {
		return "", fmt.Errorf("invalid key %q", key)
	}
	for _, part := range strings.Split(key, "/") {
		if part == ".." {
			return "", fmt.Errorf("invalid key %q", key)
		}
	}
	return filepath.Join(d.root, filepath.FromSlash(key)), nil
}

func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w: %v", storage.ErrNotFound, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: %v", storage.ErrAccessDenied, err)
	}
	return err
}

func (d *Driver) pathErr(op, key string, err error) error {
	return &storage.PathError{Op: op, Driver: "filesystem", Key: key, Err: translate(err)}
}

// Walk reads directories with up to concurrency readers and hands entries
// to fn in the caller's goroutine.
func (d *Driver) Walk(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	dirKey, namePrefix := "", prefix
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		dirKey, namePrefix = prefix[:i], prefix[i+1:]
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	queue := &dirQueue{}
	queue.cond = sync.NewCond(&queue.mu)
	queue.push(dirJob{key: dirKey, filter: namePrefix, top: true})
	found := make(chan storage.ObjectInfo, 1024)
	g, gctx := errgroup.WithContext(ctx)
	context.AfterFunc(gctx, queue.abort)
	for range d.concurrency {
		g.Go(func() error {
			for {
				job, ok := queue.pop()
				if !ok {
					return gctx.Err()
				}
				err := d.readDir(gctx, job, queue, found)
				queue.done()
				if err != nil {
					return err
				}
			}
		})
	}
	var walkErr error
	go func() {
		walkErr = g.Wait()
		close(found)
	}()
	var fnErr error
	for oi := range found {
		if fnErr != nil {
			continue
		}
		if fnErr = fn(oi); fnErr != nil {
			cancel()
		}
	}
	if fnErr != nil {
		return fnErr
	}
	if walkErr != nil && !errors.Is(walkErr, context.Canceled) {
		return walkErr
	}
	return ctx.Err()
}

type dirJob struct {
	key, filter string
	top         bool
}

// dirQueue is the work list of a parallel walk: it ends when it is empty
// and no reader can add to it any more.
type dirQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	jobs    []dirJob
	active  int
	aborted bool
}

func (q *dirQueue) push(j dirJob) {
	q.mu.Lock()
	q.jobs = append(q.jobs, j)
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *dirQueue) pop() (dirJob, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.jobs) == 0 && q.active > 0 && !q.aborted {
		q.cond.Wait()
	}
	if len(q.jobs) == 0 || q.aborted {
		q.cond.Broadcast()
		return dirJob{}, false
	}
	j := q.jobs[len(q.jobs)-1]
	q.jobs = q.jobs[:len(q.jobs)-1]
	q.active++
	return j, true
}

func (q *dirQueue) done() {
	q.mu.Lock()
	q.active--
	q.mu.Unlock()
	q.cond.Broadcast()
}

func (q *dirQueue) abort() {
	q.mu.Lock()
	q.aborted = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

func (d *Driver) readDir(ctx context.Context, job dirJob, queue *dirQueue, found chan<- storage.ObjectInfo) error {
	dir := d.root
	if job.key != "" {
		dir = filepath.Join(d.root, filepath.FromSlash(job.key))
	}
	d.reqs.Add(storage.OpList)
	entries, err := os.ReadDir(dir)
	if err != nil {
		// A directory that vanished between listing its parent and reading
		// it was deleted concurrently: it holds nothing now. The starting
		// directory may simply not exist yet.
		if errors.Is(err, fs.ErrNotExist) || (job.top && errors.Is(err, syscall.ENOTDIR)) {
			return nil
		}
		return d.pathErr("list", job.key, err)
	}
	for _, e := range entries {
		if job.filter != "" && !strings.HasPrefix(e.Name(), job.filter) {
			continue
		}
		childKey := e.Name()
		if job.key != "" {
			childKey = job.key + "/" + e.Name()
		}
		if e.IsDir() {
			queue.push(dirJob{key: childKey})
			continue
		}
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return d.pathErr("list", childKey, err)
		}
		select {
		case found <- storage.ObjectInfo{Key: childKey, Size: info.Size(), ModTime: info.ModTime()}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (d *Driver) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	p, err := d.fullPath(key)
	if err != nil {
		return storage.ObjectInfo{}, d.pathErr("stat", key, err)
	}
	d.reqs.Add(storage.OpHead)
	st, err := os.Stat(p)
	if err != nil {
		return storage.ObjectInfo{}, d.pathErr("stat", key, err)
	}
	if st.IsDir() {
		return storage.ObjectInfo{}, d.pathErr("stat", key, fmt.Errorf("%w: is a directory", storage.ErrNotFound))
	}
	return storage.ObjectInfo{Key: key, Size: st.Size(), ModTime: st.ModTime()}, nil
}

func (d *Driver) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	p, err := d.fullPath(key)
	if err != nil {
		return nil, d.pathErr("get", key, err)
	}
	d.reqs.Add(storage.OpGet)
	f, err := os.Open(p)
	if err != nil {
		return nil, d.pathErr("get", key, err)
	}
	defer f.Close()
	size := int64(-1)
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	b, err := storage.ReadAtMost(f, size, max)
	if err != nil {
		return nil, d.pathErr("get", key, err)
	}
	return b, nil
}

// Put writes through a temporary file and a rename, so a reader never
// sees half an object.
func (d *Driver) Put(ctx context.Context, key string, data []byte) error {
	return d.write("put", key, data, os.Rename)
}

// Create is Put unless key exists: the complete file is hard-linked into
// place, which fails if the name is taken, where a rename would replace it.
func (d *Driver) Create(ctx context.Context, key string, data []byte) error {
	return d.write("create", key, data, func(tmp, p string) error {
		err := os.Link(tmp, p)
		os.Remove(tmp)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %w", storage.ErrExists, err)
		}
		return err
	})
}

// write writes data to a temporary file beside key's and moves it into
// place with place, so no reader sees part of it.
func (d *Driver) write(op, key string, data []byte, place func(tmp, p string) error) error {
	p, err := d.fullPath(key)
	if err != nil {
		return d.pathErr(op, key, err)
	}
	d.reqs.Add(storage.OpPut)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return d.pathErr(op, key, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".regsweep-*")
	if err != nil {
		return d.pathErr(op, key, err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = place(tmp.Name(), p)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return d.pathErr(op, key, werr)
	}
	return nil
}

func (d *Driver) Delete(ctx context.Context, keys []string) ([]storage.DeleteResult, error) {
	var mu sync.Mutex
	var results []storage.DeleteResult
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(d.concurrency)
	for _, key := range keys {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			p, err := d.fullPath(key)
			if err == nil {
				d.reqs.Add(storage.OpDelete)
				err = os.Remove(p)
			}
			if err != nil {
				mu.Lock()
				results = append(results, storage.DeleteResult{Key: key, Err: d.pathErr("delete", key, err)})
				mu.Unlock()
			}
			return nil
		})
	}
	g.Wait()
	if err := ctx.Err(); err != nil {
		return results, err
	}
	return results, nil
}

// RemoveEmptyDirs removes every empty directory below prefix (a directory
// key), deepest first, and prefix itself when it ends empty. A directory
// that is not empty is left alone: only an emptied tree goes.
func (d *Driver) RemoveEmptyDirs(ctx context.Context, prefix string) error {
	prefix = strings.TrimSuffix(prefix, "/")
	top, err := d.fullPath(prefix)
	if err != nil {
		return d.pathErr("rmdir", prefix, err)
	}
	var dirs []string
	err = filepath.WalkDir(top, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return d.pathErr("rmdir", prefix, err)
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, dir := range dirs {
		if err := ctx.Err(); err != nil {
			return err
		}
		d.reqs.Add(storage.OpDelete)
		if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
			return d.pathErr("rmdir", prefix, err)
		}
	}
	return nil
}

var _ storage.Streamer = (*Driver)(nil)

// Open streams a file.
func (d *Driver) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := d.fullPath(key)
	if err != nil {
		return nil, d.pathErr("get", key, err)
	}
	d.reqs.Add(storage.OpGet)
	f, err := os.Open(p)
	if err != nil {
		return nil, d.pathErr("get", key, err)
	}
	return f, nil
}
