package faultproxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// s3Page is a ListObjectsV2 answer of five keys.
const s3Page = `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>k/</Prefix><KeyCount>5</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>` +
	`<Contents><Key>k/1</Key><Size>1</Size></Contents><Contents><Key>k/2</Key><Size>1</Size></Contents><Contents><Key>k/3</Key><Size>1</Size></Contents>` +
	`<Contents><Key>k/4</Key><Size>1</Size></Contents><Contents><Key>k/5</Key><Size>1</Size></Contents></ListBucketResult>`

func backend(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Query().Has("list-type"):
			w.Header().Set("Content-Type", "application/xml")
			io.WriteString(w, s3Page)
		case r.URL.Query().Get("format") == "json":
			io.WriteString(w, `[{"name":"a"},{"name":"b"},{"name":"c"}]`)
		case r.URL.Path == "/auth/v1.0":
			w.Header().Set("X-Storage-Url", "http://"+r.Host+"/v1/AUTH_test")
			w.Header().Set("X-Auth-Token", "tok")
		default:
			io.WriteString(w, "0123456789")
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func start(t *testing.T, target string, rules ...Rule) *Server {
	t.Helper()
	p, err := New(target, 1, rules...)
	if err != nil {
		t.Fatal(err)
	}
	s := p.Start()
	t.Cleanup(s.Close)
	return s
}

// fresh is a client that never reuses a connection, so the transport's own
// retry of a failed reused connection cannot hide a fault.
func fresh() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
}

func get(t *testing.T, c *http.Client, url string) (int, string, error) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestFaultKinds(t *testing.T) {
	b := backend(t)
	c := fresh()
	t.Run("slowdown", func(t *testing.T) {
		s := start(t, b.URL, Rule{Fault: SlowDown()})
		code, body, err := get(t, c, s.URL+"/bucket/key")
		if err != nil || code != 503 || !strings.Contains(body, "<Code>SlowDown</Code>") {
			t.Fatalf("got %d %q %v", code, body, err)
		}
	})
	t.Run("reset", func(t *testing.T) {
		s := start(t, b.URL, Rule{Fault: Reset()})
		_, _, err := get(t, c, s.URL+"/x")
		if !errors.Is(err, syscall.ECONNRESET) && (err == nil || !strings.Contains(err.Error(), "EOF")) {
			t.Fatalf("want a reset, got %v", err)
		}
	})
	t.Run("hang", func(t *testing.T) {
		s := start(t, b.URL, Rule{Fault: Hang(time.Hour)})
		short := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 100 * time.Millisecond}
		_, _, err := get(t, short, s.URL+"/x")
		var te interface{ Timeout() bool }
		if !errors.As(err, &te) || !te.Timeout() {
			t.Fatalf("want a client timeout, got %v", err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		s := start(t, b.URL, Rule{Fault: TruncateBody()})
		code, body, err := get(t, c, s.URL+"/x")
		if code != 200 || body != "01234" || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("got %d %q %v", code, body, err)
		}
	})
	t.Run("latency passes the answer through", func(t *testing.T) {
		s := start(t, b.URL, Rule{Fault: Latency(time.Millisecond)})
		if code, body, err := get(t, c, s.URL+"/x"); code != 200 || body != "0123456789" || err != nil {
			t.Fatalf("got %d %q %v", code, body, err)
		}
	})
	t.Run("before runs first, then passes the answer through", func(t *testing.T) {
		ran := false
		s := start(t, b.URL, Rule{Fault: Before("mark", func() { ran = true })})
		if code, body, err := get(t, c, s.URL+"/x"); code != 200 || body != "0123456789" || err != nil || !ran {
			t.Fatalf("got %d %q %v, ran %v", code, body, err, ran)
		}
	})
	t.Run("short S3 page that says complete", func(t *testing.T) {
		s := start(t, b.URL, Rule{Fault: ShortListing(2, false)})
		_, body, _ := get(t, c, s.URL+"/b?list-type=2&prefix=k/")
		if strings.Count(body, "<Contents>") != 2 || !strings.Contains(body, "<IsTruncated>false</IsTruncated>") ||
			!strings.Contains(body, "<KeyCount>2</KeyCount>") || strings.Contains(body, "NextContinuationToken") {
			t.Fatalf("got %s", body)
		}
	})
	t.Run("short S3 page that says truncated", func(t *testing.T) {
		s := start(t, b.URL, Rule{Fault: ShortListing(2, true)})
		_, body, _ := get(t, c, s.URL+"/b?list-type=2&prefix=k/")
		// base64("k/2")
		if strings.Count(body, "<Contents>") != 2 || !strings.Contains(body, "<IsTruncated>true</IsTruncated><NextContinuationToken>ay8y</NextContinuationToken>") {
			t.Fatalf("got %s", body)
		}
	})
	t.Run("short Swift page", func(t *testing.T) {
		s := start(t, b.URL, Rule{Fault: ShortListing(1, false)})
		if _, body, _ := get(t, c, s.URL+"/v1/AUTH_test/c?format=json"); body != `[{"name":"a"}]` {
			t.Fatalf("got %s", body)
		}
		if _, body, _ := get(t, c, s.URL+"/v1/AUTH_test/c/obj"); body != "0123456789" {
			t.Fatalf("an object passed through a listing fault changed: %q", body)
		}
	})
}

func TestRuleSelection(t *testing.T) {
	b := backend(t)
	c := fresh()
	s := start(t, b.URL,
		Rule{Name: "third GET of /a", Method: http.MethodGet, Path: regexp.MustCompile(`^/a$`), Fault: Status(500, "", "")}.Nth(3),
		Rule{Name: "listings", Query: regexp.MustCompile(`list-type=2`), Skip: 1, Times: 2, Fault: SlowDown()},
	)
	var codes []int
	for range 5 {
		code, _, _ := get(t, c, s.URL+"/a")
		codes = append(codes, code)
	}
	for range 5 {
		code, _, _ := get(t, c, s.URL+"/b?list-type=2")
		codes = append(codes, code)
	}
	if got := fmt.Sprint(codes); got != "[200 200 500 200 200 200 503 503 200 200]" {
		t.Fatalf("codes %s", got)
	}
	if n := len(s.Injections()); n != 3 || s.Requests() != 10 {
		t.Fatalf("%d injections of %d requests: %v", n, s.Requests(), s.Injections())
	}
}

// A seed makes probabilistic faults repeat exactly.
func TestProbabilityIsSeeded(t *testing.T) {
	b := backend(t)
	c := fresh()
	pattern := func(seed uint64) string {
		p, err := New(b.URL, seed, Rule{Probability: 0.5, Fault: Status(500, "", "")})
		if err != nil {
			t.Fatal(err)
		}
		s := p.Start()
		defer s.Close()
		var out []byte
		for range 40 {
			code, _, _ := get(t, c, s.URL+"/x")
			out = append(out, "ok"[min(code/500, 1)])
		}
		return string(out)
	}
	a, a2, other := pattern(3), pattern(3), pattern(4)
	if a != a2 || a == other || !strings.Contains(a, "o") || !strings.Contains(a, "k") {
		t.Fatalf("seed 3: %s, again: %s, seed 4: %s", a, a2, other)
	}
}

// Swift's storage URL is rewritten to the proxy, over TLS too, and the
// TLS certificate is one a client can trust by its PEM.
func TestSwiftStorageURLAndTLS(t *testing.T) {
	b := backend(t)
	p, err := New(b.URL, 1)
	if err != nil {
		t.Fatal(err)
	}
	s := p.StartTLS()
	defer s.Close()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CertificatePEM()) {
		t.Fatal("no certificate in CertificatePEM")
	}
	trusted := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := trusted.Get(s.URL + "/auth/v1.0")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Storage-Url"); got != s.URL+"/v1/AUTH_test" {
		t.Fatalf("X-Storage-Url %q, want %q", got, s.URL+"/v1/AUTH_test")
	}
	if _, err := http.Get(s.URL + "/x"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an untrusting client connected: %v", err)
	}
}
