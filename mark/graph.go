package mark

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/regsweep/regsweep/blobindex"
	"github.com/regsweep/regsweep/manifest"
	"github.com/regsweep/regsweep/storage"
)

// The graph holds every manifest of a run, parsed once, with digests
// interned as small ids: a registry has millions of references, and a
// digest string costs 87 bytes where an id costs 4.

type nodeState uint8

const (
	stateQueued  nodeState = iota + 1
	stateOK                // parsed
	stateMissing           // not in storage
	stateBad               // unparseable, or content that is not its digest
)

// node is one manifest. Its ids are its children, then its blobs, then
// the foreign ones among them, in one slice: a registry has a node for
// every manifest, and three slices would make each twice the size.
type node struct {
	state     nodeState
	subject   uint32 // noID when none
	nChildren uint32
	nForeign  uint32
	ids       []uint32
	err       error // why a stateBad node is bad
}

func (n node) children() []uint32 { return n.ids[:n.nChildren] }
func (n node) blobs() []uint32    { return n.ids[n.nChildren : uint32(len(n.ids))-n.nForeign] }
func (n node) foreign() []uint32  { return n.ids[uint32(len(n.ids))-n.nForeign:] }

// noID is reserved: id 0 names no digest.
const noID = 0

type graph struct {
	mu sync.Mutex // held by the loader around table access
	// A stored blob's id is its position in the inventory's blob map plus
	// one: the inventory already holds every digest in storage, and a
	// second table of them would double the mark's memory. Digests storage
	// lacks (dangling links, missing references) get the ids after those.
	blobs  *blobindex.Index
	stored uint32 // ids 1..stored are blobs
	shape  blobindex.Shape
	extra  *blobindex.Map[uint32]
	names  []digest.Digest // of ids above stored
	// nodes holds the ids wanted as manifests, a tenth of the blobs: a
	// slice by id would hold a pointer for every blob.
	// Nodes are values in the map: a pointer to each would cost an
	// allocation a manifest.
	nodes map[uint32]node
	next  uint32 // the id intern gives next

	pending []uint32 // wanted, not loaded yet
	// readAll is set while a mark of a later walk loads (Extend): the
	// index is an earlier walk's, so a digest it lacks may have been
	// pushed since and is read, and one found missing before is read
	// again (reread holds those already read again this time).
	readAll bool
	reread  map[uint32]bool
	// subjects makes a manifest's subject one to load too
	// (Options.FollowSubjects).
	subjects bool
}

// newGraph compacts blobs: its IDs are ids from here on, and nothing
// writes it while the graph is in use.
func newGraph(blobs *blobindex.Index) *graph {
	blobs.Compact()
	stored := uint32(blobs.Indexed())
	return &graph{blobs: blobs, shape: blobs.Shape(), stored: stored, extra: blobindex.NewMap[uint32](),
		nodes: map[uint32]node{}, next: stored + 1}
}

func (g *graph) intern(d digest.Digest) uint32 {
	if id, ok := g.find(d); ok {
		return id
	}
	id := g.next
	g.next++
	g.extra.Set(d, id)
	g.names = append(g.names, d)
	return id
}

// find returns the id of an interned digest.
func (g *graph) find(d digest.Digest) (uint32, bool) {
	g.checkBlobs()
	if id, ok := g.blobs.ID(d); ok {
		return uint32(id) + 1, true
	}
	return g.extra.Get(d)
}

// checkBlobs: ids are positions only while the blob map keeps its shape.
func (g *graph) checkBlobs() { g.blobs.KeepsIDs(g.shape) }

func (g *graph) digest(id uint32) digest.Digest {
	g.checkBlobs()
	if id > g.stored {
		return g.names[id-g.stored-1]
	}
	return g.blobs.Digest(blobindex.ID(id - 1))
}

// set returns the set of the digests with these ids, in the sorted form.
func (g *graph) set(ids []uint32) *blobindex.Set {
	g.checkBlobs()
	stored := make([]blobindex.ID, 0, len(ids))
	var others []digest.Digest
	for _, id := range ids {
		if id > g.stored {
			others = append(others, g.names[id-g.stored-1])
		} else {
			stored = append(stored, blobindex.ID(id-1))
		}
	}
	return blobindex.SetOf(g.blobs, stored, others)
}

// addTo puts the digest with this id in s.
func (g *graph) addTo(s *blobindex.Set, id uint32) {
	if id > g.stored {
		s.Add(g.digest(id))
	} else {
		s.AddID(blobindex.ID(id - 1))
	}
}

// want interns d as a manifest to load. A digest the index does not list
// is missing without a read: the walk is what the sweep acts on; but see
// readAll.
func (g *graph) want(d digest.Digest) uint32 {
	id := g.intern(d)
	n, known := g.nodes[id]
	switch {
	case !known && (g.readAll || g.blobs.Has(d)):
		g.queue(id)
	case !known:
		g.nodes[id] = node{state: stateMissing}
	case n.state == stateMissing && g.readAll && !g.reread[id]:
		// Missing at an earlier walk is no answer now: only what was read
		// and parsed is kept.
		g.reread[id] = true
		g.queue(id)
	}
	return id
}

func (g *graph) queue(id uint32) {
	g.nodes[id] = node{state: stateQueued}
	g.pending = append(g.pending, id)
}

type loaded struct {
	id    uint32
	m     *manifest.Manifest
	state nodeState
	err   error
}

// load reads and parses every pending manifest, then the children they
// list, until nothing is pending.
func (g *graph) load(ctx context.Context, src Source, concurrency int) error {
	for len(g.pending) > 0 {
		frontier := g.pending
		g.pending = nil
		if err := g.loadRound(ctx, src, concurrency, frontier); err != nil {
			return err
		}
	}
	return nil
}

func (g *graph) loadRound(ctx context.Context, src Source, concurrency int, frontier []uint32) error {
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(concurrency)
	results := make(chan loaded, concurrency)
	var readErr error
	go func() {
		defer close(results)
		for _, id := range frontier {
			if ectx.Err() != nil {
				break
			}
			g.mu.Lock()
			d := g.digest(id)
			g.mu.Unlock()
			eg.Go(func() error {
				r, err := fetch(ectx, src, id, d)
				if err != nil {
					return err
				}
				select {
				case results <- r:
					return nil
				case <-ectx.Done():
					return ectx.Err()
				}
			})
		}
		readErr = eg.Wait()
	}()
	var inconsistent error
	for r := range results {
		g.mu.Lock()
		if err := g.store(r); err != nil && inconsistent == nil {
			inconsistent = err
		}
		g.mu.Unlock()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(readErr, inconsistent)
}

// fetch reads and parses one manifest. Only errors that end the run are
// returned; a missing or bad manifest is a result.
func fetch(ctx context.Context, src Source, id uint32, d digest.Digest) (loaded, error) {
	body, err := src.Manifest(ctx, d)
	var mismatch *DigestMismatchError
	switch {
	case err == nil:
		m, perr := manifest.Parse(body)
		if perr != nil {
			return loaded{id: id, state: stateBad, err: perr}, nil
		}
		return loaded{id: id, state: stateOK, m: m}, nil
	case storage.IsNotFound(err):
		return loaded{id: id, state: stateMissing, err: err}, nil
	case errors.As(err, &mismatch), errors.Is(err, storage.ErrTooLarge):
		return loaded{id: id, state: stateBad, err: err}, nil
	case ctx.Err() != nil:
		return loaded{}, ctx.Err()
	default:
		return loaded{}, fmt.Errorf("reading manifest %s: %w", d, err)
	}
}

func (g *graph) store(r loaded) error {
	switch r.state {
	case stateMissing:
		g.nodes[r.id] = node{state: stateMissing}
		if g.readAll {
			return nil // read because the walk could not say
		}
		// The walk listed this blob (or it would not have been read), yet
		// storage says it is gone: storage changed after the walk, and no
		// decision made from that walk can be trusted.
		return fmt.Errorf("manifest %s was listed by the walk but reading it says it does not exist (is the registry still writing?): %w", g.digest(r.id), r.err)
	case stateBad:
		g.nodes[r.id] = node{state: stateBad, err: r.err}
		return nil
	}
	n := node{state: stateOK, nChildren: uint32(len(r.m.Children)), nForeign: uint32(len(r.m.ForeignBlobs)),
		ids: make([]uint32, 0, len(r.m.Children)+len(r.m.Blobs)+len(r.m.ForeignBlobs))}
	for _, d := range r.m.Children {
		n.ids = append(n.ids, g.want(d))
	}
	for _, d := range r.m.Blobs {
		n.ids = append(n.ids, g.intern(d))
	}
	for _, d := range r.m.ForeignBlobs {
		n.ids = append(n.ids, g.intern(d))
	}
	if r.m.Subject != "" {
		if g.subjects {
			n.subject = g.want(r.m.Subject)
		} else {
			n.subject = g.intern(r.m.Subject)
		}
	}
	g.nodes[r.id] = n
	return nil
}
