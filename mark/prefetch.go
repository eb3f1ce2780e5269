package mark

import (
	"context"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/blobindex"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/walker"
)

// Prefetch reads the manifests a walk finds into the local cache while the
// walk goes on, so that the reads of a first run overlap the listing
// instead of following it. It only fills the cache: Manifest still reads,
// verifies and reports every manifest the mark asks for, so a manifest the
// prefetch could not read (or verify) is read again there and its error
// reported then. Nothing read is kept in memory.
type Prefetch struct {
	src  *BlobSource
	ctx  context.Context
	stop context.CancelFunc

	mu       sync.Mutex
	idle     sync.Cond // signalled when the queue is empty and no read is in flight
	inflight int
	queue    []queuedManifest
	queued   *blobindex.Set // each manifest is queued once
	read     *blobindex.Set // what the prefetch read into the cache (a bit per blob)
	closed   bool
	wake     chan struct{}
	done     sync.WaitGroup
}

// queuedManifest is a manifest to read and its ID in the inventory's
// blobs.
type queuedManifest struct {
	d  digest.Digest
	id blobindex.ID
}

// Prefetch starts workers reading into the cache; Close stops them. Without
// a cache directory it returns nil, on which Add and Close do nothing. The
// source's counts tell what it read from what earlier runs cached.
func (s *BlobSource) Prefetch(ctx context.Context, workers int) *Prefetch {
	if s.cached() == nil {
		return nil
	}
	ctx, stop := context.WithCancel(ctx)
	p := &Prefetch{src: s, ctx: ctx, stop: stop, wake: make(chan struct{}, 1)}
	p.idle.L = &p.mu
	s.prefetch.Store(p)
	for range max(workers, 1) {
		p.done.Add(1)
		go p.work()
	}
	return p
}

// Add queues the manifest d that a revision link of inv names, unless it
// is queued already or inv did not list its blob (the mark then reads
// nothing: a missing manifest). It never waits for a read, so a walk can
// call it from the goroutine that takes its entries. inv's blobs must be
// all listed (walker.Options.OnBlobsListed has been called).
func (p *Prefetch) Add(inv *walker.Inventory, d digest.Digest) {
	if p == nil {
		return
	}
	id, ok := inv.Blobs.ID(d)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if p.queued == nil {
		p.queued = inv.NewBlobSet(true) // a bit per blob
		p.read = inv.NewBlobSet(true)
	}
	if !p.queued.AddID(id) {
		return
	}
	p.queue = append(p.queue, queuedManifest{d, id})
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Wait waits until everything queued so far has been read (or failed).
func (p *Prefetch) Wait() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for (len(p.queue) > 0 || p.inflight > 0) && !p.closed {
		p.idle.Wait()
	}
}

// Close drops what is still queued (the mark reads it) and waits for the
// reads in flight, so that the mark never reads a manifest at the same
// time as a prefetch. A second Close does nothing.
func (p *Prefetch) Close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.queue = nil
	p.idle.Broadcast()
	p.mu.Unlock()
	close(p.wake)
	p.done.Wait()
	p.stop()
}

func (p *Prefetch) work() {
	defer p.done.Done()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		if len(p.queue) == 0 {
			p.mu.Unlock()
			if _, open := <-p.wake; !open {
				return
			}
			continue
		}
		q := p.queue[len(p.queue)-1]
		p.queue = p.queue[:len(p.queue)-1]
		if len(p.queue) == 0 {
			p.queue = nil // let a drained queue's array go
		} else {
			// One signal may stand for many digests: pass it on. (Sent
			// under the lock: Close closes wake only once closed is set.)
			select {
			case p.wake <- struct{}{}:
			default:
			}
		}
		p.inflight++
		p.mu.Unlock()
		ok := p.fetch(q.d)
		p.mu.Lock()
		if ok {
			p.read.AddID(q.id)
		}
		p.inflight--
		if p.inflight == 0 && len(p.queue) == 0 {
			p.idle.Broadcast()
		}
		p.mu.Unlock()
	}
}

// fetch reads d into the cache unless it is there, and reports whether it
// read it. Errors are dropped: Manifest meets them again.
func (p *Prefetch) fetch(d digest.Digest) bool {
	if p.ctx.Err() != nil {
		return false
	}
	if p.src.cached().Has(d) {
		return false
	}
	key, err := layout.Path(layout.BlobData{Digest: d})
	if err != nil {
		return false
	}
	p.src.prefetched.Add(1)
	_, err = p.src.read(p.ctx, d, key)
	return err == nil
}

// fetched reports whether this prefetch read d into the cache.
func (p *Prefetch) fetched(d digest.Digest) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.read != nil && p.read.Has(d)
}
