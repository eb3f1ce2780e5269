// Package filesystem is the storage driver for distribution's filesystem
// driver: keys are paths below a root directory.
//
// It owns the mapping of keys to paths and how a directory tree is read
// (symlinks followed, loops and links leaving the root refused). It may
// not interpret keys as registry data (walker and layout do).
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
		// it was deleted concurrently (by the registry, or by this run):
		// the walk saw it after the delete, as a listing started a moment
		// later would, and nothing below it can be missed, since nothing is
		// there any more. This is the one way a listing here ends short of
		// what it saw. The starting directory may simply not exist yet,
		// unless it is a dangling symlink.
		if job.top && errors.Is(err, fs.ErrNotExist) {
			if target, lerr := os.Readlink(dir); lerr == nil {
				return d.pathErr("list", job.key, dangling(target))
			}
		}
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
		info, err := d.entryInfo(childKey, e)
		switch {
		case err != nil:
			return err
		case info == nil:
			continue // deleted since the directory was read: see above
		case info.IsDir():
			queue.push(dirJob{key: childKey})
			continue
		}
		select {
		case found <- storage.ObjectInfo{Key: childKey, Size: info.Size(), ModTime: info.ModTime()}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// entryInfo classifies one directory entry as a directory or a regular
// file, following a symlink as distribution's driver does (it stats
// through links, so the registry serves a repository or a blob whose
// directory is a link to another volume). It returns nil for an entry
// deleted since its directory was read. Anything else is an error naming
// the key, never a skipped entry: a special file (fifo, socket, device),
// a dangling symlink, and a symlink loop, including a link to a
// directory above it, which the registry could not walk either.
func (d *Driver) entryInfo(key string, e fs.DirEntry) (fs.FileInfo, error) {
	t := e.Type()
	if t&fs.ModeSymlink == 0 {
		if !t.IsDir() && !t.IsRegular() {
			return nil, d.pathErr("list", key, unclassified(t))
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, d.pathErr("list", key, err)
		}
		return info, nil
	}
	p := filepath.Join(d.root, filepath.FromSlash(key))
	info, err := os.Stat(p)
	if err != nil {
		target, lerr := os.Readlink(p)
		switch {
		case errors.Is(lerr, fs.ErrNotExist):
			return nil, nil // the link itself is gone
		case errors.Is(err, syscall.ELOOP):
			return nil, d.pathErr("list", key, fmt.Errorf("symlink loop: the link to %q cannot be resolved (%v)", target, err))
		case errors.Is(err, fs.ErrNotExist):
			return nil, d.pathErr("list", key, dangling(target))
		}
		return nil, d.pathErr("list", key, err)
	}
	switch {
	case info.Mode().IsRegular():
		return info, nil
	case !info.IsDir():
		return nil, d.pathErr("list", key, unclassified(info.Mode()))
	}
	// A directory reached twice on one path is a loop. Every endless path
	// takes a link to a directory already on it, so checking links is
	// enough; the directories on the path are the key's own prefixes
	// (stat follows the links among them).
	for above := key; above != ""; {
		above = above[:max(strings.LastIndexByte(above, '/'), 0)]
		ai, err := os.Stat(filepath.Join(d.root, filepath.FromSlash(above)))
		if err == nil && os.SameFile(info, ai) {
			target, _ := os.Readlink(p)
			name := strconv.Quote(above)
			if above == "" {
				name = "the storage root"
			}
			return nil, d.pathErr("list", key, fmt.Errorf("symlink loop: the link to %q leads back to %s, a directory above it", target, name))
		}
	}
	return info, nil
}

// dangling is the error for a symlink whose target does not exist.
func dangling(target string) error {
	return fmt.Errorf("dangling symlink: its target %q does not exist", target)
}

// unclassified is the error for an entry that is neither a directory nor
// a regular file.
func unclassified(mode fs.FileMode) error {
	var kind string
	switch {
	case mode&fs.ModeNamedPipe != 0:
		kind = "a named pipe (fifo)"
	case mode&fs.ModeSocket != 0:
		kind = "a socket"
	case mode&fs.ModeDevice != 0:
		kind = "a device"
	default:
		kind = "a special file (" + mode.Type().String() + ")"
	}
	return fmt.Errorf("%s, not a regular file, a directory or a symlink to one: it cannot be classified", kind)
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
	if err := d.checkRegular("stat", key, st.Mode()); err != nil {
		return storage.ObjectInfo{}, err
	}
	return storage.ObjectInfo{Key: key, Size: st.Size(), ModTime: st.ModTime()}, nil
}

// checkRegular refuses what is no object: a directory is not found (as
// on an object store), a special file is an error.
func (d *Driver) checkRegular(op, key string, mode fs.FileMode) error {
	switch {
	case mode.IsRegular():
		return nil
	case mode.IsDir():
		return d.pathErr(op, key, fmt.Errorf("%w: is a directory", storage.ErrNotFound))
	}
	return d.pathErr(op, key, unclassified(mode))
}

// open opens a regular file for reading, through symlinks. A fifo is
// opened without blocking (a plain open would wait for a writer) and then
// refused.
func (d *Driver) open(op, key string) (*os.File, error) {
	p, err := d.fullPath(key)
	if err != nil {
		return nil, d.pathErr(op, key, err)
	}
	d.reqs.Add(storage.OpGet)
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, d.pathErr(op, key, err)
	}
	st, err := f.Stat()
	if err == nil {
		err = d.checkRegular(op, key, st.Mode())
	} else {
		err = d.pathErr(op, key, err)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (d *Driver) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	f, err := d.open("get", key)
	if err != nil {
		return nil, err
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

// RemoveEmptyDirs: see storage.DirRemover. It removes with rmdir(2),
// which removes only an empty directory, atomically: a directory a writer
// has just put a file in fails with ENOTEMPTY and stays, and a symlink
// fails with ENOTDIR and stays (os.Remove would unlink the link, whatever
// its target holds). Directories go deepest first, each level in
// parallel, so a parent is tried once its children are gone.
func (d *Driver) RemoveEmptyDirs(ctx context.Context, keys []string, keep func(dir string) bool) (int, error) {
	trees := map[string]bool{} // the directories given, whose empty subdirectories go too
	dirs := map[string]bool{}  // those and their parents, up to a kept one
	for _, k := range keys {
		dir := k
		if !strings.HasSuffix(dir, "/") {
			dir = dir[:strings.LastIndexByte(dir, '/')+1]
		}
		if _, err := d.fullPath(k); err != nil {
			return 0, d.pathErr("rmdir", k, err)
		}
		trees[dir] = true
		for dir != "" && !dirs[dir] && !keep(dir) {
			dirs[dir] = true
			dir = dir[:strings.LastIndexByte(dir[:len(dir)-1], '/')+1]
		}
	}
	byDepth := map[int][]string{}
	deepest := 0
	for dir := range dirs {
		n := strings.Count(dir, "/")
		byDepth[n] = append(byDepth[n], dir)
		deepest = max(deepest, n)
	}
	var removed atomic.Int64
	for depth := deepest; depth > 0; depth-- {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(d.concurrency)
		for _, dir := range byDepth[depth] {
			g.Go(func() error {
				if err := gctx.Err(); err != nil {
					return err
				}
				n, err := d.rmdir(filepath.Join(d.root, filepath.FromSlash(dir)), trees[dir])
				removed.Add(int64(n))
				if err != nil {
					return d.pathErr("rmdir", dir, err)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return int(removed.Load()), err
		}
	}
	return int(removed.Load()), ctx.Err()
}

// rmdir removes dir if it is empty, and, with tree, its empty
// subdirectories first when it is not. It returns how many directories it
// removed; a directory that is not empty, is gone, is no directory (a
// symlink) or is a mount point is left without an error.
func (d *Driver) rmdir(dir string, tree bool) (int, error) {
	d.reqs.Add(storage.OpDelete)
	err := syscall.Rmdir(dir)
	if err == nil {
		return 1, nil
	}
	if !tree || !(errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST)) {
		return 0, leftInPlace(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, leftInPlace(err)
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() { // a file, or a symlink: not followed
			continue
		}
		m, err := d.rmdir(filepath.Join(dir, e.Name()), true)
		n += m
		if err != nil {
			return n, err
		}
	}
	d.reqs.Add(storage.OpDelete)
	if err := syscall.Rmdir(dir); err != nil {
		return n, leftInPlace(err)
	}
	return n + 1, nil
}

// leftInPlace is nil for the errors that mean "this directory stays"
// (not empty, gone, not a directory, a mount point), err otherwise.
func leftInPlace(err error) error {
	for _, e := range []error{syscall.ENOTEMPTY, syscall.EEXIST, syscall.ENOENT, syscall.ENOTDIR, syscall.EBUSY} {
		if errors.Is(err, e) {
			return nil
		}
	}
	return err
}

var _ storage.Streamer = (*Driver)(nil)

// Open streams a file.
func (d *Driver) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	return d.open("get", key)
}
