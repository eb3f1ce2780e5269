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
		want := listPage{keyCount: -1}
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
		want.keyCount = doc.KeyCount
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
		"no key":              `<ListBucketResult><Contents><LastModified>2026-01-02T03:04:05Z</LastModified><Size>1</Size></Contents></ListBucketResult>`,
		"no mtime":            `<ListBucketResult><Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>`,
		"no size":             `<ListBucketResult><Contents><Key>k</Key><LastModified>2026-01-02T03:04:05Z</LastModified></Contents></ListBucketResult>`,
		"bad mtime":           `<ListBucketResult><Contents><Key>k</Key><LastModified>yesterday</LastModified><Size>1</Size></Contents></ListBucketResult>`,
		"negative size":       `<ListBucketResult><Contents><Key>k</Key><LastModified>2026-01-02T03:04:05Z</LastModified><Size>-1</Size></Contents></ListBucketResult>`,
		"truncated, no token": `<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>`,
		"error document":      `<Error><Code>AccessDenied</Code></Error>`,
		"mismatched tags":     `<ListBucketResult><Contents></IsTruncated></ListBucketResult>`,
		"doctype":             `<!DOCTYPE x><ListBucketResult></ListBucketResult>`,
		"unknown entity":      `<ListBucketResult><NextContinuationToken>&nbsp;</NextContinuationToken></ListBucketResult>`,
		"bad url encoding":    `<ListBucketResult><EncodingType>url</EncodingType>` + strings.Replace(object, ">k<", ">%zz<", 1) + `</ListBucketResult>`,
		"empty":               ``,
		"text only":           `ListBucketResult`,
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
  <NextContinuationToken/><IsTruncated>false</IsTruncated>
  <CommonPrefixes><Prefix>p%2F/</Prefix></CommonPrefixes>
  <EncodingType>url</EncodingType>
</s3:ListBucketResult>`
	p, err := parseListPage(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := listPage{objects: []listedObject{{key: "a&b<", size: 7, mtime: time.Date(2026, 1, 2, 3, 4, 5, 123000000, time.UTC), etag: `"e"A`}}, prefixes: []string{"p//"}, keyCount: -1}
	if fmt.Sprint(*p) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", *p, want)
	}
}

// FuzzParseListPage: any body, read as a V2 and as a V1 page, either
// parses or fails as malformed (a read error cannot happen from a
// string); a parsed entry always has its key and time, and a parsed page
// never contradicts itself: it said whether it is truncated, names where
// the next page starts exactly when it is (V1 may leave that to its last
// key), and holds as many entries as its KeyCount says.
func FuzzParseListPage(f *testing.F) {
	f.Add(`<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>t</NextContinuationToken><Contents><Key>k</Key><LastModified>2026-01-02T03:04:05Z</LastModified><Size>1</Size></Contents></ListBucketResult>`)
	f.Add(`<ListBucketResult><IsTruncated> 1 </IsTruncated><NextMarker>k</NextMarker><KeyCount>1</KeyCount><Contents><Key>k</Key><LastModified>2026-01-02T03:04:05Z</LastModified><Size>1</Size></Contents></ListBucketResult>`)
	f.Add(`<ListBucketResult><CommonPrefixes><Prefix>a/</Prefix></CommonPrefixes><EncodingType>url</EncodingType><IsTruncated>False</IsTruncated><KeyCount>1</KeyCount></ListBucketResult>`)
	f.Add(`<?xml version="1.0"?><!-- c --><ListBucketResult a='>'><![CDATA[x]]></ListBucketResult>`)
	f.Fuzz(func(t *testing.T, body string) {
		for _, v1 := range []bool{false, true} {
			p := pageParser{v1: v1}
			page, err := p.parse(strings.NewReader(body))
			if err != nil {
				if !errors.Is(err, errMalformed) {
					t.Fatalf("v1=%v: error %v is not a malformed-listing error", v1, err)
				}
				continue
			}
			for _, o := range page.objects {
				if o.key == "" || o.mtime.IsZero() {
					t.Fatalf("v1=%v: entry without key or time: %+v", v1, o)
				}
			}
			switch {
			case !strings.Contains(body, "IsTruncated"):
				t.Fatalf("v1=%v: a page without IsTruncated parsed", v1)
			case page.truncated && page.next == "" && !v1:
				t.Fatal("truncated page without a continuation token")
			case !page.truncated && page.next != "":
				t.Fatalf("v1=%v: a last page names a next one: %q", v1, page.next)
			case page.keyCount >= 0 && page.keyCount != len(page.objects)+len(page.prefixes):
				t.Fatalf("v1=%v: KeyCount %d for %d entries", v1, page.keyCount, len(page.objects)+len(page.prefixes))
			}
		}
	})
}

// TestParseListPageReadsBooleansAsClientsDo: IsTruncated is read as
// minio-go and the AWS SDKs read it, padding and case included; anything
// else, or no IsTruncated at all, is an error, never a last page.
func TestParseListPageReadsBooleansAsClientsDo(t *testing.T) {
	page := func(truncated string) string {
		return `<ListBucketResult>` + truncated + `<NextContinuationToken>t</NextContinuationToken></ListBucketResult>`
	}
	for _, v := range []string{"true", "True", "TRUE", "1", "t", " true ", "\n\ttrue\n"} {
		p, err := parseListPage(strings.NewReader(page("<IsTruncated>" + v + "</IsTruncated>")))
		if err != nil || !p.truncated || p.next != "t" {
			t.Errorf("IsTruncated %q: %+v, %v; want a truncated page", v, p, err)
		}
	}
	last := `<ListBucketResult><IsTruncated>%s</IsTruncated></ListBucketResult>`
	for _, v := range []string{"false", "False", "0", " false"} {
		p, err := parseListPage(strings.NewReader(fmt.Sprintf(last, v)))
		if err != nil || p.truncated {
			t.Errorf("IsTruncated %q: %+v, %v; want the last page", v, p, err)
		}
	}
	for _, v := range []string{"", "yes", "truee", "tru e", "2"} {
		if p, err := parseListPage(strings.NewReader(page("<IsTruncated>" + v + "</IsTruncated>"))); !errors.Is(err, errMalformed) || !strings.Contains(fmt.Sprint(err), "IsTruncated") {
			t.Errorf("IsTruncated %q: %v, %v; want an error naming IsTruncated", v, p, err)
		}
	}
}

// TestParseListPageRefusesContradictions: each way a page can contradict
// itself is an error naming the contradiction (docs/bad-input.md).
func TestParseListPageRefusesContradictions(t *testing.T) {
	const object = `<Contents><Key>k</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified><Size>3</Size></Contents>`
	cases := []struct {
		name, doc, want string
		v1              bool
	}{
		{"no IsTruncated, with a token", `<ListBucketResult><NextContinuationToken>t</NextContinuationToken>` + object + `</ListBucketResult>`, "has no IsTruncated", false},
		{"no IsTruncated at all", `<ListBucketResult>` + object + `</ListBucketResult>`, "has no IsTruncated", false},
		{"not truncated, with a token", `<ListBucketResult><IsTruncated>false</IsTruncated><NextContinuationToken>t</NextContinuationToken>` + object + `</ListBucketResult>`, "not truncated names a continuation token", false},
		{"truncated, no token", `<ListBucketResult><IsTruncated>true</IsTruncated>` + object + `</ListBucketResult>`, "truncated without a continuation token", false},
		{"KeyCount above the keys", `<ListBucketResult><IsTruncated>false</IsTruncated><KeyCount>1000</KeyCount>` + object + `</ListBucketResult>`, "KeyCount 1000, but the page holds 1 keys", false},
		{"KeyCount below the keys", `<ListBucketResult><IsTruncated>false</IsTruncated><KeyCount>1</KeyCount>` + object + object + `</ListBucketResult>`, "KeyCount 1, but the page holds 2 keys", false},
		{"KeyCount not a number", `<ListBucketResult><IsTruncated>false</IsTruncated><KeyCount>many</KeyCount></ListBucketResult>`, "KeyCount", false},
		{"IsTruncated twice", `<ListBucketResult><IsTruncated>true</IsTruncated><IsTruncated>false</IsTruncated></ListBucketResult>`, "IsTruncated given twice", false},
		{"two tokens", `<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>a</NextContinuationToken><NextContinuationToken>b</NextContinuationToken></ListBucketResult>`, "given twice", false},
		{"V1 not truncated, with a NextMarker", `<ListBucketResult><IsTruncated>false</IsTruncated><NextMarker>k</NextMarker>` + object + `</ListBucketResult>`, "not truncated names a NextMarker", true},
		{"V1 no IsTruncated", `<ListBucketResult><NextMarker>k</NextMarker>` + object + `</ListBucketResult>`, "has no IsTruncated", true},
	}
	for _, c := range cases {
		p := pageParser{v1: c.v1}
		page, err := p.parse(strings.NewReader(c.doc))
		if !errors.Is(err, errMalformed) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %+v, %v; want an error saying %q", c.name, page, err, c.want)
		}
	}
	// KeyCount counts common prefixes too, as S3 and MinIO count them.
	doc := `<ListBucketResult><IsTruncated>false</IsTruncated><KeyCount>2</KeyCount>` + object + `<CommonPrefixes><Prefix>p/</Prefix></CommonPrefixes></ListBucketResult>`
	if _, err := parseListPage(strings.NewReader(doc)); err != nil {
		t.Errorf("a KeyCount of keys and common prefixes: %v", err)
	}
	// A V1 truncated page may leave NextMarker out; a V2 page's
	// NextMarker (or a V1 page's continuation token) is not its own.
	for _, c := range []struct {
		doc string
		v1  bool
	}{
		{`<ListBucketResult><IsTruncated>true</IsTruncated>` + object + `</ListBucketResult>`, true},
		{`<ListBucketResult><IsTruncated>false</IsTruncated><NextMarker>k</NextMarker></ListBucketResult>`, false},
		{`<ListBucketResult><IsTruncated>false</IsTruncated><NextContinuationToken>k</NextContinuationToken></ListBucketResult>`, true},
	} {
		p := pageParser{v1: c.v1}
		if _, err := p.parse(strings.NewReader(c.doc)); err != nil {
			t.Errorf("v1=%v %s: %v", c.v1, c.doc, err)
		}
	}
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
