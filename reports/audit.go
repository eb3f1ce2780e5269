package reports

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/sweep"
	"github.com/regsweep/regsweep/walker"
)

// AuditSchemaVersion versions the audit JSON document.
const AuditSchemaVersion = 1

// Finding kinds: a contract (JSON kind, findings_by_kind keys, metric
// labels). Kinds are added, never renamed.
const (
	KindOrphanBlob            = "orphan_blob"
	KindUntaggedManifest      = "untagged_manifest"
	KindUnusedLayerLink       = "unused_layer_link"
	KindStaleUpload           = "stale_upload"
	KindStaleMultipartUpload  = "stale_multipart_upload"
	KindOrphanSegment         = "orphan_segment"
	KindEmptyRepository       = "empty_repository"
	KindDanglingRevisionLink  = "dangling_revision_link"
	KindDanglingLayerLink     = "dangling_layer_link"
	KindMissingBlobReference  = "missing_blob_reference"
	KindMissingChildManifest  = "missing_child_manifest"
	KindUnparseableManifest   = "unparseable_manifest"
	KindCorruptLink           = "corrupt_link"
	KindDigestMismatch        = "digest_mismatch"
	KindUnknownKey            = "unknown_key"
	KindMissingTaggedManifest = "missing_tagged_manifest"
)

// Severities.
const (
	SeverityReclaimable = "reclaimable"
	SeverityBroken      = "broken"
)

var severity = map[string]string{
	KindOrphanBlob: SeverityReclaimable, KindUntaggedManifest: SeverityReclaimable, KindUnusedLayerLink: SeverityReclaimable,
	KindStaleUpload: SeverityReclaimable, KindStaleMultipartUpload: SeverityReclaimable, KindOrphanSegment: SeverityReclaimable,
	KindEmptyRepository:      SeverityReclaimable,
	KindDanglingRevisionLink: SeverityBroken, KindDanglingLayerLink: SeverityBroken, KindMissingBlobReference: SeverityBroken,
	KindMissingChildManifest: SeverityBroken, KindUnparseableManifest: SeverityBroken, KindCorruptLink: SeverityBroken,
	KindDigestMismatch: SeverityBroken, KindUnknownKey: SeverityBroken, KindMissingTaggedManifest: SeverityBroken,
}

// Finding is one thing an audit found.
type Finding struct {
	Kind        string        `json:"kind"`
	Severity    string        `json:"severity"`
	Repo        string        `json:"repository,omitempty"`
	Digest      digest.Digest `json:"digest,omitempty"`
	Key         string        `json:"key,omitempty"`
	Size        int64         `json:"size"`
	Explanation string        `json:"explanation"`
}

// Reclaimable sums what a gc with the audit's options would free.
type Reclaimable struct {
	Blobs            int   `json:"blobs"`
	Bytes            int64 `json:"bytes"`
	Manifests        int   `json:"manifests"`
	LayerLinks       int   `json:"layer_links"`
	Uploads          int   `json:"uploads"`
	MultipartUploads int   `json:"multipart_uploads"`
	Segments         int   `json:"segments"`
	Repositories     int   `json:"repositories"`
}

// Audit is the `regsweep audit` document.
type Audit struct {
	SchemaVersion  int              `json:"schema_version"`
	StartedAt      time.Time        `json:"started_at"`
	FinishedAt     time.Time        `json:"finished_at"`
	Storage        StorageInfo      `json:"storage"`
	Totals         Counts           `json:"totals"`
	Reclaimable    Reclaimable      `json:"reclaimable"`
	FindingsByKind map[string]int   `json:"findings_by_kind"`
	Findings       []Finding        `json:"findings"`
	Requests       map[string]int64 `json:"requests"`
}

// BuildAudit turns a walk, its mark and the plan a gc would make into
// findings.
func BuildAudit(inv *walker.Inventory, res *mark.Result, plan *sweep.Plan, storage StorageInfo, requests map[string]int64, started, finished time.Time) *Audit {
	a := &Audit{SchemaVersion: AuditSchemaVersion, StartedAt: started.UTC(), FinishedAt: finished.UTC(), Storage: storage,
		Requests: requests, FindingsByKind: map[string]int{}, Findings: []Finding{}}
	a.Totals = BuildInventory(inv, storage, requests, started, finished).Totals
	s := plan.Stats
	a.Reclaimable = Reclaimable{Blobs: s.Blobs, Bytes: s.Bytes, Manifests: s.Manifests, LayerLinks: s.LayerLinks, Uploads: s.Uploads,
		MultipartUploads: s.MultipartUploads, Segments: s.Segments, Repositories: s.Repositories}
	for k := range severity {
		a.FindingsByKind[k] = 0
	}
	add := a.add
	uploads := map[string]*Finding{}
	orphanSegments := map[string]*Finding{}
	for _, it := range plan.Items {
		switch it.Kind {
		case sweep.KindBlob:
			add(Finding{Kind: KindOrphanBlob, Digest: it.Digest, Key: it.Key, Size: it.Size, Explanation: "no kept manifest references this blob"})
		case sweep.KindRevisionLink:
			if !strings.HasPrefix(it.Reason, "dangling") { // dangling ones come from the mark below
				add(Finding{Kind: KindUntaggedManifest, Repo: it.Repo, Digest: it.Digest, Key: it.Key, Explanation: "no tag reaches this manifest (through indexes and referrers)"})
			}
		case sweep.KindLayerLink:
			if strings.HasPrefix(it.Reason, "dangling") {
				add(Finding{Kind: KindDanglingLayerLink, Repo: it.Repo, Digest: it.Digest, Key: it.Key, Explanation: "layer link to a blob storage lacks: pulls of it fail"})
			} else {
				add(Finding{Kind: KindUnusedLayerLink, Repo: it.Repo, Digest: it.Digest, Key: it.Key, Explanation: "no kept manifest of this repository uses the blob"})
			}
		case sweep.KindUploadFile:
			id := it.Repo + "/" + it.UploadID
			if f := uploads[id]; f != nil {
				f.Size += it.Size
				continue
			}
			uploads[id] = &Finding{Kind: KindStaleUpload, Repo: it.Repo, Key: layout.RepoPrefix(it.Repo) + "_uploads/" + it.UploadID + "/",
				Size: it.Size, Explanation: it.Reason}
		case sweep.KindMultipartUpload:
			add(Finding{Kind: KindStaleMultipartUpload, Repo: it.Repo, Key: it.Key, Explanation: it.Reason})
		case sweep.KindSegment:
			if it.Digest == "" {
				if f := orphanSegments[it.Segments]; f != nil {
					f.Size += it.Size
					continue
				}
				orphanSegments[it.Segments] = &Finding{Kind: KindOrphanSegment, Key: it.Segments + "/", Size: it.Size, Explanation: "Swift segments no blob points to"}
			}
		case sweep.KindRepository:
			add(Finding{Kind: KindEmptyRepository, Repo: it.Repo, Key: it.Key, Explanation: "repository with no live manifest: gc removes it whole"})
		}
	}
	for _, f := range uploads {
		add(*f)
	}
	for _, f := range orphanSegments {
		add(*f)
	}
	for _, p := range res.Problems {
		f := Finding{Repo: p.Repo, Digest: p.Digest, Key: p.Key}
		if p.Err != nil {
			f.Explanation = p.Err.Error()
		}
		switch p.Kind {
		case mark.KindUnparseableManifest:
			f.Kind = KindUnparseableManifest
		case mark.KindMissingChildManifest:
			f.Kind = KindMissingChildManifest
		case mark.KindMissingBlobReference:
			f.Kind = KindMissingBlobReference
		case mark.KindDanglingRevisionLink:
			f.Kind = KindDanglingRevisionLink
		case mark.KindCorruptLink:
			f.Kind = KindCorruptLink
		case mark.KindMissingTaggedManifest:
			f.Kind = KindMissingTaggedManifest
		default:
			continue
		}
		add(f)
	}
	for _, e := range inv.Unknown {
		add(Finding{Kind: KindUnknownKey, Key: e.Key, Size: e.Size, Explanation: "key under docker/registry/v2/ that fits no registry layout"})
	}
	a.sortFindings()
	return a
}

// Add records a finding (with its kind's severity), keeping the order:
// broken first, then by kind and key.
func (a *Audit) Add(f Finding) {
	a.add(f)
	a.sortFindings()
}

func (a *Audit) add(f Finding) {
	f.Severity = severity[f.Kind]
	a.Findings = append(a.Findings, f)
	a.FindingsByKind[f.Kind]++
}

func (a *Audit) sortFindings() {
	sort.SliceStable(a.Findings, func(i, j int) bool {
		x, y := a.Findings[i], a.Findings[j]
		if x.Severity != y.Severity {
			return x.Severity == SeverityBroken
		}
		if x.Kind != y.Kind {
			return x.Kind < y.Kind
		}
		return x.Key < y.Key
	})
}

// Count returns how many findings have the severity.
func (a *Audit) Count(sev string) int {
	n := 0
	for _, f := range a.Findings {
		if f.Severity == sev {
			n++
		}
	}
	return n
}

// WriteJSON writes the document and nothing else.
func (a *Audit) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(a)
}

// WriteText writes a summary and the findings, a sigil each: "!" broken,
// "-" reclaimable.
func (a *Audit) WriteText(w io.Writer) error {
	t, r := a.Totals, a.Reclaimable
	fmt.Fprintf(w, "Storage:      %s (%s)\n", a.Storage.Location, a.Storage.Driver)
	fmt.Fprintf(w, "Holds:        %d repositories, %d tags, %d manifests, %d blobs (%s)\n", t.Repositories, t.Tags, t.Manifests, t.Blobs, HumanBytes(t.BlobBytes))
	fmt.Fprintf(w, "Reclaimable:  %s: %d blobs, %d manifests, %d layer links, %d uploads, %d multipart uploads, %d segments, %d repositories\n",
		HumanBytes(r.Bytes), r.Blobs, r.Manifests, r.LayerLinks, r.Uploads, r.MultipartUploads, r.Segments, r.Repositories)
	fmt.Fprintf(w, "Findings:     %d broken, %d reclaimable\n", a.Count(SeverityBroken), a.Count(SeverityReclaimable))
	fmt.Fprintf(w, "Requests:     %s\n\n", formatRequests(a.Requests))
	for _, f := range a.Findings {
		sigil := "-"
		if f.Severity == SeverityBroken {
			sigil = "!"
		}
		what := f.Key
		if what == "" {
			what = f.Digest.String()
		}
		fmt.Fprintf(w, "%s %-24s %s  (%s)\n", sigil, f.Kind, what, f.Explanation)
	}
	return nil
}
