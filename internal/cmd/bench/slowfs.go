package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// A network filesystem, simulated: a FUSE passthrough of a local tree that
// sleeps a fixed time in each request of the delayed kinds before serving
// it. Every program reads it through the kernel's ordinary VFS, so a Go
// binary's raw syscalls and a C library's calls pay the same: the kernel
// turns an open, a stat or a directory read into the same FUSE requests
// whoever makes them. Requests are served concurrently (go-fuse starts a
// reader for each one waiting), so a client with 32 calls in flight sees 32
// delays overlap, as with a network filesystem's parallel round trips, and
// a sequential client pays every delay in turn.

// fuseOps are the request kinds the mount counts, in print order.
var fuseOps = []string{"lookup", "getattr", "open", "opendir", "readdir", "readdirplus", "read"}

// defaultDelayedOps are a directory read, a stat and an open, as a network
// filesystem's round trips: the name lookups and attribute reads behind a
// stat or an open, the open itself and each directory read. Reads of file
// data are left out: both sides read each file they open once.
const defaultDelayedOps = "lookup,getattr,open,opendir,readdir,readdirplus"

type slowFS struct {
	fuse.RawFileSystem
	delay   time.Duration
	delayed [7]bool
	counts  [7]atomic.Int64
	slept   atomic.Int64 // nanoseconds spent in delays
}

// op counts a request and delays it. The delay is a nanosleep of the
// request's thread, not time.Sleep: the Go runtime rounds a sleep shorter
// than a millisecond up to one when it has nothing else to run.
func (s *slowFS) op(i int) {
	s.counts[i].Add(1)
	if !s.delayed[i] {
		return
	}
	start := time.Now()
	ts := syscall.NsecToTimespec(s.delay.Nanoseconds())
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
	s.slept.Add(int64(time.Since(start)))
}

func (s *slowFS) Lookup(c <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	s.op(0)
	return s.RawFileSystem.Lookup(c, h, name, out)
}

func (s *slowFS) GetAttr(c <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	s.op(1)
	return s.RawFileSystem.GetAttr(c, in, out)
}

func (s *slowFS) Open(c <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	s.op(2)
	return s.RawFileSystem.Open(c, in, out)
}

func (s *slowFS) OpenDir(c <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	s.op(3)
	return s.RawFileSystem.OpenDir(c, in, out)
}

func (s *slowFS) ReadDir(c <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	s.op(4)
	return s.RawFileSystem.ReadDir(c, in, out)
}

func (s *slowFS) ReadDirPlus(c <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	s.op(5)
	return s.RawFileSystem.ReadDirPlus(c, in, out)
}

func (s *slowFS) Read(c <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	s.op(6)
	return s.RawFileSystem.Read(c, in, buf)
}

// slowMount is one mount of a tree; a fresh mount starts with an empty
// client cache, as a network filesystem's client does after a remount.
type slowMount struct {
	fs  *slowFS
	srv *fuse.Server
	dir string
}

// mountSlow mounts src at dir. ttl is how long the kernel keeps a looked-up
// name and its attributes: longer than any run, so each name costs one
// lookup per mount, as with a network filesystem's client caches (NFS's
// attribute cache, CephFS's capabilities).
func mountSlow(src, dir string, delay, ttl time.Duration, delayed string) (*slowMount, error) {
	s := &slowFS{delay: delay}
	for _, name := range strings.Split(delayed, ",") {
		i := slices.Index(fuseOps, strings.TrimSpace(name))
		if i < 0 {
			return nil, fmt.Errorf("-fs-latency-ops: unknown request kind %q (%s)", name, strings.Join(fuseOps, ", "))
		}
		s.delayed[i] = true
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return nil, fmt.Errorf("the simulated network filesystem needs FUSE: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	syscall.Unmount(dir, syscall.MNT_DETACH) // a mount left by a bench that was killed
	root, err := fs.NewLoopbackRoot(src)
	if err != nil {
		return nil, err
	}
	s.RawFileSystem = fs.NewNodeFS(root, &fs.Options{EntryTimeout: &ttl, AttrTimeout: &ttl, NegativeTimeout: &ttl})
	// DirectMount: as root, mount(2) directly, with no fusermount binary.
	srv, err := fuse.NewServer(s, dir, &fuse.MountOptions{DirectMount: true, FsName: src, Name: "regsweep-bench", MaxBackground: 64})
	if err != nil {
		return nil, fmt.Errorf("mounting the simulated network filesystem at %s: %w", dir, err)
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		srv.Unmount()
		return nil, err
	}
	return &slowMount{fs: s, srv: srv, dir: dir}, nil
}

func (m *slowMount) unmount() error {
	err := m.srv.Unmount()
	m.srv.Wait()
	return err
}

// counts returns the requests served so far, by kind, how many of them
// were delayed and how long the delays took in all.
func (m *slowMount) counts() (map[string]int64, int64, time.Duration) {
	out := map[string]int64{}
	var delayed int64
	for i, name := range fuseOps {
		n := m.fs.counts[i].Load()
		out[name] = n
		if m.fs.delayed[i] {
			delayed += n
		}
	}
	return out, delayed, time.Duration(m.fs.slept.Load())
}

func fmtFuseOps(m map[string]int64) string {
	var parts []string
	for _, name := range fuseOps {
		parts = append(parts, fmt.Sprintf("%s %d", name, m[name]))
	}
	return strings.Join(parts, ", ")
}
