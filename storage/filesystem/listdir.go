package filesystem

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/regsweep/regsweep/storage"
)

var _ storage.DirLister = (*Driver)(nil)

// ListDir reads one directory: the walker takes the top of the registry
// and of its repository tree from it, one read each, instead of walking a
// directory once per name filter. Entries are classified as Walk does
// (symlinks followed; anything else an error naming the key). A directory
// that does not exist has no children.
func (d *Driver) ListDir(ctx context.Context, prefix string, fn func(storage.ObjectInfo, bool) error) error {
	key := strings.TrimSuffix(prefix, "/")
	dir := d.root
	if key != "" {
		p, err := d.fullPath(key)
		if err != nil {
			return d.pathErr("list", prefix, err)
		}
		dir = p
	}
	d.reqs.Add(storage.OpList)
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return d.pathErr("list", prefix, err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		childKey := filepath.ToSlash(filepath.Join(key, e.Name()))
		info, err := d.entryInfo(childKey, e)
		switch {
		case err != nil:
			return err
		case info == nil:
			continue // deleted since the directory was read: see readDir
		case info.IsDir():
			err = fn(storage.ObjectInfo{Key: childKey + "/"}, true)
		default:
			err = fn(storage.ObjectInfo{Key: childKey, Size: info.Size(), ModTime: info.ModTime()}, false)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
