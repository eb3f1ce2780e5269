package s3

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regsweep/regsweep/storage"
)

// xmlPage is a ListObjectsV2 response as S3 servers write it, with the
// fields a parser must skip (owner, storage class, checksums).
type xmlPage struct {
	XMLName               xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ ListBucketResult"`
	Name                  string
	Prefix                string
	KeyCount              int
	MaxKeys               int
	EncodingType          string `xml:",omitempty"`
	IsTruncated           bool
	NextContinuationToken string `xml:",omitempty"`
	Contents              []xmlObject
	CommonPrefixes        []struct{ Prefix string }
}

type xmlObject struct {
	Key          string
	LastModified string
	ETag         string
	Size         int64
	Owner        *struct{ ID, DisplayName string } `xml:",omitempty"`
	StorageClass string
}

// randomName mixes what registry keys hold with what XML and URL encoding
// must carry: entities, '%', '+', spaces, non-ASCII.
func randomName(rng *rand.Rand) string {
	parts := []string{"docker/registry/v2/", "blobs/sha256/ab/", "a&b", "<tag>", "100%", "x+y", "sp ace", "ümlaut", "\"q\"", "'", "]]>", "-->", "日本"}
	var b strings.Builder
	for range 1 + rng.IntN(5) {
		b.WriteString(parts[rng.IntN(len(parts))])
	}
	return b.String()
}

// TestParseListPageReadsWhatServersWrite: pages written by encoding/xml,
// with and without URL-encoded names, parse to exactly what was written.
func TestParseListPageReadsWhatServersWrite(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 300 {
		encoded := i%2 == 0
		var want listPage
		doc := xmlPage{Name: "bucket", MaxKeys: 1000, IsTruncated: i%3 == 0}
		if encoded {
			doc.EncodingType = "url"
		}
		if doc.IsTruncated {
			doc.NextContinuationToken = fmt.Sprintf("token&%d/=", i)
			want.truncated, want.next = true, doc.NextContinuationToken
		}
		for range rng.IntN(40) {
			name := randomName(rng)
			mtime := time.Date(2026, 1, 1+rng.IntN(300), rng.IntN(24), 0, 0, rng.IntN(1000)*int(time.Millisecond), time.UTC)
			o := xmlObject{Key: name, LastModified: mtime.Format("2006-01-02T15:04:05.000Z"), ETag: fmt.Sprintf("\"%032x\"", rng.Uint64()), Size: rng.Int64N(1 << 40), StorageClass: "STANDARD"}
			if encoded {
				o.Key = url.QueryEscape(name)
			}
			if rng.IntN(2) == 0 {
				o.Owner = &struct{ ID, DisplayName string }{"id", "owner"}
			}
			doc.Contents = append(doc.Contents, o)
			want.objects = append(want.objects, listedObject{key: name, size: o.Size, mtime: mtime, etag: o.ETag})
		}
		for range rng.IntN(4) {
			name := randomName(rng) + "/"
			p := name
			if encoded {
				p = url.QueryEscape(name)
			}
			doc.CommonPrefixes = append(doc.CommonPrefixes, struct{ Prefix string }{p})
			want.prefixes = append(want.prefixes, name)
		}
		doc.KeyCount = len(doc.Contents) + len(doc.CommonPrefixes)
		body, err := xml.MarshalIndent(doc, "", strings.Repeat(" ", i%3))
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseListPage(strings.NewReader(xml.Header + string(body)))
		if err != nil {
			t.Fatalf("page %d: %v\n%s", i, err, body)
		}
		if fmt.Sprint(*got) != fmt.Sprint(want) {
			t.Fatalf("page %d:\n got %v\nwant %v\n%s", i, *got, want, body)
		}
	}
}

// TestParseListPageRefusesWhatIsNoListing: every way a page can be
// incomplete or not a listing is an error, never a shorter listing.
func TestParseListPageRefusesWhatIsNoListing(t *testing.T) {
	const object = `<Contents><Key>k</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified><ETag>"e"</ETag><Size>3</Size></Contents>`
	full := `<?xml version="1.0"?><ListBucketResult><IsTruncated>false</IsTruncated>` + object + object + `</ListBucketResult>`
	if p, err := parseListPage(strings.NewReader(full)); err != nil || len(p.objects) != 2 {
		t.Fatalf("the complete page: %v, %v", p, err)
	}
	// Cut anywhere before the root's end tag: malformed, and retried as a
	// cut connection is (storage.IsTransient).
	for n := range len(full) - len("</ListBucketResult>") + 1 {
		p, err := parseListPage(strings.NewReader(full[:n]))
		if !errors.Is(err, errMalformed) {
			t.Fatalf("cut at %d (%q): %v, %v", n, full[:n], p, err)
		}
		if n > 0 && !storage.IsTransient(err) {
			t.Fatalf("cut at %d (%q): %v is not transient", n, full[:n], err)
		}
	}
	bad := map[string]string{
		"no key":           `<ListBucketResult><Contents><LastModified>2026-01-02T03:04:05Z</LastModified><Size>1</Size></Contents></ListBucketResult>`,
		"no mtime":         `<ListBucketResult><Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>`,
		"no size":          `<ListBucketResult><Contents><Key>k</Key><LastModified>2026-01-02T03:04:05Z</LastModified></Contents></ListBucketResult>`,
		"bad mtime":        `<ListBucketResult><Contents><Key>k</Key><LastModified>yesterday</LastModified><Size>1</Size></Contents></ListBucketResult>`,
		"negative size":    `<ListBucketResult><Contents><Key>k</Key><LastModified>2026-01-02T03:04:05Z</LastModified><Size>-1</Size></Contents></ListBucketResult>`,
		"truncated, token": `<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>`,
		"error document":   `<Error><Code>AccessDenied</Code></Error>`,
		"mismatched tags":  `<ListBucketResult><Contents></IsTruncated></ListBucketResult>`,
		"doctype":          `<!DOCTYPE x><ListBucketResult></ListBucketResult>`,
		"unknown entity":   `<ListBucketResult><NextContinuationToken>&nbsp;</NextContinuationToken></ListBucketResult>`,
		"bad url encoding": `<ListBucketResult><EncodingType>url</EncodingType>` + strings.Replace(object, ">k<", ">%zz<", 1) + `</ListBucketResult>`,
		"empty":            ``,
		"text only":        `ListBucketResult`,
	}
	for name, doc := range bad {
		if p, err := parseListPage(strings.NewReader(doc)); !errors.Is(err, errMalformed) {
			t.Errorf("%s: %v, %v; want a malformed-listing error", name, p, err)
		}
	}
}

// TestParseListPageReadsXMLItMayMeet: comments, CDATA, a namespace
// prefix, attributes holding '>', self-closing elements, character
// references, and EncodingType after the entries it applies to.
func TestParseListPageReadsXMLItMayMeet(t *testing.T) {
	doc := `<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment -->
<s3:ListBucketResult xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/" note="a>b">
  <s3:Contents><s3:Key><![CDATA[a%26b<]]></s3:Key><LastModified>2026-01-02T03:04:05.123456Z</LastModified>
  <ETag>&quot;e&#34;&#x41;</ETag><Size>7</Size><Owner/></s3:Contents>
  <NextContinuationToken/>
  <CommonPrefixes><Prefix>p%2F/</Prefix></CommonPrefixes>
  <EncodingType>url</EncodingType>
</s3:ListBucketResult>`
	p, err := parseListPage(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := listPage{objects: []listedObject{{key: "a&b<", size: 7, mtime: time.Date(2026, 1, 2, 3, 4, 5, 123000000, time.UTC), etag: `"e"A`}}, prefixes: []string{"p//"}}
	if fmt.Sprint(*p) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", *p, want)
	}
}

// FuzzParseListPage: any body either parses or fails as malformed (a
// read error cannot happen from a string), and a parsed entry always has
// its key and time.
func FuzzParseListPage(f *testing.F) {
	f.Add(`<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>t</NextContinuationToken><Contents><Key>k</Key><LastModified>2026-01-02T03:04:05Z</LastModified><Size>1</Size></Contents></ListBucketResult>`)
	f.Add(`<ListBucketResult><CommonPrefixes><Prefix>a/</Prefix></CommonPrefixes><EncodingType>url</EncodingType></ListBucketResult>`)
	f.Add(`<?xml version="1.0"?><!-- c --><ListBucketResult a='>'><![CDATA[x]]></ListBucketResult>`)
	f.Fuzz(func(t *testing.T, body string) {
		p, err := parseListPage(strings.NewReader(body))
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("error %v is not a malformed-listing error", err)
			}
			return
		}
		for _, o := range p.objects {
			if o.key == "" || o.mtime.IsZero() {
				t.Fatalf("entry without key or time: %+v", o)
			}
		}
		if p.truncated && p.next == "" {
			t.Fatal("truncated page without a continuation token")
		}
	})
}

// A listing parses its pages into the same buffers: nothing of a page
// may show in the next.
func TestPageParserReusesNothingOfTheLastPage(t *testing.T) {
	first := `<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>t1</NextContinuationToken><EncodingType>url</EncodingType>` +
		`<Contents><Key>a%2Fb</Key><LastModified>2026-01-02T03:04:05Z</LastModified><Size>1</Size><ETag>"e1"</ETag></Contents>` +
		`<Contents><Key>c</Key><LastModified>2026-01-02T03:04:06Z</LastModified><Size>2</Size></Contents>` +
		`<CommonPrefixes><Prefix>p%2F</Prefix></CommonPrefixes></ListBucketResult>`
	second := `<ListBucketResult><IsTruncated>false</IsTruncated>` +
		`<Contents><Key>d&amp;e</Key><LastModified>2026-01-02T03:04:07Z</LastModified><Size>3</Size></Contents></ListBucketResult>`
	var p pageParser
	page, err := p.parse(strings.NewReader(first))
	if err != nil {
		t.Fatal(err)
	}
	kept := slices.Clone(page.objects)
	if len(kept) != 2 || kept[0].key != "a/b" || kept[0].etag != `"e1"` || !page.truncated || page.next != "t1" || len(page.prefixes) != 1 || page.prefixes[0] != "p/" {
		t.Fatalf("first page: %+v", page)
	}
	page, err = p.parse(strings.NewReader(second))
	if err != nil {
		t.Fatal(err)
	}
	if len(page.objects) != 1 || page.objects[0].key != "d&e" || page.objects[0].etag != "" || page.objects[0].size != 3 ||
		page.truncated || page.next != "" || len(page.prefixes) != 0 {
		t.Fatalf("second page: %+v", page)
	}
	if kept[0].key != "a/b" || kept[1].key != "c" || kept[1].size != 2 {
		t.Fatalf("entries taken from the first page changed: %+v", kept)
	}
}

// parseListPage parses one page with a parser of its own.
func parseListPage(r io.Reader) (*listPage, error) {
	var p pageParser
	return p.parse(r)
}
