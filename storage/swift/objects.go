package swift

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ncw/swift/v2"
	"golang.org/x/sync/errgroup"

	"github.com/regsweep/regsweep/storage"
)

const contentType = "application/octet-stream" // what distribution writes

// objectName maps a logical key to its object name: distribution's
// TrimLeft(TrimRight(prefix+"/files"+"/"+key, "/"), "/"), which is
// filesRoot+key for every valid key.
func (d *Driver) objectName(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") || strings.ContainsRune(key, 0) {
		return "", fmt.Errorf("invalid key %q", key)
	}
	return d.filesRoot + key, nil
}

// Walk lists [prefix/]files/<prefix> flat, with no delimiter, one page of
// up to 10,000 names per request. A DLO manifest lists with size 0 and the
// ETag of its own empty body; LargeObject reports its real size.
func (d *Driver) Walk(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	return d.walk(ctx, "list", prefix, d.filesRoot+prefix, func(name string) (string, bool) {
		return strings.CutPrefix(name, d.filesRoot)
	}, fn)
}

var _ storage.DirLister = (*Driver)(nil)

// ListDir lists one level below prefix with a delimiter listing: the
// walker takes the top of the registry from it.
func (d *Driver) ListDir(ctx context.Context, prefix string, fn func(storage.ObjectInfo, bool) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	listPrefix := d.filesRoot + prefix
	opts := &swift.ObjectsOpts{Prefix: listPrefix, Delimiter: '/', Limit: d.pageSize}
	last := ""
	err := d.conn.ObjectsWalk(ctx, d.container, opts, func(ctx context.Context, opts *swift.ObjectsOpts) (any, error) {
		objects, err := d.conn.Objects(ctx, d.container, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range objects {
			k, ok := strings.CutPrefix(o.Name, d.filesRoot)
			if !ok || !strings.HasPrefix(k, prefix) {
				return nil, fmt.Errorf("listing for prefix %q returned %q", listPrefix, o.Name)
			}
			if o.Name <= last {
				return nil, fmt.Errorf("the listing for prefix %q returned %q after %q: a page that repeats or goes back", listPrefix, o.Name, last)
			}
			last = o.Name
			if o.PseudoDirectory {
				err = fn(storage.ObjectInfo{Key: k}, true)
			} else {
				err = fn(storage.ObjectInfo{Key: k, Size: o.Bytes, ModTime: listingTime(o), ETag: o.Hash}, false)
			}
			if err != nil {
				return nil, fnError{err}
			}
		}
		return objects, nil
	})
	var fe fnError
	switch {
	case errors.As(err, &fe):
		return fe.err
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return d.pathErr("list", prefix, err)
	}
	return nil
}

// fnError marks an error returned by the caller's fn.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

func (d *Driver) walk(ctx context.Context, op, key, listPrefix string, mapName func(string) (string, bool), fn func(storage.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	opts := &swift.ObjectsOpts{Prefix: listPrefix, Limit: d.pageSize}
	// Swift pages by marker: each page starts after the last name of the
	// one before, in byte order. A name that does not sort after the one
	// before it (or after the marker) is a page that repeats or goes back:
	// the listing can no longer say what it has covered.
	last := ""
	err := d.conn.ObjectsWalk(ctx, d.container, opts, func(ctx context.Context, opts *swift.ObjectsOpts) (any, error) {
		objects, err := d.conn.Objects(ctx, d.container, opts)
		if err != nil {
			return nil, err
		}
		for _, o := range objects {
			k, ok := mapName(o.Name)
			if !ok || o.PseudoDirectory {
				return nil, fmt.Errorf("listing for prefix %q returned %q", listPrefix, o.Name)
			}
			if o.Name <= last {
				return nil, fmt.Errorf("the listing for prefix %q returned %q after %q: a page that repeats or goes back", listPrefix, o.Name, last)
			}
			last = o.Name
			if err := fn(storage.ObjectInfo{Key: k, Size: o.Bytes, ModTime: listingTime(o), ETag: o.Hash}); err != nil {
				return nil, fnError{err}
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		return objects, nil
	})
	var fe fnError
	switch {
	case errors.As(err, &fe):
		return fe.err
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return d.pathErr(op, key, err)
	}
	return nil
}

// listingTime keeps the listing's microseconds, which a HEAD reports in
// X-Timestamp, so that Walk and Stat agree on ModTime. (The library cuts
// the listing time to the second, and Last-Modified rounds up to the next
// second.)
func listingTime(o swift.Object) time.Time {
	s := strings.TrimSuffix(o.ServerLastModified, "Z")
	if t, err := time.Parse("2006-01-02T15:04:05.999999999", s); err == nil {
		return t.UTC()
	}
	return o.LastModified
}

// headTime prefers X-Timestamp (seconds with five decimals, the same
// instant a listing shows) over Last-Modified (rounded up to a second).
func headTime(info swift.Object, h swift.Headers) time.Time {
	if ts := h["X-Timestamp"]; ts != "" {
		ts, _, _ = strings.Cut(ts, "_") // internal offset, never seen by clients
		sec, frac, _ := strings.Cut(ts, ".")
		s, err1 := strconv.ParseInt(sec, 10, 64)
		var ns int64
		var err2 error
		if frac != "" {
			frac = (frac + "000000000")[:9]
			ns, err2 = strconv.ParseInt(frac, 10, 64)
		}
		if err1 == nil && err2 == nil {
			return time.Unix(s, ns).UTC()
		}
	}
	return info.LastModified
}

func headInfo(key string, info swift.Object, h swift.Headers) storage.ObjectInfo {
	return storage.ObjectInfo{Key: key, Size: info.Bytes, ModTime: headTime(info, h), ETag: info.Hash}
}

// Stat is one HEAD. For a DLO manifest the proxy reports the total size of
// the segments and an ETag computed over theirs (which differ from what a
// listing shows).
func (d *Driver) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	name, err := d.objectName(key)
	if err != nil {
		return storage.ObjectInfo{}, d.pathErr("stat", key, err)
	}
	info, h, err := d.conn.Object(ctx, d.container, name)
	if err != nil {
		return storage.ObjectInfo{}, d.pathErr("stat", key, err)
	}
	return headInfo(key, info, h), nil
}

// Get is one GET; for a DLO manifest the proxy returns the concatenated
// segments. An object whose Content-Length is above max is refused before
// its body is read. A plain object's MD5 is checked against its ETag.
var _ storage.Streamer = (*Driver)(nil)

// Open streams an object (a DLO's segments, concatenated) with one GET.
func (d *Driver) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	name, err := d.objectName(key)
	if err != nil {
		return nil, d.pathErr("get", key, err)
	}
	f, _, err := d.conn.ObjectOpen(ctx, d.container, name, false, nil)
	if err != nil {
		return nil, d.pathErr("get", key, err)
	}
	return f, nil
}

func (d *Driver) Get(ctx context.Context, key string, max int64) ([]byte, error) {
	name, err := d.objectName(key)
	if err != nil {
		return nil, d.pathErr("get", key, err)
	}
	f, h, err := d.conn.ObjectOpen(ctx, d.container, name, true, nil)
	if err != nil {
		return nil, d.pathErr("get", key, err)
	}
	size, err := strconv.ParseInt(h["Content-Length"], 10, 64)
	if err != nil {
		size = -1
	}
	if size > max {
		f.Close()
		return nil, d.pathErr("get", key, storage.ErrTooLarge)
	}
	b, err := storage.ReadAtMost(f, size, max)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, d.pathErr("get", key, err)
	}
	return b, nil
}

// Put is one plain object PUT; the server checks the MD5 sent as ETag.
func (d *Driver) Put(ctx context.Context, key string, data []byte) error {
	return d.put(ctx, "put", key, data, swift.Headers{})
}

// Create is Put with If-None-Match: *, which Swift's object server honours.
func (d *Driver) Create(ctx context.Context, key string, data []byte) error {
	return d.put(ctx, "create", key, data, swift.Headers{"If-None-Match": "*"})
}

func (d *Driver) put(ctx context.Context, op, key string, data []byte, h swift.Headers) error {
	name, err := d.objectName(key)
	if err != nil {
		return d.pathErr(op, key, err)
	}
	sum := md5.Sum(data)
	h["Content-Length"] = strconv.Itoa(len(data))
	// A bytes.Reader can be rewound, so the library can resend the body
	// after re-authenticating.
	if _, err := d.conn.ObjectPut(ctx, d.container, name, bytes.NewReader(data), true, hex.EncodeToString(sum[:]), contentType, h); err != nil {
		return d.pathErr(op, key, err)
	}
	return nil
}

// Delete removes exactly the keys given: in bulk-delete requests of
// BulkDeleteMax names when the cluster offers bulk delete, otherwise with
// single DELETEs, Concurrency at a time. A missing key is not a failure
// (single DELETEs report it as ErrNotFound; a bulk delete only counts
// them). A refusal (401, 403) ends the call with an error.
func (d *Driver) Delete(ctx context.Context, keys []string) ([]storage.DeleteResult, error) {
	names := make([]string, 0, len(keys))
	keyOf := make(map[string]string, len(keys))
	var results []storage.DeleteResult
	for _, k := range keys {
		name, err := d.objectName(k)
		if err != nil {
			results = append(results, storage.DeleteResult{Key: k, Err: d.pathErr("delete", k, err)})
			continue
		}
		names = append(names, name)
		keyOf[name] = k
	}
	more, err := d.deleteNames(ctx, "delete", names, func(name string) string { return keyOf[name] })
	return append(results, more...), err
}

// deleteNames deletes object names; key maps a name to the key results
// report.
func (d *Driver) deleteNames(ctx context.Context, op string, names []string, key func(string) string) ([]storage.DeleteResult, error) {
	if len(names) == 0 {
		return nil, ctx.Err()
	}
	var (
		mu      sync.Mutex
		results []storage.DeleteResult
	)
	report := func(name string, err error) {
		mu.Lock()
		results = append(results, storage.DeleteResult{Key: key(name), Err: d.pathErr(op, key(name), err)})
		mu.Unlock()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(d.concurrency)
	if d.bulkMax > 0 {
		for chunk := range chunks(names, d.bulkMax) {
			if gctx.Err() != nil {
				break
			}
			g.Go(func() error { return d.bulkDelete(gctx, op, chunk, key, report) })
		}
	} else {
		for _, name := range names {
			if gctx.Err() != nil {
				break
			}
			g.Go(func() error {
				err := d.conn.ObjectDelete(gctx, d.container, name)
				switch {
				case err == nil:
				case gctx.Err() != nil:
					return gctx.Err()
				case errors.Is(translate(err), storage.ErrAccessDenied):
					return d.pathErr(op, key(name), err)
				default:
					report(name, err)
				}
				return nil
			})
		}
	}
	err := g.Wait()
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
	}
	return results, err
}

// chunks splits names into the fewest chunks of at most max names, of
// even sizes: the chunks run in parallel, and Swift works through each
// one serially, so 11,007 names go as 5,504 + 5,503 rather than 10,000 +
// 1,007.
func chunks(names []string, max int) func(func([]string) bool) {
	return func(yield func([]string) bool) {
		k := (len(names) + max - 1) / max
		size := (len(names) + k - 1) / k
		for i := 0; i < len(names); i += size {
			if !yield(names[i:min(i+size, len(names))]) {
				return
			}
		}
	}
}

// bulkDelete sends one bulk-delete request and reports per-name failures.
// Swift answers 200 and puts the outcome in the body: counts of deleted
// and missing names, a list of [quoted "/container/name", status] errors
// and an overall status. A request that stops early (max_failed_deletes)
// leaves names that are in neither count; they are reported as failed.
//
// An expired token is not a 401 response here but a 200 whose body lists
// "401 Unauthorized" for every name, so the library never authenticates
// again by itself: the driver drops the token and sends the chunk once
// more. A refusal that persists ends the call.
func (d *Driver) bulkDelete(ctx context.Context, op string, chunk []string, key func(string) string, report func(string, error)) error {
	var (
		res swift.BulkDeleteResult
		err error
	)
	for attempt := 0; attempt < 2; attempt++ {
		res, err = d.conn.BulkDelete(ctx, d.container, chunk)
		if !tokenRejected(res, err) {
			break
		}
		d.conn.UnAuthenticate()
	}
	var se *swift.Error
	if res.Errors == nil { // the request itself failed
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(translate(err), storage.ErrAccessDenied), !errors.As(err, &se):
			// Refused, or unreachable: the call fails as a whole.
			return &storage.PathError{Op: op, Driver: driverName, Err: fmt.Errorf("bulk delete of %d names: %w", len(chunk), translate(err))}
		}
		for _, name := range chunk {
			report(name, err)
		}
		return nil
	}
	failed := make(map[string]error, len(res.Errors))
	root := "/" + d.container + "/"
	var refused error
	for p, e := range res.Errors {
		if u, uerr := url.PathUnescape(p); uerr == nil {
			p = u
		}
		failed[strings.TrimPrefix(p, root)] = e
		if errors.Is(translate(e), storage.ErrAccessDenied) {
			refused = e
		}
	}
	complete := res.NumberDeleted+res.NumberNotFound+int64(len(res.Errors)) >= int64(len(chunk))
	for _, name := range chunk {
		if e, ok := failed[name]; ok {
			report(name, e)
		} else if !complete {
			status := "no status"
			if err != nil {
				status = err.Error()
			}
			report(name, fmt.Errorf("bulk delete ended before this name (%s): %w", status, storage.ErrTransient))
		}
	}
	if refused != nil {
		return &storage.PathError{Op: op, Driver: driverName, Err: fmt.Errorf("bulk delete of %d names: %w", len(chunk), translate(refused))}
	}
	return nil
}

// tokenRejected reports whether a bulk delete failed for want of a valid
// token, as a 401 response or as 401s inside a 200 response.
func tokenRejected(res swift.BulkDeleteResult, err error) bool {
	var se *swift.Error
	if res.Errors == nil {
		return errors.As(err, &se) && se.StatusCode == http.StatusUnauthorized
	}
	for _, e := range res.Errors {
		if errors.As(e, &se) && se.StatusCode == http.StatusUnauthorized {
			return true
		}
	}
	return false
}

// LargeObject is one HEAD: the real size of a DLO (what the proxy totals
// over the segments) and the segment prefix its X-Object-Manifest names,
// relative to the container. A plain object has prefix "". A static large
// object, or a manifest whose segments live in another container, is an
// error: its segments cannot be matched to WalkSegments' names.
func (d *Driver) LargeObject(ctx context.Context, key string) (storage.ObjectInfo, string, error) {
	name, err := d.objectName(key)
	if err != nil {
		return storage.ObjectInfo{}, "", d.pathErr("large-object", key, err)
	}
	info, h, err := d.conn.Object(ctx, d.container, name)
	if err != nil {
		return storage.ObjectInfo{}, "", d.pathErr("large-object", key, err)
	}
	oi := headInfo(key, info, h)
	if h.IsLargeObjectSLO() {
		return oi, "", d.pathErr("large-object", key, errors.New("static large objects are not supported"))
	}
	manifest, ok := h["X-Object-Manifest"]
	if !ok {
		return oi, "", nil
	}
	container, prefix, _ := strings.Cut(manifest, "/")
	if u, err := url.PathUnescape(container); err == nil {
		container = u
	}
	if u, err := url.PathUnescape(prefix); err == nil {
		prefix = u
	}
	if container != d.container {
		return oi, "", d.pathErr("large-object", key, fmt.Errorf("X-Object-Manifest %q names container %q, not %q", manifest, container, d.container))
	}
	return oi, prefix, nil
}

// WalkSegments lists every object under [prefix/]segments/, with names
// relative to the container.
func (d *Driver) WalkSegments(ctx context.Context, fn func(storage.ObjectInfo) error) error {
	return d.walk(ctx, "list-segments", d.segRoot, d.segRoot, func(name string) (string, bool) {
		return name, strings.HasPrefix(name, d.segRoot)
	}, fn)
}

// DeleteSegments deletes segment objects by name, like Delete. It refuses
// any name outside [prefix/]segments/.
func (d *Driver) DeleteSegments(ctx context.Context, names []string) ([]storage.DeleteResult, error) {
	var results []storage.DeleteResult
	valid := make([]string, 0, len(names))
	for _, n := range names {
		if !strings.HasPrefix(n, d.segRoot) || len(n) == len(d.segRoot) || strings.HasSuffix(n, "/") {
			results = append(results, storage.DeleteResult{Key: n, Err: d.pathErr("delete-segments", n, fmt.Errorf("%q is not a segment name (not under %q)", n, d.segRoot))})
			continue
		}
		valid = append(valid, n)
	}
	more, err := d.deleteNames(ctx, "delete-segments", valid, func(name string) string { return name })
	return append(results, more...), err
}
