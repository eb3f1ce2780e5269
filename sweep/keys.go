package sweep

import (
	"github.com/opencontainers/go-digest"

	"github.com/regsweep/regsweep/layout"
)

func keyOf(s layout.Spec) string {
	k, err := layout.Path(s)
	if err != nil {
		return ""
	}
	return k
}

func revisionSpec(repo string, d digest.Digest) layout.Spec {
	return layout.RevisionLink{Repo: repo, Digest: d}
}
func layerSpec(repo string, d digest.Digest) layout.Spec {
	return layout.LayerLink{Repo: repo, Digest: d}
}
func tagIndexSpec(repo, tag string, d digest.Digest) layout.Spec {
	return layout.TagIndexLink{Repo: repo, Tag: tag, Digest: d}
}
func tagCurrentSpec(repo, tag string) layout.Spec { return layout.TagCurrentLink{Repo: repo, Tag: tag} }

func blobSpec(d digest.Digest) layout.Spec { return layout.BlobData{Digest: d} }
