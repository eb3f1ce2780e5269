package e2e

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regsweep/regsweep/internal/deploytest"
	"github.com/regsweep/regsweep/internal/testenv"
)

// imageUID is the non-root user of the base image (as in distroless and
// Chainguard's static images).
const imageUID = 65532

// hostCABundle is where Debian keeps the CA certificates the base image
// gets (regsweep needs them for S3 and Swift over TLS).
const hostCABundle = "/etc/ssl/certs/ca-certificates.crt"

// TestImageBuiltWithKo builds regsweep's container image the way users do
// (`make image`, which runs ko: no Docker engine), on a base image the test
// first creates in a real local registry, pushes it there, pulls it back
// with crane, unpacks it and runs regsweep from it.
func TestImageBuiltWithKo(t *testing.T) {
	ko := deploytest.Tool(t, "ko")
	root := deploytest.RepoRoot(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{Storage: "filesystem:\n  rootdirectory: " + t.TempDir() + "\n"})
	base := pushBaseImage(t, reg)

	version := fmt.Sprintf("image-test-%d", time.Now().UnixNano())
	refs := filepath.Join(t.TempDir(), "image.ref")
	cmd := exec.Command("make", "--no-print-directory", "-C", root, "image",
		"KO="+ko,
		"IMAGE_BASE="+base,
		"KO_DOCKER_REPO="+reg.Ref("regsweep"),
		"IMAGE_PLATFORMS=linux/"+runtime.GOARCH,
		"IMAGE_VERSION="+version,
		"IMAGE_TAGS=test",
		"IMAGE_REFS="+refs,
	)
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	refData, err := os.ReadFile(refs)
	if err != nil {
		t.Fatalf("make image wrote no image reference: %v", err)
	}
	ref := strings.TrimSpace(string(refData))
	if !strings.HasPrefix(ref, reg.Ref("regsweep")+"@sha256:") && !strings.HasPrefix(ref, reg.Ref("regsweep")+":test@sha256:") {
		t.Fatalf("image reference %q is not in the local registry by digest", ref)
	}

	// Pull it back: the manifest and every blob are in the registry, the
	// tag points at what was built.
	reg.Crane(t, "validate", "--remote", ref)
	digest := ref[strings.LastIndex(ref, "@")+1:]
	if got := reg.Crane(t, "digest", reg.Ref("regsweep:test")); got != digest {
		t.Errorf("tag test is %s, the build pushed %s", got, digest)
	}

	// The image's configuration.
	var cfg struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Config       struct {
			User       string   `json:"User"`
			Entrypoint []string `json:"Entrypoint"`
			Env        []string `json:"Env"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(reg.Crane(t, "config", ref)), &cfg); err != nil {
		t.Fatalf("image config: %v", err)
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
		t.Errorf("image platform %s/%s, want linux/%s", cfg.OS, cfg.Architecture, runtime.GOARCH)
	}
	if len(cfg.Config.Entrypoint) != 1 {
		t.Fatalf("entrypoint %q, want the regsweep binary alone", cfg.Config.Entrypoint)
	}

	// Unpack the image's filesystem.
	export := filepath.Join(t.TempDir(), "fs.tar")
	reg.Crane(t, "export", ref, export)
	rootfs := t.TempDir()
	if err := untar(export, rootfs); err != nil {
		t.Fatalf("unpacking %s: %v", ref, err)
	}

	// Not root: the configured user is a uid other than 0 that the image's
	// own /etc/passwd knows.
	uid, gid := imageUser(t, rootfs, cfg.Config.User)
	if uid == 0 {
		t.Fatalf("the image runs as root (User %q)", cfg.Config.User)
	}
	if uid != imageUID {
		t.Errorf("the image runs as uid %d, want %d", uid, imageUID)
	}

	// Minimal and static: the binary has no ELF interpreter or shared
	// libraries, there is no shell, and the CA bundle is there for TLS.
	bin := filepath.Join(rootfs, cfg.Config.Entrypoint[0])
	checkStatic(t, bin)
	for _, p := range []string{"bin/sh", "bin/busybox", "usr/bin/sh"} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); err == nil {
			t.Errorf("the image has /%s: not minimal", p)
		}
	}
	if st, err := os.Stat(filepath.Join(rootfs, hostCABundle)); err != nil || st.Size() == 0 {
		t.Errorf("the image has no CA bundle at %s: %v", hostCABundle, err)
	}

	// Run `regsweep version` from the unpacked filesystem: the binary ko
	// built, with the version make passed.
	want := "regsweep " + version
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), want) || !strings.Contains(string(out), "linux/"+runtime.GOARCH) {
		t.Fatalf("%s version: %v\n%s\nwant it to start with %q", bin, err, out, want)
	}
	// And inside the image's own root as its user, the nearest thing to
	// running the container (chroot needs root; make test runs as root).
	if os.Geteuid() == 0 {
		c := exec.Command(cfg.Config.Entrypoint[0], "version")
		c.Dir = "/"
		c.Env = cfg.Config.Env
		c.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs, Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		out, err := c.CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), want) {
			t.Errorf("regsweep version chrooted into the image as uid %d: %v\n%s", uid, err, out)
		}
	} else {
		t.Logf("not root: regsweep ran from the unpacked image, but not chrooted into it")
	}
}

// pushBaseImage creates a minimal static base in reg, as distroless or
// Chainguard's static images are: /etc/passwd and /etc/group with root and
// nonroot (65532), the host's CA certificates, /tmp, and the config's user
// set to 65532. It returns the base's reference by digest.
func pushBaseImage(t *testing.T, reg *testenv.Registry) string {
	t.Helper()
	ca, err := os.ReadFile(hostCABundle)
	if err != nil {
		t.Fatalf("the host's CA bundle (package ca-certificates): %v", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	add := func(name string, mode int64, uid int, body []byte) {
		h := &tar.Header{Name: name, Mode: mode, Uid: uid, Gid: uid, ModTime: epoch, Typeflag: tar.TypeReg, Size: int64(len(body))}
		if strings.HasSuffix(name, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	add("etc/", 0o755, 0, nil)
	add("etc/passwd", 0o644, 0, []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", imageUID, imageUID)))
	add("etc/group", 0o644, 0, []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", imageUID)))
	add("etc/ssl/", 0o755, 0, nil)
	add("etc/ssl/certs/", 0o755, 0, nil)
	add("etc/ssl/certs/ca-certificates.crt", 0o644, 0, ca)
	add("home/", 0o755, 0, nil)
	add("home/nonroot/", 0o700, imageUID, nil)
	add("tmp/", 0o1777, 0, nil)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer := filepath.Join(t.TempDir(), "base.tar")
	if err := os.WriteFile(layer, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	tag := reg.Ref("base/static:nonroot")
	reg.Crane(t, "append", "--oci-empty-base", "-f", layer, "-t", tag)
	reg.Crane(t, "mutate", tag, "--user", strconv.Itoa(imageUID)+":"+strconv.Itoa(imageUID),
		"--set-platform", "linux/"+runtime.GOARCH, "-t", tag)
	return reg.Ref("base/static@" + reg.Crane(t, "digest", tag))
}

// imageUser resolves the config's User ("uid", "uid:gid", "name" or
// "name:group") against the image's /etc/passwd, failing the test when
// the image does not know the user.
func imageUser(t *testing.T, rootfs, user string) (uid, gid int) {
	t.Helper()
	if user == "" {
		t.Fatalf("the image config sets no User: it would run as root")
	}
	name, _, _ := strings.Cut(user, ":")
	passwd, err := os.ReadFile(filepath.Join(rootfs, "etc/passwd"))
	if err != nil {
		t.Fatalf("the image has no /etc/passwd: %v", err)
	}
	for _, line := range strings.Split(string(passwd), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 4 || (f[0] != name && f[2] != name) {
			continue
		}
		u, err1 := strconv.Atoi(f[2])
		g, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			t.Fatalf("bad /etc/passwd line %q", line)
		}
		return u, g
	}
	t.Fatalf("the image's User %q is not in its /etc/passwd", user)
	return 0, 0
}

// checkStatic fails the test unless path is an executable ELF file linked
// statically (CGO_ENABLED=0: no interpreter, no shared libraries).
func checkStatic(t *testing.T, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("entrypoint %s: %v", path, err)
	}
	if st.Mode()&0o111 == 0 {
		t.Errorf("entrypoint %s is not executable (%v)", path, st.Mode())
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("entrypoint %s is not an ELF file: %v", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s asks for an ELF interpreter: not static", path)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v (%v): not static", path, libs, err)
	}
}

// untar unpacks a filesystem tarball (crane export's output) into dir,
// refusing entries that would land outside it.
func untar(tarball, dir string) error {
	f, err := os.Open(tarball)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(filepath.Join("/", h.Name))
		target := filepath.Join(dir, name)
		if name == "/" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(h.Mode) & os.ModePerm
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(target, mode|0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			out, err := os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode|0o600)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink:
			// Kept as written: the link is only followed inside a chroot.
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
		case tar.TypeLink:
			src := filepath.Join(dir, filepath.Clean(filepath.Join("/", h.Linkname)))
			if err := os.Link(src, target); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unexpected entry type %c in an image", h.Name, h.Typeflag)
		}
	}
}
