// Package sweep turns a walk and a mark into a plan of deletions, a value
// that can be printed, saved as JSON and reviewed, and executes a plan
// under a held lock in an order that leaves only garbage if cut off.
//
// It owns the plan file's format and what a plan finds (Plan.Findings:
// what it reclaims, the layer links to missing blobs); the mark's findings
// are recorded in the plan file as Problems. It may not decide what is
// live (mark does) nor format reports (reports does).
package sweep

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/blobindex"
	"github.com/regsweep/regsweep/finding"
	"github.com/regsweep/regsweep/layout"
	"github.com/regsweep/regsweep/mark"
	"github.com/regsweep/regsweep/walker"
)

// PlanVersion versions the plan file.
const PlanVersion = 1

// Item kinds, in the order the executor deletes them (references before
// what they point to).
const (
	// KindTag is a whole tag a retention policy deletes: its current link
	// (Key) and its index, as the registry's own untag does. Tags go
	// first, before anything they point to.
	KindTag             = "tag"
	KindTagIndexLink    = "tag_index_link"
	KindTagCurrentLink  = "tag_current_link"
	KindRevisionLink    = "revision_link"
	KindSignatureLink   = "signature_link"
	KindLayerLink       = "layer_link"
	KindBlob            = "blob"
	KindSegment         = "segment"
	KindUploadFile      = "upload_file"
	KindMultipartUpload = "multipart_upload"
	KindRepository      = "repository"
)

// phase orders the kinds: a run killed between phases leaves no link to a
// missing blob.
var phase = map[string]int{
	KindTag:          0,
	KindTagIndexLink: 1, KindTagCurrentLink: 1, KindRevisionLink: 1, KindSignatureLink: 1,
	KindLayerLink: 2,
	KindBlob:      3, KindSegment: 4,
	KindUploadFile: 5, KindMultipartUpload: 5,
	KindRepository: 6,
}

// Item is one thing to delete.
type Item struct {
	Kind     string        `json:"kind"`
	Key      string        `json:"key"`
	Repo     string        `json:"repository,omitempty"`
	Digest   digest.Digest `json:"digest,omitempty"`
	Size     int64         `json:"size"`
	ModTime  time.Time     `json:"mtime"`
	UploadID string        `json:"upload_id,omitempty"`
	// Segments is the Swift segment prefix of a blob, or of a segment
	// (whose Digest is then the blob it belongs to, "" for an orphan).
	Segments string `json:"segments,omitempty"`
	// Manifest is the revision a schema1 signature link belongs to.
	Manifest digest.Digest `json:"manifest,omitempty"`
	// Tag is the tag of a KindTag item (Digest is what its current link
	// held, ModTime its mtime: the tag's time).
	Tag    string `json:"tag,omitempty"`
	Reason string `json:"reason"`
}

// Options decide what is garbage.
type Options struct {
	Now            time.Time
	Grace          time.Duration // nothing younger (by storage mtime) is a candidate
	UploadGrace    time.Duration // uploads younger than this (from startedat) stay
	DeleteUntagged bool
	// MaxDeleteFraction trips a guard when more than this share of blobs
	// would go.
	MaxDeleteFraction float64
	// WalkStarted is when the walk began: a key written after it (less a
	// slack for the store's clock) may be missing from the walk because it
	// is new, not because the listing came back short.
	WalkStarted time.Time
}

// Guard is a safety check that tripped: the plan is not executed unless
// forced.
type Guard struct {
	Name    string `json:"name"`
	Message string `json:"message"`
}

// Guard names (a contract: exit codes and scripts key on them).
const (
	GuardNoRepositories   = "no_repositories"
	GuardNothingMarked    = "nothing_marked"
	GuardDeleteFraction   = "delete_fraction"
	GuardBlockingProblems = "blocking_problems"
	GuardDatabaseInUse    = "database_in_use"
	GuardUnknownKeys      = "unknown_keys"
)

// Stats summarise a plan.
type Stats struct {
	Blobs int `json:"blobs"`
	// Bytes is everything a sweep frees: blobs, orphan segments, upload
	// files. BlobBytes is the blobs' share.
	Bytes         int64 `json:"bytes"`
	BlobBytes     int64 `json:"blob_bytes"`
	Manifests     int   `json:"manifests"`
	TagIndexLinks int   `json:"tag_index_links"`
	// Tags counts whole tags a retention policy deletes.
	Tags             int   `json:"tags"`
	LayerLinks       int   `json:"layer_links"`
	Uploads          int   `json:"uploads"`
	MultipartUploads int   `json:"multipart_uploads"`
	Segments         int   `json:"segments"`
	Repositories     int   `json:"repositories"`
	TotalBlobs       int   `json:"total_blobs"`
	TotalBlobBytes   int64 `json:"total_blob_bytes"`
	KeptBlobs        int   `json:"kept_blobs"`
}

// StorageRef binds a plan to one storage.
type StorageRef struct {
	Driver   string `json:"driver"`
	Location string `json:"location"`
	// Volume identifies a filesystem's volume (device and inode of its
	// root, storage.Volumer): a path alone can name another volume later.
	Volume string `json:"volume,omitempty"`
}

// Plan is what a sweep would delete. It is data: print it, save it,
// review it, then execute it.
type Plan struct {
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	// WalkStartedAt is when the plan's walk began (Options.WalkStarted).
	WalkStartedAt time.Time  `json:"walk_started_at"`
	Storage       StorageRef `json:"storage"`
	Options       struct {
		DeleteUntagged bool   `json:"delete_untagged"`
		Grace          string `json:"grace"`
		UploadGrace    string `json:"upload_grace"`
		// Harbor marks a plan made in Harbor mode: only gc, with the
		// database taking part, may execute it.
		Harbor bool `json:"harbor,omitempty"`
		// MaxDeleteFraction is gc's --max-delete-fraction, for the record:
		// sweep --plan judges the fraction with its own flag.
		MaxDeleteFraction float64 `json:"max_delete_fraction"`
	} `json:"options"`
	// Seal is a digest of what binds the plan (version, times, storage,
	// options): a plan whose header was edited, its Harbor flag above all,
	// is refused. Items may be removed by a reviewer; every one left is
	// checked against its key (checkItem) and against a fresh walk.
	Seal   string  `json:"seal"`
	Stats  Stats   `json:"stats"`
	Guards []Guard `json:"guards"`
	// Changing names the repositories the registry changed under the walk,
	// with the first key that showed it: nothing in them is planned.
	Changing map[string]string `json:"changing_repositories,omitempty"`
	Problems []Problem         `json:"problems"`
	Items    []Item            `json:"items"`
}

// Problem is a mark problem as the plan file records it (problemOf).
type Problem struct {
	Kind     finding.Kind  `json:"kind"`
	Repo     string        `json:"repository,omitempty"`
	Digest   digest.Digest `json:"digest,omitempty"`
	Key      string        `json:"key,omitempty"`
	Error    string        `json:"error,omitempty"`
	Blocking bool          `json:"blocking"`
}

// problemOf is a finding of the mark as the plan file records it.
func problemOf(f finding.Finding) Problem {
	return Problem{Kind: f.Kind, Repo: f.Repo, Digest: f.Digest, Key: f.Key, Error: f.Explanation, Blocking: f.Kind.Blocking()}
}

// Build computes the candidates of a plan and their stats. It never reads
// storage: everything comes from the walk and the mark. What links that
// stay (young ones too) need is taken out by a Recheck against the walk
// itself, and the guards are judged by Judge after it: the gc package
// runs the three in turn (Build, Recheck, Judge).
func Build(inv *walker.Inventory, res *mark.Result, storage StorageRef, o Options) *Plan {
	p := &Plan{Version: PlanVersion, CreatedAt: o.Now.UTC(), WalkStartedAt: o.WalkStarted.UTC(), Storage: storage, Guards: []Guard{}, Problems: []Problem{}, Items: []Item{}}
	for _, f := range res.Problems {
		p.Problems = append(p.Problems, problemOf(f))
	}
	p.Options.DeleteUntagged, p.Options.Grace, p.Options.UploadGrace = o.DeleteUntagged, o.Grace.String(), o.UploadGrace.String()
	p.Options.MaxDeleteFraction = o.MaxDeleteFraction
	if len(inv.Changing) > 0 {
		p.Changing = inv.Changing
	}
	cutoff := o.Now.Add(-o.Grace).Unix()
	uploadCutoff := o.Now.Add(-o.UploadGrace)
	old := func(mtime int64) bool { return mtime <= cutoff }
	blobExists := inv.Blobs.Has
	// Every link that stays must keep pointing at an existing blob, whatever
	// the mark said (a young link of a push in progress is not marked).
	linked := inv.NewBlobSet(true)

	for _, name := range inv.RepositoryNames() {
		r := inv.Repositories[name]
		rr := res.Repos[name]
		keptManifest := func(d digest.Digest) bool { return rr != nil && rr.KeptManifests.Has(d) }
		broken := rr != nil && rr.Broken
		// A repository the registry changed under the walk keeps
		// everything this run: what it holds now is not what was walked.
		_, changing := inv.Changing[name]
		keptLayer := func(d digest.Digest) bool { return rr != nil && rr.KeptLayers.Has(d) }
		noKept := rr == nil || rr.KeptManifests.Len() == 0
		var items []Item
		all := true // every key of the repository is a candidate
		// add plans it when ok, at the key of spec (its own Key when nil):
		// keys are built only for candidates, a few among many links.
		add := func(ok bool, spec layout.Spec, it Item) {
			if ok && !changing {
				it.Repo = name
				if spec != nil {
					it.Key, _ = layout.Path(spec)
				}
				items = append(items, it)
				return
			}
			all = false
			if it.Kind != KindUploadFile && it.Digest != "" {
				linked.Add(it.Digest)
			}
		}
		for d, l := range r.Revisions.All() {
			reason := "untagged manifest"
			if !blobExists(d) {
				reason = "dangling revision link: manifest blob missing"
			}
			// In a broken repository the link to the missing manifest stays
			// with the layers (mark.RepoResult.Broken).
			candidate := old(l.ModTime) && (!keptManifest(d) || !blobExists(d)) && !(broken && !blobExists(d))
			add(candidate, layout.RevisionLink{Repo: name, Digest: d}, Item{Kind: KindRevisionLink, Digest: d, ModTime: time.Unix(l.ModTime, 0).UTC(), Reason: reason})
			for _, sig := range r.Signatures[d] {
				add(candidate, layout.SignatureLink{Repo: name, Digest: d, Signature: sig}, Item{Kind: KindSignatureLink, Digest: sig, Manifest: d, ModTime: time.Unix(l.ModTime, 0).UTC(), Reason: "signature of a deleted manifest"})
			}
		}
		for tagName, t := range r.Tags {
			for d, l := range t.Index.All() {
				add(old(l.ModTime) && (!keptManifest(d) || !blobExists(d)),
					layout.TagIndexLink{Repo: name, Tag: tagName, Digest: d}, Item{Kind: KindTagIndexLink, Digest: d, ModTime: time.Unix(l.ModTime, 0).UTC(), Reason: "tag history entry of a deleted manifest"})
			}
			if t.HasCurrent {
				// A tag goes with its whole repository, when nothing in it is
				// kept (a broken tag elsewhere is a finding, not garbage), or
				// when the manifest it names is not kept: only when the roots
				// are not tags (Harbor mode), since a tag's target is a root.
				reason := "tag of a repository with no live manifest"
				orphaned := noKept
				if !orphaned && t.Current != "" && !keptManifest(t.Current) {
					orphaned, reason = true, "tag of a manifest that is not kept"
				}
				add(orphaned && old(t.CurrentModTime),
					layout.TagCurrentLink{Repo: name, Tag: tagName}, Item{Kind: KindTagCurrentLink, Digest: t.Current, ModTime: time.Unix(t.CurrentModTime, 0).UTC(), Reason: reason})
			}
		}
		for d, l := range r.Layers.All() {
			reason := "layer link not used by any kept manifest of the repository"
			if !blobExists(d) {
				reason = "dangling layer link: blob missing"
			}
			add(old(l.ModTime) && (!keptLayer(d) || !blobExists(d)),
				layout.LayerLink{Repo: name, Digest: d}, Item{Kind: KindLayerLink, Digest: d, ModTime: time.Unix(l.ModTime, 0).UTC(), Reason: reason})
		}
		for _, u := range r.Uploads {
			started := u.StartedAt
			if started.IsZero() {
				for _, f := range u.Files {
					if started.IsZero() || f.ModTime.Before(started) {
						started = f.ModTime
					}
				}
			}
			stale := !started.After(uploadCutoff)
			for _, f := range u.Files {
				stale = stale && old(f.ModTime.Unix()) // still being written
			}
			for _, f := range u.Files {
				add(stale, nil, Item{Kind: KindUploadFile, Key: f.Key, Size: f.Size, ModTime: f.ModTime.UTC(), UploadID: u.ID, Reason: "upload abandoned since " + started.UTC().Format(time.RFC3339)})
			}
		}
		p.Items = append(p.Items, items...)
		if noKept && all && !changing {
			p.Items = append(p.Items, Item{Kind: KindRepository, Key: layout.RepoPrefix(name), Repo: name, Reason: "repository with no live manifest"})
		}
	}
	keptSegments := map[string]bool{}
	deletedSegments := map[string]digest.Digest{}
	consider := func(d digest.Digest, b blobindex.Blob, kept bool) {
		if kept {
			if seg := inv.SegmentsOf(d); seg != "" {
				keptSegments[seg] = true
			}
			return
		}
		k, _ := layout.Path(layout.BlobData{Digest: d})
		p.Items = append(p.Items, Item{Kind: KindBlob, Key: k, Digest: d, Size: b.Size, ModTime: time.Unix(b.ModTime, 0).UTC(), Segments: inv.SegmentsOf(d), Reason: "blob not referenced by any kept manifest"})
		if seg := inv.SegmentsOf(d); seg != "" {
			deletedSegments[seg] = d
		}
	}
	// By position, the digest only for blobs that need it: turning 100k
	// positions into digests costs more than the rest of the loop.
	segmented := inv.BlobSegments.Len() > 0
	for id := range inv.Blobs.IDs() {
		b := inv.Blobs.Value(id)
		kept := res.KeptBlobs.HasID(id) || linked.HasID(id) || !old(b.ModTime)
		if !kept || segmented {
			consider(inv.Blobs.Digest(id), b, kept)
		}
	}
	for d, b := range inv.Blobs.Unindexed() {
		consider(d, b, res.KeptBlobs.Has(d) || linked.Has(d) || !old(b.ModTime))
	}
	for prefix, segs := range inv.Segments {
		if keptSegments[prefix] {
			continue
		}
		reason := "segment of a deleted blob"
		owner, ownerDeleted := deletedSegments[prefix]
		if !ownerDeleted {
			// Segments of an upload in progress have no blob yet: only
			// segment sets older than the upload grace are orphans.
			newest := time.Time{}
			for _, s := range segs {
				if s.ModTime.After(newest) {
					newest = s.ModTime
				}
			}
			if newest.After(uploadCutoff) {
				continue
			}
			reason = reasonOrphanSegment
		}
		for _, s := range segs {
			p.Items = append(p.Items, Item{Kind: KindSegment, Key: s.Key, Digest: owner, Size: s.Size, ModTime: s.ModTime.UTC(), Segments: prefix, Reason: reason})
		}
	}
	for _, m := range inv.Multipart {
		if !m.ModTime.After(uploadCutoff) {
			p.Items = append(p.Items, Item{Kind: KindMultipartUpload, Key: m.Key, Repo: m.Repo, UploadID: m.MultipartID, ModTime: m.ModTime.UTC(), Reason: "incomplete multipart upload initiated " + m.ModTime.UTC().Format(time.RFC3339)})
		}
	}
	p.sortItems()
	p.Stats = p.computeStats(inv, res)
	return p
}

// PhaseOf is the phase items of kind are deleted in (-1 for no kind).
func PhaseOf(kind string) int {
	if ph, ok := phase[kind]; ok {
		return ph
	}
	return -1
}

// HasOrphanSegments says whether the plan deletes a segment set no blob
// points at: a blob written since the walk could point at it, so the
// recheck before the blobs lists the blobs too.
func (p *Plan) HasOrphanSegments() bool {
	for _, it := range p.Items {
		if it.Kind == KindSegment && it.Reason == reasonOrphanSegment {
			return true
		}
	}
	return false
}

func (p *Plan) sortItems() {
	sort.SliceStable(p.Items, func(i, j int) bool {
		a, b := p.Items[i], p.Items[j]
		if phase[a.Kind] != phase[b.Kind] {
			return phase[a.Kind] < phase[b.Kind]
		}
		return a.Key < b.Key
	})
}

func (p *Plan) computeStats(inv *walker.Inventory, res *mark.Result) Stats {
	return p.itemStats(Stats{TotalBlobs: inv.Blobs.Len(), TotalBlobBytes: inv.BlobBytes, KeptBlobs: res.KeptBlobs.Len()})
}

// itemStats counts the items, keeping the totals of base.
func (p *Plan) itemStats(base Stats) Stats {
	s := Stats{TotalBlobs: base.TotalBlobs, TotalBlobBytes: base.TotalBlobBytes, KeptBlobs: base.KeptBlobs}
	uploads := map[string]bool{}
	for _, it := range p.Items {
		if freesBytes(it) {
			s.Bytes += it.Size
		}
		switch it.Kind {
		case KindBlob:
			s.Blobs++
			s.BlobBytes += it.Size
		case KindRevisionLink:
			s.Manifests++
		case KindTagIndexLink:
			s.TagIndexLinks++
		case KindTag:
			s.Tags++
		case KindLayerLink:
			s.LayerLinks++
		case KindUploadFile:
			uploads[it.Repo+"/"+it.UploadID] = true
		case KindMultipartUpload:
			s.MultipartUploads++
		case KindSegment:
			s.Segments++
		case KindRepository:
			s.Repositories++
		}
	}
	s.Uploads = len(uploads)
	return s
}

// Judge judges the plan's safety guards on a walk and its mark: the
// plan's own walk, or a fresh one, as a sweep of a reviewed plan must (the
// guards written in a plan file are not trusted: they may have been edited
// out, and storage may have changed since). o gives MaxDeleteFraction as
// it is now.
func (p *Plan) Judge(inv *walker.Inventory, res *mark.Result, o Options) []Guard {
	st := p.itemStats(Stats{TotalBlobs: inv.Blobs.Len(), TotalBlobBytes: inv.BlobBytes, KeptBlobs: res.KeptBlobs.Len()})
	return guards(inv, res, st, o)
}

// WalkGuards are the guards a walk alone can trip; the walk just before
// deleting is held to them too.
func WalkGuards(inv *walker.Inventory) []Guard {
	var g []Guard
	var strays []string
	for _, e := range inv.Unknown {
		// A driver's temporary file for a link (a registry writing under
		// the walk) hides nothing: no key of the layout is below it.
		if e.InFlightFor != "" {
			continue
		}
		if strings.HasPrefix(e.Key, layout.RepositoriesPrefix) {
			strays = append(strays, e.Key)
		}
	}
	if len(strays) > 0 {
		// Some stores hide every key below an object named like a directory
		// (MinIO does): a stray key in the repository tree may hide links.
		g = append(g, Guard{GuardUnknownKeys, fmt.Sprintf("%d key(s) under repositories/ fit no layout (first: %q); they may hide links from the walk", len(strays), strays[0])})
	}
	if len(inv.Corrupt) > 0 {
		g = append(g, Guard{GuardBlockingProblems, fmt.Sprintf("%d corrupt link file(s) (first: %q: %s)", len(inv.Corrupt), inv.Corrupt[0].Key, inv.Corrupt[0].CorruptReason)})
	}
	return g
}

// FreesBytes says whether deleting it frees its size.
func FreesBytes(it Item) bool { return freesBytes(it) }

// freesBytes says whether deleting it frees its size. A DLO blob's size is
// its segments' total, so its segments are not counted again.
func freesBytes(it Item) bool {
	switch it.Kind {
	case KindBlob, KindUploadFile:
		return true
	case KindSegment:
		return it.Reason == reasonOrphanSegment
	}
	return false
}

const reasonOrphanSegment = "segment of no blob"

// anyStored says whether some kept digest is a stored blob. Digests kept
// but missing from storage (a dangling link, a row without a blob) do not
// count: they prove nothing about the blobs that are there.
func anyStored(kept *blobindex.Set, stored *blobindex.Index) bool {
	for range kept.IDs() {
		return true // an ID is a stored blob's
	}
	for d := range kept.Unindexed() {
		if stored.Has(d) {
			return true
		}
	}
	return false
}

func guards(inv *walker.Inventory, res *mark.Result, s Stats, o Options) []Guard {
	g := []Guard{}
	blobs := inv.Blobs.Len()
	if len(inv.Repositories) == 0 && blobs > 0 {
		g = append(g, Guard{GuardNoRepositories, fmt.Sprintf("the walk found no repositories but %d blobs: refusing to treat every blob as garbage", blobs)})
	}
	if blobs > 0 && !anyStored(res.KeptBlobs, inv.Blobs) {
		g = append(g, Guard{GuardNothingMarked, fmt.Sprintf("nothing was marked live but %d blobs exist: refusing to delete them all", blobs)})
	}
	if blobs > 0 && o.MaxDeleteFraction > 0 && float64(s.Blobs)/float64(blobs) > o.MaxDeleteFraction {
		g = append(g, Guard{GuardDeleteFraction, fmt.Sprintf("%d of %d blobs (%.0f%%) would be deleted, more than --max-delete-fraction %.2f", s.Blobs, blobs, 100*float64(s.Blobs)/float64(blobs), o.MaxDeleteFraction)})
	}
	if b := res.Blocking(); len(b) > 0 {
		g = append(g, Guard{GuardBlockingProblems, fmt.Sprintf("%d problem(s) make liveness unprovable (first: %s %s): %s", len(b), b[0].Kind, b[0].Key, b[0].Explanation)})
	}
	g = append(g, WalkGuards(inv)...)
	return g
}

// seal is the digest Seal holds.
func (p *Plan) seal() string {
	header := struct {
		Version       int        `json:"version"`
		CreatedAt     time.Time  `json:"created_at"`
		WalkStartedAt time.Time  `json:"walk_started_at"`
		Storage       StorageRef `json:"storage"`
		Options       any        `json:"options"`
	}{p.Version, p.CreatedAt.UTC(), p.WalkStartedAt.UTC(), p.Storage, p.Options}
	b, err := json.Marshal(header)
	if err != nil {
		panic(err) // plain values always encode
	}
	return digest.FromBytes(b).String()
}

// WriteJSON writes the plan, sealed.
func (p *Plan) WriteJSON(w io.Writer) error {
	p.Seal = p.seal()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

// ReadPlan reads a plan written by WriteJSON.
func ReadPlan(r io.Reader) (*Plan, error) {
	var p Plan
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("plan is not a regsweep plan: %w", err)
	}
	if p.Version != PlanVersion {
		return nil, fmt.Errorf("plan version %d is not %d", p.Version, PlanVersion)
	}
	if p.Seal != p.seal() {
		return nil, errors.New("plan header (storage, options, times) was edited since gc wrote it, or the plan was written by an older regsweep: make a new plan")
	}
	for _, it := range p.Items {
		if err := checkItem(it); err != nil {
			return nil, fmt.Errorf("plan item %s %q: %w", it.Kind, it.Key, err)
		}
	}
	p.sortItems()
	return &p, nil
}

// checkItem proves that an item's key is the key its kind, repository and
// digest name. The recheck goes by digest and repository while deletion
// goes by key: an edited plan whose key named something else could
// otherwise delete any key, a kept blob or the lock included.
func checkItem(it Item) error {
	if _, ok := phase[it.Kind]; !ok {
		return errors.New("unknown kind")
	}
	var want layout.Spec
	switch it.Kind {
	case KindBlob:
		want = layout.BlobData{Digest: it.Digest}
	case KindRevisionLink:
		want = layout.RevisionLink{Repo: it.Repo, Digest: it.Digest}
	case KindLayerLink:
		want = layout.LayerLink{Repo: it.Repo, Digest: it.Digest}
	case KindSignatureLink:
		want = layout.SignatureLink{Repo: it.Repo, Digest: it.Manifest, Signature: it.Digest}
	case KindTag:
		want = layout.TagCurrentLink{Repo: it.Repo, Tag: it.Tag}
	case KindRepository:
		if !layout.ValidRepo(it.Repo) || it.Key != layout.RepoPrefix(it.Repo) {
			return errors.New("key is not the repository's directory")
		}
		return nil
	case KindSegment:
		// Segment names are the store's own (Swift: [prefix/]segments/...);
		// the driver refuses names outside its segment area.
		if it.Segments == "" || !strings.HasPrefix(it.Key, it.Segments+"/") || strings.HasPrefix(it.Key, layout.Root) {
			return errors.New("key is not a segment of its prefix")
		}
		return nil
	}
	spec, err := layout.Parse(it.Key)
	if err != nil {
		return err
	}
	if want != nil {
		if spec != want {
			return errors.New("key does not match the item's repository and digest")
		}
		return nil
	}
	ok := false
	switch s := spec.(type) {
	case layout.TagIndexLink:
		ok = it.Kind == KindTagIndexLink && s.Repo == it.Repo && s.Digest == it.Digest
	case layout.TagCurrentLink:
		ok = it.Kind == KindTagCurrentLink && s.Repo == it.Repo
	case layout.UploadData:
		ok = (it.Kind == KindUploadFile && s.Repo == it.Repo && s.ID == it.UploadID) ||
			(it.Kind == KindMultipartUpload && (it.Repo == "" || s.Repo == it.Repo))
	case layout.UploadStartedAt:
		ok = it.Kind == KindUploadFile && s.Repo == it.Repo && s.ID == it.UploadID
	case layout.UploadHashState:
		ok = it.Kind == KindUploadFile && s.Repo == it.Repo && s.ID == it.UploadID
	}
	if !ok {
		return errors.New("key does not match the item's kind, repository and digest")
	}
	return nil
}

// Add puts items in the plan, in the order the executor deletes them, and
// recomputes the stats: a participant's items (a policy's tags).
func (p *Plan) Add(items ...Item) {
	p.Items = append(p.Items, items...)
	p.sortItems()
	p.Stats = p.itemStats(p.Stats)
}

// Drop removes the items drop selects and recomputes the stats; it returns
// how many went. Harbor mode uses it for blobs whose database row a push
// touched since the mark.
func (p *Plan) Drop(drop func(Item) bool) int {
	kept := p.Items[:0]
	n := 0
	for _, it := range p.Items {
		if drop(it) {
			n++
			continue
		}
		kept = append(kept, it)
	}
	p.Items = kept
	p.Stats = p.itemStats(p.Stats)
	return n
}
