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

// listPage is one ListObjectsV2 response.
type listPage struct {
	objects   []listedObject
	prefixes  []string
	truncated bool
	next      string
}

// errAnonymous means the request cannot be presigned: the credentials are
// anonymous, and minio-go's own listing is used.
var errAnonymous = errors.New("anonymous credentials")

// listCallError marks an error of the listing itself, as against one
// returned by the caller's function.
type listCallError struct{ err error }

func (e *listCallError) Error() string { return e.err.Error() }
func (e *listCallError) Unwrap() error { return e.err }

// listV2 lists the object keys below objectPrefix (raw object keys, not
// logical ones), calling onObject for each object and onPrefix for each
// common prefix when delimiter is set. A failed or malformed page is an
// error, never the end of the listing.
func (d *Driver) listV2(ctx context.Context, objectPrefix, delimiter, startAfter string, onObject func(listedObject) error, onPrefix func(string) error) error {
	token := ""
	// One per listing: its buffers serve every page. (Pooled across
	// listings, parsers saved 0.2 s of CPU in a warm gc over 100,000 blobs
	// but raised its peak RSS by half a megabyte.)
	parser := new(pageParser)
	for {
		page, err := d.listPage(ctx, objectPrefix, delimiter, startAfter, token, parser)
		if errors.Is(err, errAnonymous) {
			return err
		}
		if err != nil {
			return &listCallError{err}
		}
		for _, o := range page.objects {
			if err := onObject(o); err != nil {
				return err
			}
			if err := ctx.Err(); err != nil { // a page holds 1000 keys
				return err
			}
		}
		for _, p := range page.prefixes {
			if onPrefix == nil {
				return &listCallError{fmt.Errorf("%w: a common prefix %q in a listing without a delimiter", errMalformed, p)}
			}
			if err := onPrefix(p); err != nil {
				return err
			}
		}
		if !page.truncated {
			return nil
		}
		token = page.next
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// listPage requests and parses one page.
func (d *Driver) listPage(ctx context.Context, objectPrefix, delimiter, startAfter, token string, parser *pageParser) (*listPage, error) {
	q := url.Values{"list-type": {"2"}, "encoding-type": {"url"}, "prefix": {objectPrefix}, "delimiter": {delimiter}, "max-keys": {"1000"}}
	if token != "" {
		q.Set("continuation-token", token)
	} else if startAfter != "" {
		q.Set("start-after", startAfter)
	}
	u, err := d.client.Presign(ctx, http.MethodGet, d.bucket, "", 15*time.Minute, q)
	if err != nil {
		if v, cerr := d.creds.GetWithContext(d.client.CredContext()); cerr == nil && v.SignerType.IsAnonymous() {
			return nil, errAnonymous
		}
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errorResponse(resp, d.bucket)
	}
	page, err := parser.parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("listing response: %w", err)
	}
	return page, nil
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
}

func (p *pageParser) resetPage() {
	clear(p.page.objects) // drop the keys of the last page
	clear(p.page.prefixes)
	p.page = listPage{objects: p.page.objects[:0], prefixes: p.page.prefixes[:0]}
}

// parse parses a ListObjectsV2 response body; what it returns is good
// until the next call. It reads the subset of XML that S3 servers send (a
// prolog, elements, attributes on the root, entity and character
// references, CDATA, comments) and fails on anything else, on a document
// cut short, and on an entry missing its key, size or modification time:
// a zero time would make an object look old.
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
	var seen uint8 // fields of obj present: 1 key, 2 size, 4 mtime
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
				if page.truncated && page.next == "" {
					return nil, fmt.Errorf("%w: truncated without a continuation token", errMalformed)
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
					page.truncated = string(text) == "true"
				case "NextContinuationToken":
					page.next = string(text)
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
