package storage

import (
	"net/http"
	"sync/atomic"
)

// Op is a kind of storage request, as reports count them.
type Op int

const (
	OpList Op = iota
	OpGet
	OpHead
	OpPut
	OpDelete
	numOps
)

var opNames = [numOps]string{"list", "get", "head", "put", "delete"}

func (o Op) String() string { return opNames[o] }

// Requests counts the requests a run made, by operation. Drivers count
// where the requests happen (an HTTP round trip, a directory read), because
// one Walk is many listing pages. Safe for concurrent use; a nil *Requests
// counts nothing.
type Requests struct {
	n [numOps]atomic.Int64
}

// Add counts one request.
func (r *Requests) Add(op Op) {
	if r != nil {
		r.n[op].Add(1)
	}
}

// Snapshot returns the counts keyed by the names reports use:
// list, get, head, put, delete.
func (r *Requests) Snapshot() map[string]int64 {
	m := make(map[string]int64, numOps)
	for op := Op(0); op < numOps; op++ {
		if r != nil {
			m[op.String()] = r.n[op].Load()
		} else {
			m[op.String()] = 0
		}
	}
	return m
}

// Total is the sum over all operations.
func (r *Requests) Total() int64 {
	var t int64
	for op := Op(0); op < numOps && r != nil; op++ {
		t += r.n[op].Load()
	}
	return t
}

// CountingTransport counts each HTTP request by the operation it performs,
// classified by classify.
func CountingTransport(next http.RoundTripper, r *Requests, classify func(*http.Request) Op) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		r.Add(classify(req))
		return next.RoundTrip(req)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
