package swift_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/regsweep/regsweep/storage/swift"
)

// An auth server that hands out a storage URL nobody here can reach (a
// Swift or Ceph RGW behind a proxy): the error names that URL, the auth
// server, and --swift-storage-url; with the flag's URL it opens.
func TestUnreachableStorageURLNamesTheFlag(t *testing.T) {
	f := newFake(t, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String() + f.storagePath
	l.Close()
	// An auth front that rewrites X-Storage-Url as a proxy's backend would.
	target := &url.URL{Scheme: "http", Host: f.srv.Listener.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(r *http.Response) error {
		if r.Header.Get("X-Storage-Url") != "" {
			r.Header.Set("X-Storage-Url", dead)
		}
		return nil
	}
	auth := httptest.NewServer(rp)
	t.Cleanup(auth.Close)
	cfg := f.config()
	cfg.AuthURL = auth.URL + "/v1.0"
	ctx := context.Background()
	_, err = swift.New(ctx, cfg, nil)
	for _, want := range []string{"cannot reach the storage URL " + dead, "that the auth server " + cfg.AuthURL + " returned", "--swift-storage-url"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("unreachable storage URL: %v, want %q in it", err, want)
		}
	}
	cfg.StorageURL = fmt.Sprintf("http://%s%s", f.srv.Listener.Addr(), f.storagePath)
	if _, err := swift.New(ctx, cfg, nil); err != nil {
		t.Errorf("with the storage URL given: %v", err)
	}
}
