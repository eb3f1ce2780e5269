package s3

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// Listing pages are requested here and parsed as they stream in, not by
// minio-go: it decodes each page of 1000 keys through reflection into 1000
// ObjectInfo structs of half a kilobyte, which was a third of a
// collection's CPU and, with a page in flight per listing, 6 MB of its
// peak memory. minio-go still builds and signs each request (a presigned
// URL: region, path or virtual-host style, signature v2 or v4, session
// tokens), so only the parsing is this package's own.

// listedObject is one entry of a listing page: an object, or with a
// delimiter a common prefix (only key set).
type listedObject struct {
	key   string
	size  int64
	mtime time.Time
	etag  string
}

// listPage is one listing page (ListObjectsV2, or V1 with ListV1).
type listPage struct {
	objects   []listedObject
	prefixes  []string
	truncated bool
	// next is where the following page starts: V2's
	// NextContinuationToken, V1's NextMarker.
	next string
	// keyCount is V2's KeyCount, -1 when the page has none (V1, and Ceph
	// RGW releases that omit it).
	keyCount int
}

// listCallError marks an error of the listing itself, as against one
// returned by the caller's function.
type listCallError struct{ err error }

func (e *listCallError) Error() string { return e.err.Error() }
func (e *listCallError) Unwrap() error { return e.err }

// list lists the object keys below objectPrefix (raw object keys, not
// logical ones), calling onObject for each object and onPrefix for each
// common prefix when delimiter is set. A failed, malformed or
// contradictory page is an error, never the end of the listing: a page
// that says it is the last but names where the next one starts, one
// that says it is not the last but does not, one whose KeyCount is not
// the number of entries it holds, one without IsTruncated, one holding a
// key outside objectPrefix, and a next page that would start where this
// one did.
func (d *Driver) list(ctx context.Context, objectPrefix, delimiter, startAfter string, onObject func(listedObject) error, onPrefix func(string) error) error {
	// The V2 continuation token, or the V1 marker (which starts at
	// startAfter).
	cursor := ""
	if d.listV1 {
		cursor = startAfter
	}
	// One per listing: its buffers serve every page. (Pooled across
	// listings, parsers saved 0.2 s of CPU in a warm gc over 100,000 blobs
	// but raised its peak RSS by half a megabyte.)
	parser := &pageParser{v1: d.listV1}
	for {
		page, err := d.listPage(ctx, objectPrefix, delimiter, startAfter, cursor, parser)
		if err != nil {
			return &listCallError{err}
		}
		for _, o := range page.objects {
			if !strings.HasPrefix(o.key, objectPrefix) {
				return &listCallError{fmt.Errorf("%w: key %q is outside the prefix listed", errMalformed, o.key)}
			}
			if err := onObject(o); err != nil {
				return err
			}
			if err := ctx.Err(); err != nil { // a page holds 1000 keys
				return err
			}
		}
		for _, p := range page.prefixes {
			switch {
			case onPrefix == nil:
				return &listCallError{fmt.Errorf("%w: a common prefix %q in a listing without a delimiter", errMalformed, p)}
			case !strings.HasPrefix(p, objectPrefix):
				return &listCallError{fmt.Errorf("%w: common prefix %q is outside the prefix listed", errMalformed, p)}
			}
			if err := onPrefix(p); err != nil {
				return err
			}
		}
		if !page.truncated {
			return nil
		}
		next, err := nextCursor(page, d.listV1, delimiter, cursor)
		if err != nil {
			return &listCallError{err}
		}
		cursor = next
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// nextCursor is where the page after a truncated one starts. A V1 page
// without NextMarker continues after its last key, as the S3 API says,
// except in a delimiter listing, where S3 always sends NextMarker.
func nextCursor(page *listPage, v1 bool, delimiter, cursor string) (string, error) {
	next := page.next
	if v1 && next == "" && delimiter == "" && len(page.objects) > 0 {
		next = page.objects[len(page.objects)-1].key
	}
	switch {
	case next == "":
		return "", fmt.Errorf("%w: a truncated page without a NextMarker", errMalformed)
	case next == cursor, v1 && next < cursor:
		return "", fmt.Errorf("%w: the next page would start at %q again: the listing does not advance", errMalformed, next)
	}
	return next, nil
}

// listPage requests and parses one page.
func (d *Driver) listPage(ctx context.Context, objectPrefix, delimiter, startAfter, cursor string, parser *pageParser) (*listPage, error) {
	q := url.Values{"encoding-type": {"url"}, "prefix": {objectPrefix}, "delimiter": {delimiter}, "max-keys": {"1000"}}
	switch {
	case d.listV1:
		if cursor != "" {
			q.Set("marker", cursor)
		}
	case cursor != "":
		q.Set("list-type", "2")
		q.Set("continuation-token", cursor)
	default:
		q.Set("list-type", "2")
		if startAfter != "" {
			q.Set("start-after", startAfter)
		}
	}
	resp, err := d.bucketGet(ctx, q)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	page, err := parser.parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("listing response: %w", err)
	}
	return page, nil
}

// bucketGet sends a GET for the bucket with query q, presigned by
// minio-go (region, path or virtual-host style, signature v2 or v4,
// session tokens), or unsigned when the credentials are anonymous. A
// status other than 200 is the S3 error it carries.
func (d *Driver) bucketGet(ctx context.Context, q url.Values) (*http.Response, error) {
	u, err := d.client.Presign(ctx, http.MethodGet, d.bucket, "", 15*time.Minute, q)
	if err != nil {
		v, cerr := d.creds.GetWithContext(d.client.CredContext())
		if cerr != nil || !v.SignerType.IsAnonymous() {
			return nil, err
		}
		u = d.unsignedURL(q)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, errorResponse(resp, d.bucket)
	}
	return resp, nil
}

// unsignedURL addresses the bucket as minio-go does for an endpoint it
// does not rewrite: virtual-host style where the endpoint supports it
// (AWS, GCS) unless path style is forced, path style otherwise.
// (minio-go presigns nothing with anonymous credentials.)
func (d *Driver) unsignedURL(q url.Values) *url.URL {
	u := *d.client.EndpointURL()
	if !d.pathStyle && s3utils.IsVirtualHostSupported(u, d.bucket) {
		u.Host = d.bucket + "." + u.Host
		u.Path = "/"
	} else {
		u.Path = "/" + d.bucket + "/"
	}
	u.RawQuery = s3utils.QueryEncode(q)
	return &u
}

// errorResponse reads an S3 error body into minio-go's error type, which
// translate maps to the storage sentinels.
func errorResponse(resp *http.Response, bucket string) error {
	er := minio.ErrorResponse{StatusCode: resp.StatusCode, BucketName: bucket}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if len(bytes.TrimSpace(body)) > 0 {
		_ = xml.Unmarshal(body, &er) // a body that is no S3 error keeps the status
		er.StatusCode = resp.StatusCode
	}
	if er.Code == "" {
		er.Code = strconv.Itoa(resp.StatusCode)
		er.Message = resp.Status
	}
	if er.BucketName == "" {
		er.BucketName = bucket
	}
	return er
}

var errMalformed = errors.New("malformed ListBucketResult")

// pageParser parses the pages of one listing, one after the other, into
// the same buffers: a page's slice of 1000 entries, grown by doubling,
// was most of what a listing allocated.
type pageParser struct {
	x    xmlScanner
	page listPage
	// v1 reads ListObjects V1 pages: NextMarker, not
	// NextContinuationToken, says where the next page starts, and a
	// truncated page may leave it out.
	v1 bool
}

func (p *pageParser) resetPage() {
	clear(p.page.objects) // drop the keys of the last page
	clear(p.page.prefixes)
	p.page = listPage{objects: p.page.objects[:0], prefixes: p.page.prefixes[:0], keyCount: -1}
}

// parse parses a ListObjectsV2 (or V1) response body; what it returns is
// good until the next call. It reads the subset of XML that S3 servers
// send (a prolog, elements, attributes on the root, entity and character
// references, CDATA, comments) and fails on anything else, on a document
// cut short, on an entry missing its key, size or modification time (a
// zero time would make an object look old), and on a page that
// contradicts itself (see checkPage).
func (p *pageParser) parse(r io.Reader) (*listPage, error) {
	if p.x.r == nil {
		p.x.r = bufio.NewReaderSize(r, 16<<10)
	} else {
		p.x.r.Reset(r)
	}
	p.x.text, p.x.pendingEnd = p.x.text[:0], ""
	p.resetPage()
	x, page := &p.x, &p.page
	var names [4]string // open elements, the deepest last
	depth := 0
	var obj listedObject
	var seen uint8     // fields of obj present: 1 key, 2 size, 4 mtime
	var pageSeen uint8 // page fields present: 1 IsTruncated, 2 next, 4 KeyCount
	// Names are decoded once the whole page, and so its EncodingType, is read.
	var encoding string
	for {
		tok, err := x.next()
		if err != nil {
			return nil, err
		}
		switch tok.kind {
		case tokEOF:
			// As a cut connection reads: retried like one.
			return nil, fmt.Errorf("%w: the document ends before </ListBucketResult>: %w", errMalformed, io.ErrUnexpectedEOF)
		case tokStart:
			if depth == 0 && tok.name != "ListBucketResult" {
				return nil, fmt.Errorf("%w: root element <%s>", errMalformed, tok.name)
			}
			if depth < len(names) {
				names[depth] = tok.name
			}
			depth++
			if depth == 2 && tok.name == "Contents" {
				obj, seen = listedObject{}, 0
			}
		case tokEnd:
			if depth == 0 || depth <= len(names) && names[depth-1] != tok.name {
				return nil, fmt.Errorf("%w: unexpected </%s>", errMalformed, tok.name)
			}
			text := tok.text
			switch {
			case depth == 1:
				if err := p.checkPage(pageSeen&1 != 0); err != nil {
					return nil, err
				}
				if p.v1 {
					if page.next, err = decodeName(page.next, encoding); err != nil {
						return nil, err
					}
				}
				for i := range page.objects {
					if page.objects[i].key, err = decodeName(page.objects[i].key, encoding); err != nil {
						return nil, err
					}
				}
				for i := range page.prefixes {
					if page.prefixes[i], err = decodeName(page.prefixes[i], encoding); err != nil {
						return nil, err
					}
				}
				return page, nil
			case depth == 2:
				switch tok.name {
				case "IsTruncated":
					if pageSeen&1 != 0 {
						return nil, fmt.Errorf("%w: IsTruncated given twice", errMalformed)
					}
					// As S3 clients read it: minio-go through encoding/xml,
					// the AWS SDKs with strconv.ParseBool.
					if page.truncated, err = strconv.ParseBool(string(bytes.TrimSpace(text))); err != nil {
						return nil, fmt.Errorf("%w: IsTruncated %q is not a boolean", errMalformed, text)
					}
					pageSeen |= 1
				case "NextContinuationToken", "NextMarker":
					if (tok.name == "NextMarker") != p.v1 {
						break // the other listing version's: not this page's
					}
					if pageSeen&2 != 0 {
						return nil, fmt.Errorf("%w: %s given twice", errMalformed, tok.name)
					}
					page.next, pageSeen = string(text), pageSeen|2
				case "KeyCount":
					if pageSeen&4 != 0 {
						return nil, fmt.Errorf("%w: KeyCount given twice", errMalformed)
					}
					n, err := strconv.Atoi(string(bytes.TrimSpace(text)))
					if err != nil || n < 0 {
						return nil, fmt.Errorf("%w: KeyCount %q", errMalformed, text)
					}
					page.keyCount, pageSeen = n, pageSeen|4
				case "EncodingType":
					encoding = string(text)
				case "Contents":
					if seen != 7 {
						return nil, fmt.Errorf("%w: an entry without its key, size or modification time", errMalformed)
					}
					page.objects = append(page.objects, obj)
				}
			case depth == 3 && names[1] == "Contents":
				switch tok.name {
				case "Key":
					if len(text) == 0 {
						return nil, fmt.Errorf("%w: an entry with an empty key", errMalformed)
					}
					obj.key, seen = string(text), seen|1
				case "Size":
					// (Conversions of short texts that do not escape are
					// made on the stack: no allocation per entry.)
					if obj.size, err = strconv.ParseInt(string(text), 10, 64); err != nil || obj.size < 0 {
						return nil, fmt.Errorf("%w: size %q", errMalformed, text)
					}
					seen |= 2
				case "LastModified":
					t, err := time.Parse(time.RFC3339Nano, string(text))
					if err != nil {
						return nil, fmt.Errorf("%w: modification time %q", errMalformed, text)
					}
					obj.mtime, seen = t.Truncate(time.Millisecond), seen|4
				case "ETag":
					obj.etag = string(text)
				}
			case depth == 3 && names[1] == "CommonPrefixes" && tok.name == "Prefix":
				page.prefixes = append(page.prefixes, string(text))
			}
			depth--
		}
	}
}

// checkPage refuses a page that contradicts itself. S3 counts common
// prefixes in KeyCount (so does MinIO), and names where the next page
// starts exactly when the page is truncated; V1 may leave NextMarker out
// of a truncated page (the next one starts after its last key).
func (p *pageParser) checkPage(truncatedSeen bool) error {
	page := &p.page
	what := "continuation token"
	if p.v1 {
		what = "NextMarker"
	}
	switch {
	case !truncatedSeen:
		return fmt.Errorf("%w: the page has no IsTruncated: it cannot say whether the listing goes on", errMalformed)
	case page.keyCount >= 0 && page.keyCount != len(page.objects)+len(page.prefixes):
		return fmt.Errorf("%w: KeyCount %d, but the page holds %d keys and %d common prefixes", errMalformed, page.keyCount, len(page.objects), len(page.prefixes))
	case !page.truncated && page.next != "":
		return fmt.Errorf("%w: a page that is not truncated names a %s (%q): the listing may go on", errMalformed, what, page.next)
	case page.truncated && page.next == "" && !p.v1:
		return fmt.Errorf("%w: truncated without a continuation token", errMalformed)
	}
	return nil
}

// decodeName undoes encoding-type=url, as minio-go does; a server that
// ignored the request sends the names as they are.
func decodeName(s, encoding string) (string, error) {
	if encoding != "url" {
		return s, nil
	}
	d, err := url.QueryUnescape(s)
	if err != nil {
		return "", fmt.Errorf("%w: name %q: %v", errMalformed, s, err)
	}
	return d, nil
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokStart
	tokEnd
)

// token is a start or end tag; an end tag carries the text since the
// last tag (the element's value when it has no children), good until the
// next call: a listing's texts are mostly read and dropped, so they are
// made strings only where kept.
type token struct {
	kind tokKind
	name string
	text []byte
}

type xmlScanner struct {
	r          *bufio.Reader
	text       []byte
	unescaped  []byte // text with its references resolved, when it has any
	tagBuf     []byte
	names      map[string]string // tag names met, made strings once
	pendingEnd string            // the end of a self-closing tag, returned next
}

// next returns the next start or end tag. A self-closing tag is returned
// as its start, and its end on the following call.
func (x *xmlScanner) next() (token, error) {
	if x.pendingEnd != "" {
		name := x.pendingEnd
		x.pendingEnd = ""
		return token{kind: tokEnd, name: name}, nil
	}
	for {
		chunk, err := x.r.ReadSlice('<')
		if err == bufio.ErrBufferFull {
			x.text = append(x.text, chunk...)
			continue
		}
		if err == io.EOF {
			if len(bytes.TrimSpace(chunk)) > 0 || len(bytes.TrimSpace(x.text)) > 0 {
				return token{}, x.eof(io.EOF) // inside an element: cut short
			}
			return token{kind: tokEOF}, nil
		}
		if err != nil {
			return token{}, err
		}
		x.text = append(x.text, chunk[:len(chunk)-1]...)
		b, err := x.r.ReadByte()
		if err != nil {
			return token{}, x.eof(err)
		}
		switch b {
		case '?':
			if err := x.skipPast("?>"); err != nil {
				return token{}, err
			}
		case '!':
			if err := x.markup(); err != nil {
				return token{}, err
			}
		case '/':
			tag, err := x.tag()
			if err != nil {
				return token{}, err
			}
			text, err := x.unescape()
			x.text = x.text[:0] // text keeps the bytes until the next call
			if err != nil {
				return token{}, err
			}
			return token{kind: tokEnd, name: localName(strings.TrimSpace(tag)), text: text}, nil
		default:
			x.r.UnreadByte()
			tag, err := x.tag()
			if err != nil {
				return token{}, err
			}
			x.text = x.text[:0]
			selfClosing := strings.HasSuffix(tag, "/")
			tag = strings.TrimSuffix(tag, "/")
			name := tag
			if i := strings.IndexAny(tag, " \t\r\n"); i >= 0 {
				name = tag[:i]
			}
			name = localName(name)
			if name == "" {
				return token{}, fmt.Errorf("%w: an empty tag", errMalformed)
			}
			if selfClosing {
				x.pendingEnd = name
			}
			return token{kind: tokStart, name: name}, nil
		}
	}
}

// tag reads a tag's inside up to its '>', quoted attribute values included.
func (x *xmlScanner) tag() (string, error) {
	b := x.tagBuf[:0]
	defer func() { x.tagBuf = b[:0] }()
	var quote byte
	for {
		c, err := x.r.ReadByte()
		if err != nil {
			return "", x.eof(err)
		}
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '>':
			return x.name(b), nil
		case c == '<':
			return "", fmt.Errorf("%w: '<' inside a tag", errMalformed)
		}
		b = append(b, c)
	}
}

// maxNames bounds the tag names a scanner keeps: a listing has about ten.
const maxNames = 64

// name returns b as a string, made once per distinct tag.
func (x *xmlScanner) name(b []byte) string {
	if s, ok := x.names[string(b)]; ok {
		return s
	}
	s := string(b)
	if x.names == nil {
		x.names = map[string]string{}
	}
	if len(x.names) < maxNames {
		x.names[s] = s
	}
	return s
}

// unescape returns x.text with its references resolved: x.text itself
// when it has none.
func (x *xmlScanner) unescape() ([]byte, error) {
	if bytes.IndexByte(x.text, '&') < 0 {
		return x.text, nil
	}
	u, err := appendUnescaped(x.unescaped[:0], x.text)
	if err != nil {
		return nil, err
	}
	x.unescaped = u
	return u, nil
}

// markup handles "<!": a comment is skipped, CDATA is text; anything else
// (a DOCTYPE) has no place in a listing.
func (x *xmlScanner) markup() error {
	if p, _ := x.r.Peek(2); string(p) == "--" {
		x.r.Discard(2)
		return x.skipPast("-->")
	}
	if p, _ := x.r.Peek(7); string(p) == "[CDATA[" {
		x.r.Discard(7)
		start := len(x.text)
		if err := x.readPast("]]>"); err != nil {
			return err
		}
		// CDATA is literal: escape it so that unescape gives it back.
		lit := string(x.text[start : len(x.text)-3])
		x.text = append(x.text[:start], strings.NewReplacer("&", "&amp;", "<", "&lt;").Replace(lit)...)
		return nil
	}
	return fmt.Errorf("%w: unexpected markup <!", errMalformed)
}

func (x *xmlScanner) skipPast(end string) error {
	start := len(x.text)
	err := x.readPast(end)
	x.text = x.text[:start]
	return err
}

// readPast appends to x.text up to and including end.
func (x *xmlScanner) readPast(end string) error {
	for {
		c, err := x.r.ReadByte()
		if err != nil {
			return x.eof(err)
		}
		x.text = append(x.text, c)
		if bytes.HasSuffix(x.text, []byte(end)) {
			return nil
		}
	}
}

func (x *xmlScanner) eof(err error) error {
	if err == io.EOF {
		return fmt.Errorf("%w: the document is cut short: %w", errMalformed, io.ErrUnexpectedEOF)
	}
	return err
}

// localName drops a namespace prefix.
func localName(name string) string {
	if i := strings.IndexByte(name, ':'); i >= 0 {
		return name[i+1:]
	}
	return name
}

// appendUnescaped appends b with XML's five entities and character
// references resolved to dst. Into a reused buffer: every ETag a listing
// sends is quoted with references.
func appendUnescaped(dst, b []byte) ([]byte, error) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '&')
		if i < 0 {
			return append(dst, b...), nil
		}
		dst = append(dst, b[:i]...)
		b = b[i:]
		j := bytes.IndexByte(b, ';')
		if j < 0 {
			return nil, fmt.Errorf("%w: an unterminated entity", errMalformed)
		}
		ent := b[1:j]
		b = b[j+1:]
		switch string(ent) {
		case "amp":
			dst = append(dst, '&')
		case "lt":
			dst = append(dst, '<')
		case "gt":
			dst = append(dst, '>')
		case "quot":
			dst = append(dst, '"')
		case "apos":
			dst = append(dst, '\'')
		default:
			var n uint64
			var err error
			switch {
			case bytes.HasPrefix(ent, []byte("#x")):
				n, err = strconv.ParseUint(string(ent[2:]), 16, 32)
			case bytes.HasPrefix(ent, []byte("#")):
				n, err = strconv.ParseUint(string(ent[1:]), 10, 32)
			default:
				err = errors.New("unknown")
			}
			if err != nil || n > 0x10FFFF {
				return nil, fmt.Errorf("%w: entity &%s;", errMalformed, ent)
			}
			dst = utf8.AppendRune(dst, rune(n))
		}
	}
	return dst, nil
}
