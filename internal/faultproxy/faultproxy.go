// Package faultproxy is an HTTP reverse proxy for tests that stands in
// front of a real object store (MinIO, Swift) and injects faults into
// chosen requests: error statuses (500, 503 SlowDown with an S3 XML body),
// connection resets, hangs, truncated bodies, listing pages that end early,
// and latency.
//
// A fault is chosen by a Rule: method, path and query patterns, which
// matching request (skip the first n, then inject m times), and a
// probability drawn from a seeded generator. Every injection is recorded, so
// a test can prove its faults really happened.
//
// The proxy forwards requests unchanged (signatures stay valid); only
// responses are altered. Swift's auth response names the storage URL the
// client uses next: the proxy rewrites it to point at itself, so every
// later request passes through it too.
//
// Test support only: it may not be imported by product code.
package faultproxy

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
)

// Rule says which requests get a fault. Zero fields match everything.
type Rule struct {
	// Name labels the rule in Injections.
	Name string
	// Method matches the HTTP method exactly ("" matches any).
	Method string
	// Path matches the request's URL path (unescaped).
	Path *regexp.Regexp
	// Query matches the request's query string, unescaped.
	Query *regexp.Regexp
	// Skip lets the first Skip matching requests through untouched.
	Skip int
	// Times is the most requests the rule faults; 0 means every matching
	// request after Skip (a persistent fault).
	Times int
	// Probability, when in (0, 1), faults a matching request with that
	// chance, drawn from the proxy's seeded generator; 0 means always.
	Probability float64
	Fault       Fault
}

// Nth faults only the nth matching request (1-based).
func (r Rule) Nth(n int) Rule {
	r.Skip, r.Times = n-1, 1
	return r
}

// Injection records one fault the proxy injected.
type Injection struct {
	Rule   string
	Fault  string
	Method string
	Path   string
	Query  string
}

func (i Injection) String() string {
	s := fmt.Sprintf("%s %s %s", i.Fault, i.Method, i.Path)
	if i.Query != "" {
		s += "?" + i.Query
	}
	return s
}

// Proxy forwards every request to one target and faults some of them.
type Proxy struct {
	target *url.URL
	rp     *httputil.ReverseProxy

	mu        sync.Mutex
	rules     []*ruleState
	rng       *rand.Rand
	injected  []Injection
	requests  int
	publicURL string
}

type ruleState struct {
	Rule
	matched, fired int
}

// New returns a proxy to target (scheme://host:port) whose probabilistic
// rules draw from a generator seeded with seed.
func New(target string, seed uint64, rules ...Rule) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("faultproxy: target %q is not an http(s) URL", target)
	}
	p := &Proxy{target: u, rng: rand.New(rand.NewPCG(seed, seed^0x5bd1e995))}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			// Keep the Host the client signed (S3 signs it).
			pr.Out.Host = pr.In.Host
		},
		ModifyResponse: p.rewriteStorageURL,
		// A failing target is reported as what it is, not as a fault.
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, "faultproxy: target: "+err.Error(), http.StatusBadGateway)
		},
	}
	p.SetRules(rules...)
	return p, nil
}

// SetRules replaces the rules and resets their counters.
func (p *Proxy) SetRules(rules ...Rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = p.rules[:0]
	for _, r := range rules {
		p.rules = append(p.rules, &ruleState{Rule: r})
	}
}

// Injections returns every fault injected so far, in order.
func (p *Proxy) Injections() []Injection {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Injection(nil), p.injected...)
}

// Requests is the number of requests the proxy received.
func (p *Proxy) Requests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests
}

// ResetLog forgets the recorded injections and the request count.
func (p *Proxy) ResetLog() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.injected, p.requests = nil, 0
}

// pick returns the fault for r, or nil, and records the injection.
func (p *Proxy) pick(r *http.Request) Fault {
	query, _ := url.QueryUnescape(r.URL.RawQuery)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	for _, rs := range p.rules {
		if rs.Method != "" && rs.Method != r.Method ||
			rs.Path != nil && !rs.Path.MatchString(r.URL.Path) ||
			rs.Query != nil && !rs.Query.MatchString(query) {
			continue
		}
		rs.matched++
		if rs.matched <= rs.Skip || rs.Times > 0 && rs.fired >= rs.Times {
			continue
		}
		if rs.Probability > 0 && rs.Probability < 1 && p.rng.Float64() >= rs.Probability {
			continue
		}
		rs.fired++
		p.injected = append(p.injected, Injection{Rule: rs.Name, Fault: rs.Fault.String(), Method: r.Method, Path: r.URL.Path, Query: query})
		return rs.Fault
	}
	return nil
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f := p.pick(r); f != nil {
		f.inject(p, w, r)
		return
	}
	p.rp.ServeHTTP(w, r)
}

// forward sends r to the target and returns the whole response, for faults
// that alter it.
func (p *Proxy) forward(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	p.rp.ServeHTTP(rec, r)
	return rec
}

// rewriteStorageURL points Swift's X-Storage-Url at the proxy.
func (p *Proxy) rewriteStorageURL(resp *http.Response) error {
	p.mu.Lock()
	public := p.publicURL
	p.mu.Unlock()
	if public == "" {
		return nil
	}
	if su := resp.Header.Get("X-Storage-Url"); su != "" {
		pu, _ := url.Parse(public)
		// The store names its own address, or the Host it was asked for.
		if u, err := url.Parse(su); err == nil && (u.Host == p.target.Host || u.Host == pu.Host) {
			u.Scheme, u.Host = pu.Scheme, pu.Host
			resp.Header.Set("X-Storage-Url", u.String())
		}
	}
	return nil
}

// Server is a running proxy.
type Server struct {
	*Proxy
	// URL is the proxy's base URL (http or https).
	URL string
	// Host is host:port.
	Host string
	srv  *httptest.Server
}

// Start serves the proxy over plain HTTP on 127.0.0.1.
func (p *Proxy) Start() *Server {
	return p.start(false)
}

// StartTLS serves the proxy over HTTPS with a self-signed certificate for
// 127.0.0.1 (see CertificatePEM).
func (p *Proxy) StartTLS() *Server {
	return p.start(true)
}

func (p *Proxy) start(tls bool) *Server {
	srv := httptest.NewUnstartedServer(p)
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	p.mu.Lock()
	p.publicURL = srv.URL
	p.mu.Unlock()
	return &Server{Proxy: p, URL: srv.URL, Host: strings.TrimPrefix(strings.TrimPrefix(srv.URL, "http://"), "https://"), srv: srv}
}

// CertificatePEM is the TLS server's certificate (its own CA), PEM
// encoded; empty for a plain HTTP server.
func (s *Server) CertificatePEM() []byte {
	c := s.srv.Certificate()
	if c == nil {
		return nil
	}
	return pemCert(c.Raw)
}

// Close stops the server and ends open connections, hung ones included.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}
