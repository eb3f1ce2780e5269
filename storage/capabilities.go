package storage

import (
	"context"
)

// Capabilities are what a driver can do besides Driver, each nil when it
// cannot. There is one way to find them, CapabilitiesOf, and one way for a
// wrapper to pass them on, Capable: a wrapper hands each capability of the
// driver it wraps on through what it does to every call (read-only refuses
// the writes, the rate limit and the slots pace them, the retry retries
// them). A capability added here is offered by no wrapper until the
// wrapper's Capabilities says so, so it can never bypass one; the
// conformance test checks that every wrapper here passes every field on.
type Capabilities struct {
	AfterWalker      AfterWalker
	DirLister        DirLister
	MultipartUploads MultipartUploads
	LargeObjects     LargeObjects
	DirRemover       DirRemover
	Creator          Creator
	Streamer         Streamer
	Volumer          Volumer
}

// Capable is implemented by wrappers: the capabilities they offer, which
// are the wrapped driver's passed through what the wrapper does.
type Capable interface {
	Capabilities() Capabilities
}

// CapabilitiesOf is what d offers: a wrapper's Capabilities, or the
// methods of a driver's own method set. A wrapper that is not Capable
// offers only what its own method set has (a wrapper embedding the Driver
// interface has none), so it never lets a capability bypass it.
func CapabilitiesOf(d Driver) Capabilities {
	if c, ok := d.(Capable); ok {
		return c.Capabilities()
	}
	var c Capabilities
	c.AfterWalker, _ = d.(AfterWalker)
	c.DirLister, _ = d.(DirLister)
	c.MultipartUploads, _ = d.(MultipartUploads)
	c.LargeObjects, _ = d.(LargeObjects)
	c.DirRemover, _ = d.(DirRemover)
	c.Creator, _ = d.(Creator)
	c.Streamer, _ = d.(Streamer)
	c.Volumer, _ = d.(Volumer)
	return c
}

// MultipartOf is CapabilitiesOf(d).MultipartUploads, and whether d has it.
func MultipartOf(d Driver) (MultipartUploads, bool) {
	c := CapabilitiesOf(d).MultipartUploads
	return c, c != nil
}

// LargeObjectsOf is CapabilitiesOf(d).LargeObjects, and whether d has it.
func LargeObjectsOf(d Driver) (LargeObjects, bool) {
	c := CapabilitiesOf(d).LargeObjects
	return c, c != nil
}

// DirRemoverOf is CapabilitiesOf(d).DirRemover, and whether d has it.
func DirRemoverOf(d Driver) (DirRemover, bool) {
	c := CapabilitiesOf(d).DirRemover
	return c, c != nil
}

// CreatorOf is CapabilitiesOf(d).Creator, and whether d has it. A retried
// Create whose first attempt landed fails with ErrExists: callers read
// the key to tell.
func CreatorOf(d Driver) (Creator, bool) {
	c := CapabilitiesOf(d).Creator
	return c, c != nil
}

// StreamerOf is CapabilitiesOf(d).Streamer, and whether d has it. Each
// Open is paced and retried; the stream that follows is read as it comes.
func StreamerOf(d Driver) (Streamer, bool) {
	c := CapabilitiesOf(d).Streamer
	return c, c != nil
}

// DirListerOf is CapabilitiesOf(d).DirLister, and whether d has it.
func DirListerOf(d Driver) (DirLister, bool) {
	c := CapabilitiesOf(d).DirLister
	return c, c != nil
}

// AfterWalkerOf is CapabilitiesOf(d).AfterWalker, and whether d has it.
func AfterWalkerOf(d Driver) (AfterWalker, bool) {
	c := CapabilitiesOf(d).AfterWalker
	return c, c != nil
}

// VolumeOf is CapabilitiesOf(d).Volumer, and whether d has it.
func VolumeOf(d Driver) (Volumer, bool) {
	c := CapabilitiesOf(d).Volumer
	return c, c != nil
}

// WalkAfter is d's WalkAfter, or its Walk without the keys up to
// startAfter when it has none.
func WalkAfter(ctx context.Context, d Driver, prefix, startAfter string, fn func(ObjectInfo) error) error {
	if aw := CapabilitiesOf(d).AfterWalker; aw != nil {
		return aw.WalkAfter(ctx, prefix, startAfter, fn)
	}
	if startAfter == "" {
		return d.Walk(ctx, prefix, fn)
	}
	return d.Walk(ctx, prefix, func(oi ObjectInfo) error {
		if oi.Key <= startAfter {
			return nil
		}
		return fn(oi)
	})
}

// PassOn is the capabilities of inner as a wrapper that changes none of
// their calls passes them on, with its own listing as AfterWalker (a
// wrapper that changes Walk changes WalkAfter too, or split listings
// would bypass it). Test wrappers and observers use it.
func PassOn(inner Driver, self AfterWalker) Capabilities {
	c := CapabilitiesOf(inner)
	if c.AfterWalker != nil && self != nil {
		c.AfterWalker = self
	}
	return c
}
