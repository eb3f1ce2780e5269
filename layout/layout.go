// Package layout is Docker Distribution's storage tree as data: Path turns
// a spec into a key and Parse turns a key back into its spec.
//
//	docker/registry/v2/
//	  blobs/<alg>/<hex[0:2]>/<hex>/data
//	  repositories/<name>/
//	    _layers/<alg>/<hex>/link
//	    _manifests/revisions/<alg>/<hex>/link
//	    _manifests/revisions/<alg>/<hex>/signatures/<alg>/<hex>/link   (schema1, v2.x)
//	    _manifests/tags/<tag>/current/link
//	    _manifests/tags/<tag>/index/<alg>/<hex>/link
//	    _uploads/<id>/data
//	    _uploads/<id>/startedat
//	    _uploads/<id>/hashstates/<alg>/<offset>
//
// <name> may hold slashes, so "a" and "a/b" can both be repositories. Keys
// are logical (no driver root). Keys outside docker/registry/v2/ are never
// regsweep's to touch.
//
// It owns the mapping between keys and specs, and nothing else: it reads
// no storage and knows no driver's namespace.
package layout

import (
	// go-digest validates an algorithm only when its hash is linked in.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Root is the prefix of everything distribution stores.
const Root = "docker/registry/v2/"

const (
	BlobsPrefix        = Root + "blobs/"
	RepositoriesPrefix = Root + "repositories/"
)

// Spec is one of the key kinds below.
type Spec interface{ isSpec() }

// BlobData is a blob's (or manifest's) content.
type BlobData struct{ Digest digest.Digest }

// LayerLink links a blob (layer or config) into a repository.
type LayerLink struct {
	Repo   string
	Digest digest.Digest
}

// RevisionLink links a manifest into a repository.
type RevisionLink struct {
	Repo   string
	Digest digest.Digest
}

// SignatureLink is a schema1 signature link under a revision (v2.x).
type SignatureLink struct {
	Repo      string
	Digest    digest.Digest
	Signature digest.Digest
}

// TagCurrentLink holds the digest a tag points to now.
type TagCurrentLink struct{ Repo, Tag string }

// TagIndexLink records that a tag once pointed to Digest.
type TagIndexLink struct {
	Repo   string
	Tag    string
	Digest digest.Digest
}

// UploadData is an in-progress upload's body.
type UploadData struct{ Repo, ID string }

// UploadStartedAt holds an upload's RFC 3339 start time.
type UploadStartedAt struct{ Repo, ID string }

// UploadHashState is a serialized hash state of an upload.
type UploadHashState struct {
	Repo, ID string
	Alg      string
	Offset   int64
}

func (BlobData) isSpec()        {}
func (LayerLink) isSpec()       {}
func (RevisionLink) isSpec()    {}
func (SignatureLink) isSpec()   {}
func (TagCurrentLink) isSpec()  {}
func (TagIndexLink) isSpec()    {}
func (UploadData) isSpec()      {}
func (UploadStartedAt) isSpec() {}
func (UploadHashState) isSpec() {}

// Errors from Parse and Path.
var (
	// ErrOutside: the key is not under docker/registry/v2/.
	ErrOutside = errors.New("key is outside docker/registry/v2/")
	// ErrUnknown: the key is under docker/registry/v2/ but fits no layout.
	ErrUnknown = errors.New("key fits no registry layout")
	// ErrInvalid: a spec that cannot be turned into a key.
	ErrInvalid = errors.New("invalid path spec")
)

// distribution's repository name component grammar.
var (
	componentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)
	tagRE       = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
	uploadIDRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	hashAlgRE   = regexp.MustCompile(`^[a-z0-9]{1,32}$`)
)

// ValidRepo reports whether name is a repository name distribution accepts.
func ValidRepo(name string) bool {
	if name == "" || len(name) > 255 {
		return false
	}
	for rest := name; ; {
		c, more, found := strings.Cut(rest, "/")
		if !componentRE.MatchString(c) {
			return false
		}
		if !found {
			return true
		}
		rest = more
	}
}

// ValidTag reports whether tag is a tag distribution accepts.
func ValidTag(tag string) bool { return tagRE.MatchString(tag) }

func validDigest(d digest.Digest) error {
	if canonicalSHA256(d) {
		return nil // nearly every digest; Validate's regexp is the slow path
	}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%w: digest %q: %v", ErrInvalid, d, err)
	}
	if strings.ContainsAny(d.Algorithm().String(), "+.;/") {
		// distribution maps these to '/', which Parse could not undo.
		return fmt.Errorf("%w: digest algorithm %q", ErrInvalid, d.Algorithm())
	}
	return nil
}

// canonicalSHA256 reports whether d is sha256 with 64 lower-case hex
// digits, which Validate accepts.
func canonicalSHA256(d digest.Digest) bool {
	s := string(d)
	if len(s) != 7+64 || s[:7] != "sha256:" {
		return false
	}
	for i := 7; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// InFlightTemp reports whether key is a storage driver's temporary file
// for a key of a repository (distribution's filesystem driver writes
// <key>.<uuid>.tmp, then renames it): a write in flight, or one a crash
// cut short. target is the key it becomes. Such a file holds no reference
// a collector must follow, and nothing can hide under it.
func InFlightTemp(key string) (target string, ok bool) {
	rest, found := strings.CutSuffix(key, ".tmp")
	if !found || len(rest) < 37 || rest[len(rest)-37] != '.' || !isUUID(rest[len(rest)-36:]) {
		return "", false
	}
	target = rest[:len(rest)-37]
	spec, err := Parse(target)
	if err != nil || Repo(spec) == "" {
		return "", false
	}
	return target, true
}

// isUUID reports whether s is a UUID in its 36-character text form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// RepoPrefix is the directory key of a repository, with a trailing slash.
func RepoPrefix(repo string) string { return RepositoriesPrefix + repo + "/" }

// Path returns the key of a spec.
func Path(s Spec) (string, error) {
	var buf [256]byte // most keys: one allocation, the string
	b, err := appendPath(buf[:0], s)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// appendPath appends the key of s to dst. Parse checks every key it is
// given against it: into a buffer on the stack, that costs no allocation
// per key listed.
func appendPath(dst []byte, s Spec) ([]byte, error) {
	repoCheck := func(repo string) error {
		if !ValidRepo(repo) {
			return fmt.Errorf("%w: repository name %q", ErrInvalid, repo)
		}
		return nil
	}
	digestPath := func(dst []byte, d digest.Digest) []byte { // <alg>/<hex>
		return append(append(append(dst, d.Algorithm()...), '/'), d.Encoded()...)
	}
	repoPath := func(dst []byte, repo, rest string) []byte {
		return append(append(append(dst, RepositoriesPrefix...), repo...), rest...)
	}
	switch s := s.(type) {
	case BlobData:
		if err := validDigest(s.Digest); err != nil {
			return nil, err
		}
		hex := s.Digest.Encoded()
		dst = append(append(append(dst, BlobsPrefix...), s.Digest.Algorithm()...), '/')
		return append(append(append(append(dst, hex[:2]...), '/'), hex...), "/data"...), nil
	case LayerLink:
		if err := firstErr(repoCheck(s.Repo), validDigest(s.Digest)); err != nil {
			return nil, err
		}
		return append(digestPath(repoPath(dst, s.Repo, "/_layers/"), s.Digest), "/link"...), nil
	case RevisionLink:
		if err := firstErr(repoCheck(s.Repo), validDigest(s.Digest)); err != nil {
			return nil, err
		}
		return append(digestPath(repoPath(dst, s.Repo, "/_manifests/revisions/"), s.Digest), "/link"...), nil
	case SignatureLink:
		if err := firstErr(repoCheck(s.Repo), validDigest(s.Digest), validDigest(s.Signature)); err != nil {
			return nil, err
		}
		dst = append(digestPath(repoPath(dst, s.Repo, "/_manifests/revisions/"), s.Digest), "/signatures/"...)
		return append(digestPath(dst, s.Signature), "/link"...), nil
	case TagCurrentLink:
		if err := firstErr(repoCheck(s.Repo), tagCheck(s.Tag)); err != nil {
			return nil, err
		}
		return append(append(repoPath(dst, s.Repo, "/_manifests/tags/"), s.Tag...), "/current/link"...), nil
	case TagIndexLink:
		if err := firstErr(repoCheck(s.Repo), tagCheck(s.Tag), validDigest(s.Digest)); err != nil {
			return nil, err
		}
		dst = append(append(repoPath(dst, s.Repo, "/_manifests/tags/"), s.Tag...), "/index/"...)
		return append(digestPath(dst, s.Digest), "/link"...), nil
	case UploadData:
		if err := firstErr(repoCheck(s.Repo), uploadCheck(s.ID)); err != nil {
			return nil, err
		}
		return append(append(repoPath(dst, s.Repo, "/_uploads/"), s.ID...), "/data"...), nil
	case UploadStartedAt:
		if err := firstErr(repoCheck(s.Repo), uploadCheck(s.ID)); err != nil {
			return nil, err
		}
		return append(append(repoPath(dst, s.Repo, "/_uploads/"), s.ID...), "/startedat"...), nil
	case UploadHashState:
		if err := firstErr(repoCheck(s.Repo), uploadCheck(s.ID)); err != nil {
			return nil, err
		}
		if !hashAlgRE.MatchString(s.Alg) || s.Offset < 0 {
			return nil, fmt.Errorf("%w: hash state %s/%d", ErrInvalid, s.Alg, s.Offset)
		}
		dst = append(append(append(repoPath(dst, s.Repo, "/_uploads/"), s.ID...), "/hashstates/"...), s.Alg...)
		return strconv.AppendInt(append(dst, '/'), s.Offset, 10), nil
	}
	return nil, fmt.Errorf("%w: %T", ErrInvalid, s)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func tagCheck(tag string) error {
	if !ValidTag(tag) {
		return fmt.Errorf("%w: tag %q", ErrInvalid, tag)
	}
	return nil
}

func uploadCheck(id string) error {
	if !uploadIDRE.MatchString(id) {
		return fmt.Errorf("%w: upload id %q", ErrInvalid, id)
	}
	return nil
}

// Parse returns the spec of key. A key outside docker/registry/v2/ is
// ErrOutside; one inside that fits no layout is ErrUnknown (wrapped, with
// the key).
func Parse(key string) (Spec, error) {
	if !strings.HasPrefix(key, Root) {
		return nil, fmt.Errorf("%w: %q", ErrOutside, key)
	}
	s, ok := parse(key)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknown, key)
	}
	// Only keys that Path writes back identically are accepted, so that no
	// odd spelling (".", "//", an upper-case hex) can alias a real key.
	var buf [256]byte
	if p, err := appendPath(buf[:0], s); err != nil || string(p) != key {
		return nil, fmt.Errorf("%w: %q", ErrUnknown, key)
	}
	return s, nil
}

func parseDigest(alg, hex string) (digest.Digest, bool) {
	d := digest.Digest(alg + ":" + hex) // as NewDigestFromEncoded, without its Sprintf
	return d, validDigest(d) == nil
}

func parse(key string) (Spec, bool) {
	rest := strings.TrimPrefix(key, Root)
	var buf [24]string // enough for most keys: no slice allocated per key
	parts := splitInto(buf[:0], rest)
	switch parts[0] {
	case "blobs":
		// blobs/<alg>/<xx>/<hex>/data
		if len(parts) != 5 || parts[4] != "data" || len(parts[3]) < 2 || parts[2] != parts[3][:2] {
			return nil, false
		}
		d, ok := parseDigest(parts[1], parts[3])
		return BlobData{Digest: d}, ok
	case "repositories":
	default:
		return nil, false
	}
	// repositories/<name...>/<_layers|_manifests|_uploads>/...
	parts = parts[1:]
	split := -1
	for i, p := range parts {
		if p == "_layers" || p == "_manifests" || p == "_uploads" {
			split = i
			break
		}
	}
	if split < 1 {
		return nil, false
	}
	// The name as it stands in the key (the parts joined by '/'), without
	// building it again.
	repoLen := split - 1
	for _, p := range parts[:split] {
		repoLen += len(p)
	}
	start := len("repositories/")
	repo := rest[start : start+repoLen]
	if !ValidRepo(repo) {
		return nil, false
	}
	kind, p := parts[split], parts[split+1:]
	switch kind {
	case "_layers":
		if len(p) == 3 && p[2] == "link" {
			d, ok := parseDigest(p[0], p[1])
			return LayerLink{Repo: repo, Digest: d}, ok
		}
	case "_manifests":
		if len(p) == 0 {
			return nil, false
		}
		switch p[0] {
		case "revisions":
			if len(p) == 4 && p[3] == "link" {
				d, ok := parseDigest(p[1], p[2])
				return RevisionLink{Repo: repo, Digest: d}, ok
			}
			if len(p) == 7 && p[3] == "signatures" && p[6] == "link" {
				d, ok1 := parseDigest(p[1], p[2])
				sig, ok2 := parseDigest(p[4], p[5])
				return SignatureLink{Repo: repo, Digest: d, Signature: sig}, ok1 && ok2
			}
		case "tags":
			if len(p) == 4 && p[2] == "current" && p[3] == "link" {
				return TagCurrentLink{Repo: repo, Tag: p[1]}, true
			}
			if len(p) == 6 && p[2] == "index" && p[5] == "link" {
				d, ok := parseDigest(p[3], p[4])
				return TagIndexLink{Repo: repo, Tag: p[1], Digest: d}, ok
			}
		}
	case "_uploads":
		if len(p) == 2 && p[1] == "data" {
			return UploadData{Repo: repo, ID: p[0]}, true
		}
		if len(p) == 2 && p[1] == "startedat" {
			return UploadStartedAt{Repo: repo, ID: p[0]}, true
		}
		if len(p) == 4 && p[1] == "hashstates" {
			off, err := strconv.ParseInt(p[3], 10, 64)
			return UploadHashState{Repo: repo, ID: p[0], Alg: p[2], Offset: off}, err == nil
		}
	}
	return nil, false
}

// splitInto is strings.Split(s, "/") appended to parts.
func splitInto(parts []string, s string) []string {
	for {
		part, rest, found := strings.Cut(s, "/")
		parts = append(parts, part)
		if !found {
			return parts
		}
		s = rest
	}
}

// Repo returns the repository a spec belongs to, or "" for blobs.
func Repo(s Spec) string {
	switch s := s.(type) {
	case LayerLink:
		return s.Repo
	case RevisionLink:
		return s.Repo
	case SignatureLink:
		return s.Repo
	case TagCurrentLink:
		return s.Repo
	case TagIndexLink:
		return s.Repo
	case UploadData:
		return s.Repo
	case UploadStartedAt:
		return s.Repo
	case UploadHashState:
		return s.Repo
	}
	return ""
}
