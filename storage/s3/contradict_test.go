package s3_test

// Contradictory listing pages, served by a fake: a real MinIO never sends
// them, but a proxy, a gateway or an S3 clone might. Each must end the
// listing with an error naming the prefix, never pass for its end.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/storage/s3"
)

func entry(key string) string {
	return `<Contents><Key>` + key + `</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified><ETag>"e"</ETag><Size>1</Size></Contents>`
}

func page(inner string) string {
	return `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>reg</Name>` + inner + `</ListBucketResult>`
}

// pagedS3 answers a listing with pages[cursor], where cursor is the
// request's continuation token (V2) or marker (V1), "" for the first page;
// a cursor it has no page for is a test failure.
func pagedS3(t *testing.T, pages map[string]string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		w.Header().Set("Content-Type", "application/xml")
		switch {
		case r.Method == http.MethodHead:
			w.WriteHeader(http.StatusOK)
		case r.Method == http.MethodGet && (q.Has("list-type") || q.Has("prefix")):
			cursor := q.Get("continuation-token")
			if !q.Has("list-type") {
				cursor = q.Get("marker")
			}
			p, ok := pages[cursor]
			if !ok {
				t.Errorf("fake S3: no page for cursor %q", cursor)
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			w.Write([]byte(p))
		default:
			t.Errorf("fake S3: unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusNotImplemented)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// pagedDriver opens the driver on pagedS3(pages), listing with V1 or V2.
func pagedDriver(t *testing.T, pages map[string]string, v1 bool) *s3.Driver {
	t.Helper()
	cfg := fakeConfig(pagedS3(t, pages).URL)
	cfg.ListV1 = v1
	d, err := s3.New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestFakeContradictoryPagesEndTheListing: every contradictory page kind
// (docs/bad-input.md) fails the walk with a *PathError for the prefix
// listed that says what is wrong; the keys after it are never taken for
// the end. On a listing whose first page claims to be the last while
// naming the next, all but the contradiction would pass unnoticed.
func TestFakeContradictoryPagesEndTheListing(t *testing.T) {
	second := page(`<IsTruncated>false</IsTruncated>` + entry("root/docker/c"))
	cases := []struct {
		name  string
		v1    bool
		pages map[string]string
		want  string
	}{
		{"no IsTruncated, with a token", false, map[string]string{
			"": page(`<KeyCount>1</KeyCount><NextContinuationToken>p2</NextContinuationToken>` + entry("root/docker/a")), "p2": second},
			"has no IsTruncated"},
		{"IsTruncated that is no boolean", false, map[string]string{
			"": page(`<IsTruncated>yes</IsTruncated><NextContinuationToken>p2</NextContinuationToken>` + entry("root/docker/a")), "p2": second},
			`IsTruncated "yes" is not a boolean`},
		{"not truncated, with a token", false, map[string]string{
			"": page(`<IsTruncated>false</IsTruncated><NextContinuationToken>p2</NextContinuationToken>` + entry("root/docker/a")), "p2": second},
			"not truncated names a continuation token"},
		{"truncated without a token", false, map[string]string{
			"": page(`<IsTruncated>true</IsTruncated>` + entry("root/docker/a"))},
			"truncated without a continuation token"},
		{"KeyCount that disagrees", false, map[string]string{
			"": page(`<IsTruncated>false</IsTruncated><KeyCount>1000</KeyCount>` + entry("root/docker/a"))},
			"KeyCount 1000, but the page holds 1 keys"},
		{"a token that does not advance", false, map[string]string{
			"":   page(`<IsTruncated>true</IsTruncated><NextContinuationToken>p2</NextContinuationToken>` + entry("root/docker/a")),
			"p2": page(`<IsTruncated>true</IsTruncated><NextContinuationToken>p2</NextContinuationToken>` + entry("root/docker/b"))},
			"does not advance"},
		{"a key outside the prefix", false, map[string]string{
			"": page(`<IsTruncated>false</IsTruncated>` + entry("root/docker/a") + entry("other/docker/b"))},
			`key "other/docker/b" is outside the prefix listed`},
		{"V1 not truncated, with a NextMarker", true, map[string]string{
			"": page(`<IsTruncated>false</IsTruncated><NextMarker>root/docker/a</NextMarker>` + entry("root/docker/a")), "root/docker/a": second},
			"not truncated names a NextMarker"},
		{"V1 no IsTruncated", true, map[string]string{
			"": page(entry("root/docker/a")), "root/docker/a": second},
			"has no IsTruncated"},
		{"V1 truncated, empty, without a NextMarker", true, map[string]string{
			"": page(`<IsTruncated>true</IsTruncated>`)},
			"truncated page without a NextMarker"},
		{"V1 a marker that goes back", true, map[string]string{
			"":              page(`<IsTruncated>true</IsTruncated>` + entry("root/docker/b")),
			"root/docker/b": page(`<IsTruncated>true</IsTruncated><NextMarker>root/docker/a</NextMarker>` + entry("root/docker/c"))},
			"does not advance"},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			d := pagedDriver(t, c.pages, c.v1)
			var got []string
			err := d.Walk(context.Background(), "docker/", func(oi storage.ObjectInfo) error { got = append(got, oi.Key); return nil })
			var pe *storage.PathError
			if !errors.As(err, &pe) || pe.Op != "list" || pe.Key != "docker/" || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Walk: %v after %v; want a list error for docker/ saying %q", err, got, c.want)
			}
		})
	}
}

// TestFakeListingsThatAgree: what S3 allows is no contradiction: a V1
// page without NextMarker goes on after its last key, IsTruncated in any
// form a client reads, a KeyCount that counts common prefixes.
func TestFakeListingsThatAgree(t *testing.T) {
	for _, c := range []struct {
		name  string
		v1    bool
		pages map[string]string
	}{
		{"V2", false, map[string]string{
			"":   page(`<KeyCount>2</KeyCount><IsTruncated> True </IsTruncated><NextContinuationToken>p2</NextContinuationToken>` + entry("root/docker/a") + entry("root/docker/b")),
			"p2": page(`<IsTruncated>0</IsTruncated><KeyCount>1</KeyCount>` + entry("root/docker/c"))}},
		{"V1", true, map[string]string{
			"":              page(`<IsTruncated>1</IsTruncated>` + entry("root/docker/a") + entry("root/docker/b")),
			"root/docker/b": page(`<IsTruncated>false</IsTruncated>` + entry("root/docker/c"))}},
	} {
		d := pagedDriver(t, c.pages, c.v1)
		var got []string
		if err := d.Walk(context.Background(), "docker/", func(oi storage.ObjectInfo) error { got = append(got, oi.Key); return nil }); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if fmt.Sprint(got) != "[docker/a docker/b docker/c]" {
			t.Errorf("%s: walked %v", c.name, got)
		}
	}
}

// TestFakeContradictoryDirAndUploadListings: the delimiter listing the
// walker splits a tree with, and the multipart upload listing, refuse
// contradictions as Walk does.
func TestFakeContradictoryDirAndUploadListings(t *testing.T) {
	ctx := context.Background()
	prefixes := `<CommonPrefixes><Prefix>root/docker/a/</Prefix></CommonPrefixes>`
	for _, c := range []struct {
		name  string
		v1    bool
		pages map[string]string
		want  string
	}{
		{"no IsTruncated", false, map[string]string{"": page(`<NextContinuationToken>p2</NextContinuationToken>` + prefixes)}, "has no IsTruncated"},
		{"KeyCount without the common prefixes", false, map[string]string{"": page(`<IsTruncated>false</IsTruncated><KeyCount>0</KeyCount>` + prefixes)}, "KeyCount 0, but the page holds 0 keys and 1 common prefixes"},
		{"common prefix outside", false, map[string]string{"": page(`<IsTruncated>false</IsTruncated><CommonPrefixes><Prefix>elsewhere/</Prefix></CommonPrefixes>`)}, `common prefix "elsewhere/" is outside`},
		{"V1 truncated without a NextMarker", true, map[string]string{"": page(`<IsTruncated>true</IsTruncated>` + entry("root/docker/x") + prefixes)}, "without a NextMarker"},
	} {
		d := pagedDriver(t, c.pages, c.v1)
		err := d.ListDir(ctx, "docker/", func(storage.ObjectInfo, bool) error { return nil })
		var pe *storage.PathError
		if !errors.As(err, &pe) || pe.Key != "docker/" || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ListDir, %s: %v; want a list error for docker/ saying %q", c.name, err, c.want)
		}
	}

	upload := `<Upload><Key>root/docker/u/data</Key><UploadId>id1</UploadId><Initiated>2024-01-02T03:04:05.000Z</Initiated></Upload>`
	for _, c := range []struct{ name, body, want string }{
		{"no IsTruncated", upload, "has no IsTruncated"},
		{"IsTruncated that is no boolean", `<IsTruncated>maybe</IsTruncated>` + upload, `IsTruncated "maybe" is not a boolean`},
		{"truncated without a next marker", `<IsTruncated>true</IsTruncated>` + upload, "without a next marker"},
		{"an upload without its start", `<IsTruncated>false</IsTruncated><Upload><Key>root/docker/u/data</Key><UploadId>id1</UploadId></Upload>`, "without its key, id or start time"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodHead {
				return
			}
			if !r.URL.Query().Has("uploads") {
				t.Errorf("fake S3: unexpected %s %s", r.Method, r.URL)
			}
			w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>reg</Bucket>` + c.body + `</ListMultipartUploadsResult>`))
		}))
		d, err := s3.New(ctx, fakeConfig(srv.URL), nil)
		if err != nil {
			t.Fatal(err)
		}
		err = d.WalkMultipartUploads(ctx, "docker/u/data", func(storage.MultipartUpload) error { return nil })
		var pe *storage.PathError
		if !errors.As(err, &pe) || pe.Op != "list-multipart" || !strings.Contains(err.Error(), c.want) {
			t.Errorf("uploads, %s: %v; want a list-multipart error saying %q", c.name, err, c.want)
		}
		srv.Close()
	}
}
