package walker

import (
	"crypto/md5"
	"encoding/hex"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/layout"
)

// FuzzParseLink: a link parses only when its content is exactly one
// canonical digest, which then has a blob key and whose ETag is the MD5 of
// the content (so the walker's ETag shortcut and a read agree); anything
// else is corrupt with a reason and no digest. Writing the digest back
// gives the same content.
func FuzzParseLink(f *testing.F) {
	valid := "sha256:" + hex.EncodeToString(make([]byte, 32))
	for _, s := range []string{
		valid,
		valid + "\n",
		" " + valid,
		"",
		"garbage",
		"sha256:",
		"sha256:ABCDEF",
		"sha512:" + hex.EncodeToString(make([]byte, 64)),
		"sha384:" + hex.EncodeToString(make([]byte, 48)),
		"md5:d41d8cd98f00b204e9800998ecf8427e",
		"sha256:" + hex.EncodeToString(make([]byte, 31)),
		valid + valid,
		"\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, reason := ParseLink(b)
		if reason != "" {
			if d != "" {
				t.Fatalf("ParseLink(%q) = %q with reason %q: a corrupt link must name no digest", b, d, reason)
			}
			// Quoted and truncated: hostile content neither blows up the
			// message nor puts invalid UTF-8 into logs and reports.
			if len(reason) > 400 || !utf8.ValidString(reason) {
				t.Fatalf("reason %q (%d bytes) is too long or not UTF-8", reason, len(reason))
			}
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("ParseLink(%q) accepted invalid digest %q: %v", b, d, err)
		}
		if d.String() != string(b) {
			t.Fatalf("ParseLink(%q) = %q: accepted content that is not exactly the digest", b, d)
		}
		if _, err := layout.Path(layout.BlobData{Digest: d}); err != nil {
			t.Fatalf("accepted digest %q has no blob key: %v", d, err)
		}
		sum := md5.Sum(b)
		if LinkETag(d) != hex.EncodeToString(sum[:]) {
			t.Fatalf("LinkETag(%q) is not the MD5 of the link's content", d)
		}
		again, reason := ParseLink([]byte(d.String()))
		if reason != "" || again != d {
			t.Fatalf("round trip of %q: %q %q", d, again, reason)
		}
		if digest.Digest(b) != d {
			t.Fatalf("digest changed on parse")
		}
	})
}

// linkETagMatches answers as the strings it replaces do, for any ETag.
func FuzzLinkETagMatches(f *testing.F) {
	d := digest.FromString("layer")
	f.Add(LinkETag(d), string(d))
	f.Add(strings.ToUpper(LinkETag(d)), string(d))
	f.Add(LinkETag(d)[1:]+"0", string(d))
	f.Add(LinkETag(d)+"-1", string(d))
	f.Add("", string(d))
	f.Add(LinkETag(digest.SHA512.FromString("x")), string(digest.SHA512.FromString("x")))
	f.Fuzz(func(t *testing.T, etag, d string) {
		want := strings.EqualFold(etag, LinkETag(digest.Digest(d)))
		if got := linkETagMatches(etag, digest.Digest(d)); got != want {
			t.Fatalf("linkETagMatches(%q, %q) = %v, want %v", etag, d, got, want)
		}
	})
}
