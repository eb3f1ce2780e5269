package walker

import (
	"encoding/hex"
	"iter"

	"github.com/opencontainers/go-digest"
)

// DigestMap maps digests to values compactly: sha256 digests, nearly all
// of them, are kept as 32 raw bytes instead of a 71-byte string, which
// halves the memory of a mark over millions of blobs.
type DigestMap[V any] struct {
	sha256 map[[32]byte]V
	other  map[digest.Digest]V
}

// NewDigestMap returns an empty map.
func NewDigestMap[V any]() *DigestMap[V] {
	return &DigestMap[V]{sha256: make(map[[32]byte]V), other: make(map[digest.Digest]V)}
}

func sha256Key(d digest.Digest) ([32]byte, bool) {
	var k [32]byte
	if d.Algorithm() != digest.SHA256 {
		return k, false
	}
	enc := d.Encoded()
	if len(enc) != 64 {
		return k, false
	}
	if _, err := hex.Decode(k[:], []byte(enc)); err != nil {
		return k, false
	}
	return k, true
}

// Get returns the value for d.
func (m *DigestMap[V]) Get(d digest.Digest) (V, bool) {
	if k, ok := sha256Key(d); ok {
		v, found := m.sha256[k]
		return v, found
	}
	v, found := m.other[d]
	return v, found
}

// Has reports whether d is present.
func (m *DigestMap[V]) Has(d digest.Digest) bool {
	_, ok := m.Get(d)
	return ok
}

// Set stores v under d.
func (m *DigestMap[V]) Set(d digest.Digest, v V) {
	if k, ok := sha256Key(d); ok {
		m.sha256[k] = v
		return
	}
	m.other[d] = v
}

// Delete removes d.
func (m *DigestMap[V]) Delete(d digest.Digest) {
	if k, ok := sha256Key(d); ok {
		delete(m.sha256, k)
		return
	}
	delete(m.other, d)
}

// Len is the number of digests.
func (m *DigestMap[V]) Len() int { return len(m.sha256) + len(m.other) }

// All yields every digest and value, in no particular order.
func (m *DigestMap[V]) All() iter.Seq2[digest.Digest, V] {
	return func(yield func(digest.Digest, V) bool) {
		for k, v := range m.sha256 {
			if !yield(digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(k[:])), v) {
				return
			}
		}
		for d, v := range m.other {
			if !yield(d, v) {
				return
			}
		}
	}
}
