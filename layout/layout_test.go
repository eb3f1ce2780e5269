package layout

import (
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

const (
	hexA = "9644c8a3a0b4a43b38bdcd7dd8da2b9c1ec6dc3d0b36f8c8e06c0b59d4d5dd0a"
	hexB = "0000000000000000000000000000000000000000000000000000000000000001"
)

var (
	dA = digest.Digest("sha256:" + hexA)
	dB = digest.Digest("sha256:" + hexB)
)

func TestPathAndParse(t *testing.T) {
	cases := []struct {
		spec Spec
		key  string
	}{
		{BlobData{dA}, "docker/registry/v2/blobs/sha256/96/" + hexA + "/data"},
		{LayerLink{"library/ubuntu", dA}, "docker/registry/v2/repositories/library/ubuntu/_layers/sha256/" + hexA + "/link"},
		{RevisionLink{"a", dA}, "docker/registry/v2/repositories/a/_manifests/revisions/sha256/" + hexA + "/link"},
		{RevisionLink{"a/b", dA}, "docker/registry/v2/repositories/a/b/_manifests/revisions/sha256/" + hexA + "/link"},
		{SignatureLink{"a", dA, dB}, "docker/registry/v2/repositories/a/_manifests/revisions/sha256/" + hexA + "/signatures/sha256/" + hexB + "/link"},
		{TagCurrentLink{"x/y/z", "v1.0"}, "docker/registry/v2/repositories/x/y/z/_manifests/tags/v1.0/current/link"},
		{TagCurrentLink{"a", "sha256-" + hexA + ".sig"}, "docker/registry/v2/repositories/a/_manifests/tags/sha256-" + hexA + ".sig/current/link"},
		{TagIndexLink{"a", "latest", dB}, "docker/registry/v2/repositories/a/_manifests/tags/latest/index/sha256/" + hexB + "/link"},
		{UploadData{"a", "6b8c1a3e-7f2e-4d2a-9b1c-1f2e3d4c5b6a"}, "docker/registry/v2/repositories/a/_uploads/6b8c1a3e-7f2e-4d2a-9b1c-1f2e3d4c5b6a/data"},
		{UploadStartedAt{"a", "u1"}, "docker/registry/v2/repositories/a/_uploads/u1/startedat"},
		{UploadHashState{"a", "u1", "sha256", 1048576}, "docker/registry/v2/repositories/a/_uploads/u1/hashstates/sha256/1048576"},
	}
	for _, c := range cases {
		got, err := Path(c.spec)
		if err != nil || got != c.key {
			t.Errorf("Path(%#v) = %q, %v; want %q", c.spec, got, err, c.key)
		}
		back, err := Parse(c.key)
		if err != nil || back != c.spec {
			t.Errorf("Parse(%q) = %#v, %v; want %#v", c.key, back, err, c.spec)
		}
	}
}

func TestParseRejects(t *testing.T) {
	outside := []string{"scheduler-state.json", "docker/registry/lockfiles/database-in-use", "charts/x.tgz", "docker/registry/v2"}
	for _, k := range outside {
		if _, err := Parse(k); !errors.Is(err, ErrOutside) {
			t.Errorf("Parse(%q): want ErrOutside, got %v", k, err)
		}
	}
	unknown := []string{
		"docker/registry/v2/blobs/sha256/96/" + hexA,                                       // no data
		"docker/registry/v2/blobs/sha256/00/" + hexA + "/data",                             // wrong shard
		"docker/registry/v2/blobs/sha256/96/" + strings.ToUpper(hexA) + "/data",            // upper hex
		"docker/registry/v2/blobs/sha256/96/9644/data",                                     // short hex
		"docker/registry/v2/repositories/a/_layers/sha256/" + hexA,                         // no link
		"docker/registry/v2/repositories/_layers/sha256/" + hexA + "/link",                 // no repo
		"docker/registry/v2/repositories/../etc/_layers/sha256/" + hexA + "/link",          // ..
		"docker/registry/v2/repositories/A/_layers/sha256/" + hexA + "/link",               // upper-case repo
		"docker/registry/v2/repositories/a//b/_layers/sha256/" + hexA + "/link",            // empty component
		"docker/registry/v2/repositories/a/_manifests/tags/latest/link",                    // no current
		"docker/registry/v2/repositories/a/_manifests/revisions/md5/" + hexA + "/link",     // bad alg length
		"docker/registry/v2/repositories/a/_uploads/u1/hashstates/sha256/x",                // bad offset
		"docker/registry/v2/repositories/a/somethingelse",                                  // no kind
		"docker/registry/v2/other/x",                                                       // unknown top
		"docker/registry/v2/repositories/a/_manifests/tags/-bad/current/link",              // bad tag
		"docker/registry/v2/repositories/a/_uploads/u1/hashstates/sha256/007",              // non-canonical number
		"docker/registry/v2/repositories/a/_manifests/revisions/sha256/" + hexA + "/link/", // trailing slash
		"docker/registry/v2/repositories/a\xff/_layers/sha256/" + hexA + "/link",           // invalid UTF-8
	}
	for _, k := range unknown {
		if s, err := Parse(k); !errors.Is(err, ErrUnknown) {
			t.Errorf("Parse(%q): want ErrUnknown, got %#v, %v", k, s, err)
		}
	}
}

func TestPathRejectsInvalidSpecs(t *testing.T) {
	bad := []Spec{
		BlobData{"sha256:xyz"},
		LayerLink{"../x", dA},
		LayerLink{"", dA},
		TagCurrentLink{"a", "bad/tag"},
		UploadData{"a", "../../etc"},
		UploadHashState{"a", "u", "SHA256", 0},
	}
	for _, s := range bad {
		if p, err := Path(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("Path(%#v) = %q, %v; want ErrInvalid", s, p, err)
		}
	}
}

func TestNestedRepositories(t *testing.T) {
	a, _ := Parse("docker/registry/v2/repositories/a/_layers/sha256/" + hexA + "/link")
	ab, _ := Parse("docker/registry/v2/repositories/a/b/_layers/sha256/" + hexA + "/link")
	if Repo(a) != "a" || Repo(ab) != "a/b" {
		t.Fatalf("repos: %q %q", Repo(a), Repo(ab))
	}
	if RepoPrefix("a") == RepoPrefix("ab")[:len(RepoPrefix("a"))] {
		t.Fatalf("repo prefixes of a and ab overlap")
	}
}

// FuzzParse: whatever Parse accepts, Path writes back to the same key, and
// nothing outside the registry root is ever accepted.
func FuzzParse(f *testing.F) {
	f.Add("docker/registry/v2/blobs/sha256/96/" + hexA + "/data")
	f.Add("docker/registry/v2/repositories/a/b/_manifests/tags/v1/index/sha256/" + hexB + "/link")
	f.Add("docker/registry/v2/repositories/a/_uploads/u/hashstates/sha256/5")
	f.Add("docker/registry/v2/repositories/a/_manifests/revisions/sha256/" + hexA + "/signatures/sha256/" + hexB + "/link")
	f.Add("scheduler-state.json")
	f.Fuzz(func(t *testing.T, key string) {
		s, err := Parse(key)
		if err != nil {
			if !errors.Is(err, ErrOutside) && !errors.Is(err, ErrUnknown) {
				t.Fatalf("Parse(%q): unexpected error kind %v", key, err)
			}
			return
		}
		if !strings.HasPrefix(key, Root) {
			t.Fatalf("Parse accepted %q outside the root", key)
		}
		p, err := Path(s)
		if err != nil || p != key {
			t.Fatalf("Path(Parse(%q)) = %q, %v", key, p, err)
		}
		if r := Repo(s); r != "" && !strings.HasPrefix(key, RepoPrefix(r)) {
			t.Fatalf("Repo %q does not prefix %q", r, key)
		}
		// A valid key is never also a temporary file of another.
		if target, ok := InFlightTemp(key); ok {
			t.Fatalf("InFlightTemp(%q) = %q for a key that parses", key, target)
		}
	})
}

func TestInFlightTemp(t *testing.T) {
	const uuid = "0f8fad5b-d9cb-469f-a165-70867728950e"
	revision := "docker/registry/v2/repositories/a/b/_manifests/revisions/sha256/" + hexA + "/link"
	hashstate := "docker/registry/v2/repositories/a/_uploads/u/hashstates/sha256/5"
	for key, want := range map[string]string{
		revision + "." + uuid + ".tmp":  revision,
		hashstate + "." + uuid + ".tmp": hashstate,
	} {
		if got, ok := InFlightTemp(key); !ok || got != want {
			t.Errorf("InFlightTemp(%q) = %q, %v; want %q", key, got, ok, want)
		}
	}
	for _, key := range []string{
		revision,                             // the key itself
		revision + ".tmp",                    // no uuid
		revision + ".0f8fad5b-d9cb-469f.tmp", // a short one
		revision + "x" + uuid[1:] + ".tmp",   // no dot before it
		revision + "." + uuid[:35] + "g.tmp", // not hex
		"docker/registry/v2/blobs/sha256/96/" + hexA + "/data." + uuid + ".tmp", // not in a repository
		"docker/registry/v2/repositories/a/_manifests/junk." + uuid + ".tmp",    // not a key of the layout
	} {
		if got, ok := InFlightTemp(key); ok {
			t.Errorf("InFlightTemp(%q) = %q, want no", key, got)
		}
	}
}

// Parse runs once per key listed: checking a key against the path its
// spec writes must not allocate. What is left is the digest's string and
// the spec in its interface.
func TestParseAllocations(t *testing.T) {
	key := "docker/registry/v2/repositories/team/app/_layers/sha256/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef/link"
	if _, err := Parse(key); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { Parse(key) }); n > 2 {
		t.Fatalf("Parse of a layer link made %v allocations, want at most 2", n)
	}
}
