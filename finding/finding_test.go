package finding

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// The kinds and their severities are a contract: exactly those of the
// tables in docs/audit.md, storage and Harbor ones.
func TestKindsAreTheDocumentedContract(t *testing.T) {
	doc, err := os.ReadFile("../docs/audit.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| ((?:`[a-z_]+`(?:, )?)+) \\| (broken|reclaimable) \\|")
	documented := map[Kind]Severity{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		for _, k := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(m[1], -1) {
			if prev, ok := documented[Kind(k[1])]; ok && prev != Severity(m[2]) {
				t.Errorf("docs/audit.md gives %s two severities", k[1])
			}
			documented[Kind(k[1])] = Severity(m[2])
		}
	}
	if len(documented) != len(Kinds()) {
		t.Errorf("docs/audit.md documents %d kinds, Kinds has %d", len(documented), len(Kinds()))
	}
	for _, k := range Kinds() {
		if !k.Reported() || k.Severity() != documented[k] {
			t.Errorf("%s: severity %q, docs/audit.md says %q", k, k.Severity(), documented[k])
		}
	}
	if !slices.IsSorted(Kinds()) {
		t.Errorf("Kinds is not sorted: %v", Kinds())
	}
	if MissingRootManifest.Reported() || slices.Contains(Kinds(), MissingRootManifest) {
		t.Errorf("%s is reported; Harbor's %s names the artifact", MissingRootManifest, HarborMissingInStorage)
	}
}

// What makes liveness unprovable blocks a sweep; what is only broken or
// reclaimable does not.
func TestBlockingKinds(t *testing.T) {
	var blocking []Kind
	for _, k := range append(Kinds(), MissingRootManifest) {
		if k.Blocking() {
			blocking = append(blocking, k)
		}
	}
	if want := []Kind{CorruptLink, MissingChildManifest, UnparseableManifest}; !slices.Equal(blocking, want) {
		t.Errorf("blocking kinds %v, want %v", blocking, want)
	}
}

// Explain adds the tags a finding breaks to its explanation.
func TestExplain(t *testing.T) {
	d := digest.FromString("m")
	f := Finding{Kind: MissingBlobReference, Repo: "lib/app", Digest: d, Key: "k", Tags: []string{"v1", "v2"},
		Explanation: "referenced by manifest x, but storage lacks it", Err: os.ErrNotExist}
	if got, want := f.Explain(), "referenced by manifest x, but storage lacks it; breaks tags: v1, v2"; got != want {
		t.Errorf("Explain() = %q, want %q", got, want)
	}
	if got := (Finding{Kind: OrphanBlob, Explanation: "e"}).Explain(); got != "e" {
		t.Errorf("Explain() without tags = %q", got)
	}
	if s := f.String(); !strings.HasPrefix(s, `missing_blob_reference repo=lib/app digest=`+d.String()+` key="k": referenced`) {
		t.Errorf("String() = %s", s)
	}
}
