package filesystem

import (
	"fmt"
	"os"
	"syscall"

	"github.com/regsweep/regsweep/storage"
)

var _ storage.Volumer = (*Driver)(nil)

// Volume names the root directory by device and inode: a plan made on one
// volume must not run against another one mounted at the same path (a
// restored copy, a different NFS export).
func (d *Driver) Volume() (string, error) {
	st, err := os.Stat(d.root)
	if err != nil {
		return "", d.pathErr("stat", "", err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return "", fmt.Errorf("filesystem: no device and inode for %s on this platform", d.root)
	}
	return fmt.Sprintf("dev=%d,ino=%d", sys.Dev, sys.Ino), nil
}
