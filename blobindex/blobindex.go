// Package blobindex owns the one index of a walk's blobs: every stored
// blob by digest, each with an ID once the walk has listed them all, and
// the sets and link maps that refer to blobs by that ID instead of by a
// 71-byte digest. A registry's collector holds a few of these per blob, so
// their size is its memory.
//
// The walker fills an index; mark, sweep and reports read it. IDs are a
// type of their own, so a position into one index cannot be taken for a
// count or for an ID of another index by accident, and every set and link
// map checks that the index still has the shape its IDs were taken in.
//
// It may not import anything of regsweep: it is the bottom of the tree.
package blobindex

// ID names a stored sha256 blob by its place in a Compacted index: the
// digests sort by their bytes and IDs count up from 0. IDs hold while the
// index is not written (Shape, KeepsIDs).
type ID uint32

// Blob is a blob's data object as storage holds it. Kept small: there are
// millions of blobs.
type Blob struct {
	Size    int64
	ModTime int64 // unix seconds
}

// Link is a link file: what the sweep needs of it.
type Link struct {
	ModTime int64 // unix seconds
}

// Index is a walk's blobs by digest.
type Index = Map[Blob]

// NewIndex returns an empty index.
func NewIndex() *Index { return NewMap[Blob]() }
