// Package manifestcache keeps manifest blobs on local disk by digest,
// across runs, in append-only pack files.
//
// A first run reads some ten thousand manifests; one file each cost more
// CPU in open, write, chmod and rename calls than reading them over the
// network did. A pack is one file a run appends every new manifest to, and
// renames into place when it closes, so a reader only ever opens whole
// packs and a run killed part way leaves a temporary file (removed by a
// later run) and no half pack.
//
// Content is verified against its digest on every read: a corrupt or
// truncated pack, or another process's stray file, costs a cache miss and
// never a wrong manifest.
//
// It owns the cache directory and its pack format. It may not read or
// write registry storage: gc puts it in front of the manifest reads.
package manifestcache

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// header opens every pack; a file without it is not read.
const header = "regsweep manifest pack 1\n"

const (
	packSuffix = ".pack"
	tempPrefix = ".pack-"
	// maxPacks is how many packs a closing run leaves before it merges them
	// into one: each run that read something new adds a pack.
	maxPacks = 8
	// staleTemp is the age after which a temporary pack is taken to be left
	// by a killed run. Generous: a live run keeps its file open until it
	// ends, and one that loses it only loses its cache writes.
	staleTemp = 24 * time.Hour
	// maxOpenPacks is how many packs Open keeps open; with more (runs
	// killed after committing, merges that failed) it merges them first,
	// two files at a time, so that a cache never uses up file descriptors.
	maxOpenPacks = 64
	// maxHeader bounds a record's header line: a digest (an algorithm and
	// up to 128 hex digits), a space, a length and a newline.
	maxHeader = 256
	// maxRecord bounds a record's length field, so that a corrupt one
	// cannot make the index claim the rest of the disk.
	maxRecord = 16 << 20 // four times distribution's largest manifest
)

// location is 16 bytes and an index key 16 more: the index is held for
// the whole run, one entry per manifest.
type location struct {
	pack   uint16 // index in Cache.packs
	header uint16 // length of the record's header line, before off
	size   uint32
	off    int64 // of the content
}

// Cache is a manifest cache in one directory. It is safe for concurrent use;
// several processes may share a directory.
type Cache struct {
	dir string

	mu      sync.RWMutex
	index   map[indexKey]location
	packs   []*os.File    // read side; the last is this run's, once written to
	names   []string      // packs' base names (this run's is its temporary name)
	out     *bufio.Writer // appends to this run's pack
	outErr  error         // why this run's pack was given up
	outPack int           // -1 until the first Put
	outEnd  int64         // offset at the end of what was written (the file holds all but out.Buffered())
}

// indexKey is half a SHA-256 of a digest's text: any algorithm's digest in
// 16 bytes. Two digests sharing one would only cost misses, as every read
// is verified against the digest asked for.
type indexKey [16]byte

func keyOf(d digest.Digest) indexKey {
	h := sha256.Sum256([]byte(d))
	return indexKey(h[:16])
}

// Open opens (creating, mode 0700) the cache in dir and indexes its packs.
// Temporary packs older than a day, left by killed runs, are removed.
func Open(dir string) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("manifest cache: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("manifest cache: %w", err)
	}
	c := &Cache{dir: dir, index: make(map[indexKey]location), outPack: -1}
	var names []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, tempPrefix):
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTemp {
				os.Remove(filepath.Join(dir, name))
			}
		case strings.HasSuffix(name, packSuffix) && e.Type().IsRegular():
			names = append(names, name)
		}
	}
	// Names begin with their creation time: in this order a later copy of
	// a digest replaces an earlier one, so a record that went bad is
	// shadowed by its re-read.
	slices.Sort(names)
	if len(names) > maxOpenPacks {
		if merged, err := mergePacks(dir, names); err == nil {
			names = []string{merged}
		} else {
			names = names[len(names)-maxOpenPacks:] // the newest; the rest are misses
		}
	}
	for _, name := range names {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			continue // removed by another run's merge since the listing, or unreadable: misses
		}
		pack := uint16(len(c.packs))
		if scanPack(f, false, func(d digest.Digest, loc location, _ []byte) {
			loc.pack = pack
			c.index[keyOf(d)] = loc
		}) != nil {
			f.Close()
			continue
		}
		c.packs = append(c.packs, f)
		c.names = append(c.names, name)
	}
	return c, nil
}

// scanPack calls add for every record of a pack, up to the first one
// that is malformed or cut short (a pack is otherwise only ever whole):
// what follows it can never be read, by Open or by a merge, which drops
// it with the pack. With withContent, add is also given the record's
// content (good until add returns); without, it is skipped. It fails only
// for a file that is not a pack.
func scanPack(f io.ReaderAt, withContent bool, add func(d digest.Digest, loc location, content []byte)) error {
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, 1<<62), 64<<10)
	line, err := r.ReadString('\n')
	if err != nil || line != header {
		return errors.New("not a manifest pack")
	}
	off := int64(len(line))
	var content []byte
	for {
		// ReadSlice, not ReadString: a corrupt pack with no newline must
		// not be read whole into memory.
		b, err := r.ReadSlice('\n')
		if err != nil {
			return nil
		}
		d, size, ok := parseRecordHeader(string(b))
		if !ok {
			return nil
		}
		loc := location{size: size, off: off + int64(len(b)), header: uint16(len(b))}
		if withContent {
			content = slices.Grow(content[:0], int(size))[:size]
			if _, err := io.ReadFull(r, content); err != nil {
				return nil
			}
		} else if n, err := r.Discard(int(size)); err != nil || n != int(size) {
			return nil
		}
		add(d, loc, content)
		off = loc.off + int64(size)
	}
}

// recordHeader is the line before a record's content: "<digest> <length>\n".
func recordHeader(d digest.Digest, size int) string {
	return string(d) + " " + strconv.Itoa(size) + "\n"
}

// parseRecordHeader parses a recordHeader.
func parseRecordHeader(line string) (digest.Digest, uint32, bool) {
	if len(line) > maxHeader {
		return "", 0, false
	}
	ds, ls, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
	if !ok {
		return "", 0, false
	}
	d, err := digest.Parse(ds)
	if err != nil {
		return "", 0, false
	}
	n, err := strconv.ParseUint(ls, 10, 32)
	if err != nil || n > maxRecord || strconv.FormatUint(n, 10) != ls {
		return "", 0, false
	}
	return d, uint32(n), true
}

// Has reports whether d is in the cache, without reading or verifying it.
func (c *Cache) Has(d digest.Digest) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, ok := c.index[keyOf(d)]
	return ok
}

// Get returns the cached content of d if it is there, at most maxSize
// bytes, and hashes to d.
func (c *Cache) Get(d digest.Digest, maxSize int64) ([]byte, bool) {
	if !d.Algorithm().Available() {
		return nil, false // it could not be verified (and hashing it would panic)
	}
	c.mu.RLock()
	loc, ok := c.index[keyOf(d)]
	var f *os.File
	var unflushed bool
	if ok {
		f = c.packs[loc.pack]
		unflushed = int(loc.pack) == c.outPack && loc.off+int64(loc.size) > c.outEnd-int64(c.out.Buffered())
	}
	c.mu.RUnlock()
	if !ok || int64(loc.size) > maxSize {
		return nil, false
	}
	if unflushed {
		c.mu.Lock()
		err := c.flushLocked()
		c.mu.Unlock()
		if err != nil {
			return nil, false
		}
	}
	b := make([]byte, loc.size)
	if _, err := f.ReadAt(b, loc.off); err != nil || d.Algorithm().FromBytes(b) != d {
		return nil, false
	}
	return b, true
}

// Put adds b, whose digest the caller has verified to be d, to this run's
// pack. A digest already there is not added again.
func (c *Cache) Put(d digest.Digest, b []byte) error {
	if len(b) > maxRecord {
		return fmt.Errorf("manifest cache: %s is too large to cache (%d bytes)", d, len(b))
	}
	// A malformed digest would end the pack's readable part at its record.
	if err := d.Validate(); err != nil {
		return fmt.Errorf("manifest cache: %w", err)
	}
	key := keyOf(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	if loc, ok := c.index[key]; ok && int(loc.pack) == c.outPack {
		return nil
	}
	if c.outErr != nil {
		return c.outErr
	}
	if c.outPack < 0 {
		if len(c.packs) > math.MaxUint16 { // a location's pack number
			return errors.New("manifest cache: too many packs")
		}
		if err := c.startPackLocked(); err != nil {
			return err
		}
	}
	rec := recordHeader(d, len(b))
	if _, err := c.out.WriteString(rec); err != nil {
		return c.failLocked(err)
	}
	if _, err := c.out.Write(b); err != nil {
		return c.failLocked(err)
	}
	c.index[key] = location{pack: uint16(c.outPack), size: uint32(len(b)), off: c.outEnd + int64(len(rec)), header: uint16(len(rec))}
	c.outEnd += int64(len(rec) + len(b))
	return nil
}

func (c *Cache) startPackLocked() error {
	f, err := os.CreateTemp(c.dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("manifest cache: %w", err)
	}
	if _, err := f.WriteString(header); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("manifest cache: %w", err)
	}
	c.outPack = len(c.packs)
	c.packs = append(c.packs, f)
	c.names = append(c.names, filepath.Base(f.Name()))
	c.out = bufio.NewWriterSize(f, 64<<10)
	c.outEnd = int64(len(header))
	return nil
}

func (c *Cache) flushLocked() error {
	if c.out == nil {
		return nil
	}
	if err := c.out.Flush(); err != nil {
		return c.failLocked(err)
	}
	return nil
}

// failLocked gives up this run's pack after a write error (a full disk):
// what it held is dropped from the index and later Puts fail at once.
func (c *Cache) failLocked(err error) error {
	if c.out != nil {
		f := c.packs[c.outPack]
		for k, loc := range c.index {
			if int(loc.pack) == c.outPack {
				delete(c.index, k)
			}
		}
		f.Close()
		os.Remove(f.Name())
		c.out = nil
		c.outErr = fmt.Errorf("manifest cache: gave up this run's pack: %w", err)
	}
	return fmt.Errorf("manifest cache: %w", err)
}

// Commit writes what this run has added so far into place as a pack, so
// that a run killed later keeps it; a later Put starts another pack.
func (c *Cache) Commit() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.commitLocked()
}

func (c *Cache) commitLocked() error {
	if c.out == nil {
		return nil
	}
	f := c.packs[c.outPack]
	if err := c.flushLocked(); err != nil {
		return err
	}
	final := filepath.Join(c.dir, packName())
	if err := os.Rename(f.Name(), final); err != nil {
		return c.failLocked(err)
	}
	// The open file is the renamed pack: reads of it go on.
	c.names[c.outPack] = filepath.Base(final)
	c.out, c.outPack = nil, -1
	return nil
}

// errClosed is what a Put after Close returns.
var errClosed = errors.New("manifest cache: closed")

// Close commits this run's pack, merges the packs into one when there are
// more than a few, and closes the cache; later Gets miss. The cache is
// still correct if Close is never called: what was not committed is then
// lost.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.outErr == errClosed {
		return nil
	}
	err := c.commitLocked()
	for _, f := range c.packs {
		f.Close()
	}
	if err == nil && len(c.packs) > maxPacks {
		_, err = mergePacks(c.dir, c.names)
	}
	c.packs, c.names, c.index = nil, nil, nil
	c.out, c.outPack, c.outErr = nil, -1, errClosed
	return err
}

// packName is a new pack's name: its creation time first, so that names
// sort in the order packs were made, then randomness against collisions.
func packName() string {
	var r [8]byte
	rand.Read(r[:])
	return fmt.Sprintf("%020d-%s%s", time.Now().UnixNano(), hex.EncodeToString(r[:]), packSuffix)
}

// mergePacks writes every record of the named packs in dir that verifies,
// each digest once, into one new pack, removes the packs it read and
// returns the new one's name. It holds two files open at a time. Another
// process that has a removed pack open reads on (an unlinked file stays
// readable); one that lists the directory mid-merge may index a digest
// twice, which is harmless, and a pack it commits meanwhile is not among
// the names.
func mergePacks(dir string, names []string) (string, error) {
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return "", fmt.Errorf("manifest cache: merging packs: %w", err)
	}
	w := bufio.NewWriterSize(f, 64<<10)
	w.WriteString(header)
	written := make(map[indexKey]struct{})
	var read []string
	for _, name := range names {
		pf, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		err = scanPack(pf, true, func(d digest.Digest, _ location, content []byte) {
			key := keyOf(d)
			if _, dup := written[key]; dup || d.Algorithm().FromBytes(content) != d {
				return
			}
			w.WriteString(recordHeader(d, len(content)))
			w.Write(content)
			written[key] = struct{}{}
		})
		pf.Close()
		if err == nil {
			read = append(read, name)
		}
	}
	werr := w.Flush()
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("manifest cache: merging packs: %w", err)
	}
	merged := packName()
	if err := os.Rename(f.Name(), filepath.Join(dir, merged)); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("manifest cache: merging packs: %w", err)
	}
	for _, name := range read {
		os.Remove(filepath.Join(dir, name))
	}
	return merged, nil
}
