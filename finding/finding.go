// Package finding is regsweep's one vocabulary of problems: every kind
// of finding, its severity, whether it blocks a sweep, and the Finding
// value that carries one. Each producer emits findings where it finds the
// problem (walker, mark, sweep, verify, harborgc); reports collects and
// formats them.
//
// It owns the kind strings, a contract (docs/audit.md): kinds are added,
// never renamed.
// It is a leaf: it imports nothing of regsweep, and it may not decide
// anything about storage (what is garbage is sweep's, what is live is
// mark's).
package finding

import (
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Kind names what is wrong.
type Kind string

// Kinds of the walk, the mark and the plan.
const (
	OrphanBlob           Kind = "orphan_blob"
	UntaggedManifest     Kind = "untagged_manifest"
	UnusedLayerLink      Kind = "unused_layer_link"
	StaleUpload          Kind = "stale_upload"
	StaleMultipartUpload Kind = "stale_multipart_upload"
	OrphanSegment        Kind = "orphan_segment"
	EmptyRepository      Kind = "empty_repository"
	DanglingRevisionLink Kind = "dangling_revision_link"
	DanglingLayerLink    Kind = "dangling_layer_link"
	// A kept manifest references a blob storage lacks (foreign layers
	// excepted).
	MissingBlobReference Kind = "missing_blob_reference"
	// An index or list child whose manifest blob is missing. Blocking.
	MissingChildManifest Kind = "missing_child_manifest"
	// A manifest that cannot be parsed, is too large to be one, or whose
	// stored content does not match its digest. Blocking: its references
	// are unknown.
	UnparseableManifest Kind = "unparseable_manifest"
	// A link whose content is not the digest it should hold, or a tag
	// without a current link. Blocking.
	CorruptLink Kind = "corrupt_link"
	// A key under docker/registry/v2/ that fits no layout (a storage
	// driver's temporary file among them, said so).
	UnknownKey Kind = "unknown_key"
	// A tag whose current link points at a missing manifest.
	MissingTaggedManifest Kind = "missing_tagged_manifest"
	// A root given to the mark (a Harbor artifact) whose manifest blob
	// storage lacks. Not reported: Harbor's HarborMissingInStorage names
	// the artifact; plans record it among their problems.
	MissingRootManifest Kind = "missing_root_manifest"
)

// Kind of audit --verify.
const DigestMismatch Kind = "digest_mismatch"

// Kinds of Harbor mode (--harbor-db).
const (
	HarborMissingInStorage Kind = "harbor_missing_in_storage"
	HarborUnknownInDB      Kind = "harbor_unknown_in_db"
	HarborQuotaDrift       Kind = "harbor_quota_drift"
	HarborStuckBlob        Kind = "harbor_stuck_blob"
	HarborStaleTrash       Kind = "harbor_stale_trash"
)

// Severity says how bad a finding is.
type Severity string

const (
	// Broken: pulls fail, or storage and its records disagree.
	Broken Severity = "broken"
	// Reclaimable: what a gc would free.
	Reclaimable Severity = "reclaimable"
)

// Severity is the kind's severity; "" for a kind that is not reported
// (MissingRootManifest) or unknown.
func (k Kind) Severity() Severity {
	switch k {
	case OrphanBlob, UntaggedManifest, UnusedLayerLink, StaleUpload, StaleMultipartUpload, OrphanSegment, EmptyRepository,
		HarborUnknownInDB, HarborStaleTrash:
		return Reclaimable
	case DanglingRevisionLink, DanglingLayerLink, MissingBlobReference, MissingChildManifest, UnparseableManifest, CorruptLink,
		DigestMismatch, UnknownKey, MissingTaggedManifest, HarborMissingInStorage, HarborQuotaDrift, HarborStuckBlob:
		return Broken
	}
	return ""
}

// Reported says whether audit reports findings of the kind.
func (k Kind) Reported() bool { return k.Severity() != "" }

// Blocking says whether a finding of the kind stops a sweep: what is live
// cannot be proven while it stands.
func (k Kind) Blocking() bool {
	switch k {
	case UnparseableManifest, MissingChildManifest, CorruptLink:
		return true
	}
	return false
}

// Kinds returns every reported kind, sorted.
func Kinds() []Kind {
	return []Kind{
		CorruptLink, DanglingLayerLink, DanglingRevisionLink, DigestMismatch, EmptyRepository,
		HarborMissingInStorage, HarborQuotaDrift, HarborStaleTrash, HarborStuckBlob, HarborUnknownInDB,
		MissingBlobReference, MissingChildManifest, MissingTaggedManifest, OrphanBlob, OrphanSegment,
		StaleMultipartUpload, StaleUpload, UnknownKey, UnparseableManifest, UntaggedManifest, UnusedLayerLink,
	}
}

// Finding is one thing found wrong. It names its object by Digest and/or
// Key; Repo, Project and Tags are set where they mean something (Harbor
// findings name their project; broken manifests name the tags whose pull
// they break).
type Finding struct {
	Kind    Kind
	Repo    string // "" when not tied to a repository
	Project string
	Digest  digest.Digest // the manifest, blob or link target concerned
	Key     string        // the storage key concerned
	Size    int64         // bytes concerned (0 when not meaningful)
	// Tags are the tags of Repo whose pull the finding breaks.
	Tags []string
	// Details are kind-specific facts.
	Details map[string]string
	// Explanation is one line for people, without Tags (Explain adds
	// them).
	Explanation string
	// Err is the error the explanation comes from, when there is one.
	Err error
}

// Severity is the finding's kind's severity.
func (f Finding) Severity() Severity { return f.Kind.Severity() }

// Explain is the explanation with the tags the finding breaks, as
// reports show it.
func (f Finding) Explain() string {
	if len(f.Tags) == 0 {
		return f.Explanation
	}
	return f.Explanation + "; breaks tags: " + strings.Join(f.Tags, ", ")
}

func (f Finding) String() string {
	s := string(f.Kind)
	if f.Repo != "" {
		s += " repo=" + f.Repo
	}
	if f.Digest != "" {
		s += " digest=" + f.Digest.String()
	}
	if f.Key != "" {
		s += " key=" + strconv.Quote(f.Key)
	}
	if f.Explanation != "" {
		s += ": " + f.Explanation
	}
	return s
}
