package faultproxy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"html"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"time"
)

// Fault is what the proxy does to a request a rule picked.
type Fault interface {
	fmt.Stringer
	inject(p *Proxy, w http.ResponseWriter, r *http.Request)
}

// Status answers with code and body instead of forwarding.
func Status(code int, contentType, body string) Fault {
	return statusFault{code: code, contentType: contentType, body: body}
}

// S3Error answers with an S3 XML error document, as S3 and MinIO send it.
func S3Error(code int, s3Code, message string) Fault {
	body := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Error><Code>%s</Code><Message>%s</Message><RequestId>faultproxy</RequestId><HostId>faultproxy</HostId></Error>`,
		html.EscapeString(s3Code), html.EscapeString(message))
	return statusFault{code: code, contentType: "application/xml", body: body, name: s3Code}
}

// SlowDown is S3's throttling answer: 503 with code SlowDown.
func SlowDown() Fault {
	return S3Error(http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
}

// InternalError is S3's 500 InternalError.
func InternalError() Fault {
	return S3Error(http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.")
}

type statusFault struct {
	code              int
	contentType, body string
	name              string
}

func (f statusFault) String() string {
	if f.name != "" {
		return fmt.Sprintf("status %d %s", f.code, f.name)
	}
	return fmt.Sprintf("status %d", f.code)
}

func (f statusFault) inject(_ *Proxy, w http.ResponseWriter, r *http.Request) {
	if f.contentType != "" {
		w.Header().Set("Content-Type", f.contentType)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(f.body)))
	w.WriteHeader(f.code)
	if r.Method != http.MethodHead {
		w.Write([]byte(f.body))
	}
}

// Reset resets the connection (TCP RST) without answering.
func Reset() Fault { return resetFault{} }

type resetFault struct{}

func (resetFault) String() string { return "connection reset" }

func (resetFault) inject(_ *Proxy, w http.ResponseWriter, _ *http.Request) {
	reset(w)
}

func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0) // close sends RST, not FIN
	}
	conn.Close()
}

// Hang holds the request for d without answering, then drops the
// connection (a client with a shorter timeout times out first).
func Hang(d time.Duration) Fault { return hangFault{d} }

type hangFault struct{ d time.Duration }

func (f hangFault) String() string { return "hang " + f.d.String() }

func (f hangFault) inject(_ *Proxy, _ http.ResponseWriter, r *http.Request) {
	t := time.NewTimer(f.d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
	panic(http.ErrAbortHandler)
}

// Latency delays the request by d, then forwards it.
func Latency(d time.Duration) Fault { return latencyFault{d} }

type latencyFault struct{ d time.Duration }

func (f latencyFault) String() string { return "latency " + f.d.String() }

func (f latencyFault) inject(p *Proxy, w http.ResponseWriter, r *http.Request) {
	t := time.NewTimer(f.d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	p.rp.ServeHTTP(w, r)
}

// Before runs fn, then forwards the request unchanged: fn may block while
// a test writes to the store, so that the write lands exactly between two
// of the client's requests.
func Before(name string, fn func()) Fault { return beforeFault{name, fn} }

type beforeFault struct {
	name string
	fn   func()
}

func (f beforeFault) String() string { return "before: " + f.name }

func (f beforeFault) inject(p *Proxy, w http.ResponseWriter, r *http.Request) {
	f.fn()
	p.rp.ServeHTTP(w, r)
}

// TruncateBody forwards the request, then sends the real status and
// headers (Content-Length of the whole body) but only the first half of the
// body, and drops the connection.
func TruncateBody() Fault { return truncateFault{} }

type truncateFault struct{}

func (truncateFault) String() string { return "truncated body" }

func (truncateFault) inject(p *Proxy, w http.ResponseWriter, r *http.Request) {
	rec := p.forward(r)
	body := rec.Body.Bytes()
	copyHeader(w.Header(), rec.Header())
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rec.Code)
	w.Write(body[:len(body)/2])
	http.NewResponseController(w).Flush()
	panic(http.ErrAbortHandler)
}

// ShortListing cuts a listing page after keep entries and answers 200:
//
//   - an S3 ListObjects (V1 or V2) page keeps its first keep entries
//     (objects and common prefixes, in document order). With truncated
//     false it says the listing is complete (IsTruncated false, KeyCount
//     adjusted): nothing in the protocol lets a client notice. With
//     truncated true it says more follows and gives a continuation token
//     (V2: MinIO's, base64 of the last key kept; V1: NextMarker) from which
//     the store lists the rest: a correct client loses nothing.
//   - a Swift JSON container listing keeps its first keep names. Swift has
//     no truncation flag: a client that reads a page shorter than its limit
//     as the end of the listing cannot notice; truncated is ignored.
//
// Responses that are not listings pass unchanged.
func ShortListing(keep int, truncated bool) Fault { return shortListing{keep, truncated} }

type shortListing struct {
	keep      int
	truncated bool
}

func (f shortListing) String() string {
	if f.truncated {
		return fmt.Sprintf("short listing page (%d kept, says truncated)", f.keep)
	}
	return fmt.Sprintf("short listing page (%d kept, says complete)", f.keep)
}

var (
	s3Entry       = regexp.MustCompile(`(?s)<(Contents|CommonPrefixes)>.*?</(?:Contents|CommonPrefixes)>`)
	s3Key         = regexp.MustCompile(`<(?:Key|Prefix)>([^<]*)</(?:Key|Prefix)>`)
	s3Truncated   = regexp.MustCompile(`<IsTruncated>[^<]*</IsTruncated>`)
	s3KeyCount    = regexp.MustCompile(`<KeyCount>[^<]*</KeyCount>`)
	s3NextToken   = regexp.MustCompile(`<NextContinuationToken>[^<]*</NextContinuationToken>`)
	s3NextMarker  = regexp.MustCompile(`<NextMarker>[^<]*</NextMarker>`)
	s3ListResult  = regexp.MustCompile(`<ListBucketResult[ >]`)
	s3IsTruncated = regexp.MustCompile(`</IsTruncated>`)
)

func (f shortListing) inject(p *Proxy, w http.ResponseWriter, r *http.Request) {
	rec := p.forward(r)
	body := rec.Body.Bytes()
	copyHeader(w.Header(), rec.Header())
	if rec.Code == http.StatusOK {
		listing := true
		switch {
		case s3ListResult.Match(body):
			body = f.cutS3(body, r.URL.Query().Get("list-type") == "2")
		case bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")):
			body = f.cutSwift(body)
		default:
			listing = false
		}
		if listing {
			w.Header().Del("Etag") // it described the whole page
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rec.Code)
	w.Write(body)
}

func (f shortListing) cutS3(body []byte, v2 bool) []byte {
	entries := s3Entry.FindAllIndex(body, -1)
	if len(entries) <= f.keep && !f.truncated {
		return body
	}
	keep := min(f.keep, len(entries))
	var out bytes.Buffer
	last := 0
	for i, e := range entries {
		if i >= keep {
			out.Write(body[last:e[0]])
			last = e[1]
		}
	}
	out.Write(body[last:])
	res := out.Bytes()
	lastKey := ""
	if keep > 0 {
		if m := s3Key.FindSubmatch(body[entries[keep-1][0]:entries[keep-1][1]]); m != nil {
			lastKey = html.UnescapeString(string(m[1]))
		}
	}
	truncated := f.truncated && keep < len(entries) && lastKey != ""
	res = s3Truncated.ReplaceAll(res, []byte("<IsTruncated>"+strconv.FormatBool(truncated)+"</IsTruncated>"))
	res = s3KeyCount.ReplaceAll(res, []byte("<KeyCount>"+strconv.Itoa(keep)+"</KeyCount>"))
	res = s3NextToken.ReplaceAll(res, nil)
	res = s3NextMarker.ReplaceAll(res, nil)
	if truncated {
		var next string
		if v2 {
			next = "<NextContinuationToken>" + base64.StdEncoding.EncodeToString([]byte(lastKey)) + "</NextContinuationToken>"
		} else {
			next = "<NextMarker>" + html.EscapeString(lastKey) + "</NextMarker>"
		}
		if loc := s3IsTruncated.FindIndex(res); loc != nil {
			res = append(res[:loc[1]:loc[1]], append([]byte(next), res[loc[1]:]...)...)
		}
	}
	return res
}

func (f shortListing) cutSwift(body []byte) []byte {
	var entries []json.RawMessage
	if err := json.Unmarshal(body, &entries); err != nil || len(entries) <= f.keep {
		return body
	}
	out, err := json.Marshal(entries[:f.keep])
	if err != nil {
		return body
	}
	return out
}

func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = append([]string(nil), v...)
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
