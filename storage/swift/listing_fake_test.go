package swift_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ncw/swift/v2/swifttest"

	"github.com/regsweep/regsweep/storage"
)

// pageRewrite changes the fake's container listing pages, cut to the
// limit asked for: edit gets the marker the request sent and the page's
// entries.
func pageRewrite(edit func(marker string, objs []map[string]any) []map[string]any) swifttest.HandlerOverrideFunc {
	return func(w http.ResponseWriter, r *http.Request, rec *httptest.ResponseRecorder) {
		var objs []map[string]any
		if r.Method != http.MethodGet || json.Unmarshal(rec.Body.Bytes(), &objs) != nil {
			copyRecorded(w, rec, nil)
			return
		}
		var limit int
		fmt.Sscan(r.URL.Query().Get("limit"), &limit)
		if limit > 0 && len(objs) > limit {
			objs = objs[:limit]
		}
		b, _ := json.Marshal(edit(r.URL.Query().Get("marker"), objs))
		copyRecorded(w, rec, b)
	}
}

// TestListingPagesThatRepeatOrGoBack: Swift pages by marker, so a page
// whose names do not sort after the marker, or after each other, cannot
// be placed in the listing: the walk fails naming the prefix and the
// name, where ncw/swift would have gone on (a repeated name) or stopped
// early (a page that goes back and then ends short).
func TestListingPagesThatRepeatOrGoBack(t *testing.T) {
	cases := []struct {
		name string
		edit func(marker string, objs []map[string]any) []map[string]any
		want string
	}{
		{"a page that starts again at the marker", func(marker string, objs []map[string]any) []map[string]any {
			if marker == "" {
				return objs
			}
			return append([]map[string]any{{"name": marker, "bytes": 1, "hash": "x", "last_modified": "2024-01-02T03:04:05.000000", "content_type": "x"}}, objs...)
		}, "a page that repeats or goes back"},
		{"names out of order", func(marker string, objs []map[string]any) []map[string]any {
			if marker == "" && len(objs) > 2 {
				objs[1], objs[2] = objs[2], objs[1]
			}
			return objs
		}, "a page that repeats or goes back"},
		{"a name repeated within a page", func(marker string, objs []map[string]any) []map[string]any {
			if marker == "" && len(objs) > 2 {
				objs[2] = objs[1]
			}
			return objs
		}, "a page that repeats or goes back"},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			f := newFake(t, map[string]swifttest.HandlerOverrideFunc{
				"/info": infoOverride(map[string]any{"swift": map[string]any{"container_listing_limit": 5}}),
				"/v1/AUTH_" + swifttest.TEST_ACCOUNT + "/" + fakeContainer: pageRewrite(c.edit),
			})
			d := f.open(t, f.config(), nil)
			putKeys(t, d, 12)
			var n int
			err := d.Walk(context.Background(), "d/", func(storage.ObjectInfo) error { n++; return nil })
			var pe *storage.PathError
			if !errors.As(err, &pe) || pe.Key != "d/" || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Walk: %v after %d keys; want an error for d/ saying %q", err, n, c.want)
			}
		})
	}
}
