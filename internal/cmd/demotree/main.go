// Command demotree writes a small sample registry tree into a directory,
// laid out as distribution's filesystem driver writes it, for `make demo`.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/storage/filesystem"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: demotree DIR")
		os.Exit(2)
	}
	if err := os.MkdirAll(os.Args[1], 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	d, err := filesystem.New(os.Args[1], 8, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c, err := regtree.Generate(context.Background(), d, regtree.Spec{
		Seed: 42, Repositories: 8, ImagesPerRepo: 3, TagsPerRepo: 2, LayersPerImg: 3, SharedLayers: 2,
		OrphanBlobs: 4, LayerSize: 4096, MultiArch: true, Uploads: 2,
	}, 8)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("wrote a sample registry to %s: %d repositories, %d tags, %d manifests, %d blobs, %d uploads\n",
		os.Args[1], c.Repositories, c.Tags, c.Manifests, c.Blobs, c.Uploads)
}
