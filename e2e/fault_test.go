package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/regsweep/regsweep/internal/faultproxy"
	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/internal/testenv"
	"github.com/regsweep/regsweep/storage"
	"github.com/regsweep/regsweep/storage/s3"
	"github.com/regsweep/regsweep/storage/swift"
)

// faultSpec is a small registry with garbage of every kind regtree makes:
// re-tagged (untagged) images, an index, orphan blobs, an old upload.
var faultSpec = regtree.Spec{Seed: 11, Repositories: 4, ImagesPerRepo: 3, TagsPerRepo: 1, LayersPerImg: 2,
	SharedLayers: 2, OrphanBlobs: 3, LayerSize: 64, MultiArch: true, Uploads: 1}

// faultStore is a real store behind a fault proxy. Each copy of the corpus
// lives under its own root (S3 rootdirectory, Swift prefix) of one bucket
// or container.
type faultStore struct {
	name  string
	proxy *faultproxy.Server
	env   []string
	// flags selects the copy under root, through the proxy.
	flags func(root string) []string
	// direct opens the copy under root without the proxy.
	direct func(t *testing.T, root string) storage.Driver
	// listing matches the listing requests of the copy under root whose
	// prefix starts with the logical prefix given.
	listing func(root, prefix string) *regexp.Regexp
	// reads matches object reads (GET and HEAD).
	reads *regexp.Regexp
}

func minioFaultStore(t *testing.T) *faultStore {
	m := testenv.MinIO(t)
	bucket := testenv.NewBucket(t, m)
	p, err := faultproxy.New(m.URL(), uint64(time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	srv := p.Start()
	t.Cleanup(srv.Close)
	return &faultStore{name: "s3", proxy: srv,
		env: []string{"REGSWEEP_S3_ACCESS_KEY=" + m.AccessKey, "REGSWEEP_S3_SECRET_KEY=" + m.SecretKey},
		flags: func(root string) []string {
			return []string{"--s3-endpoint", srv.URL, "--s3-bucket", bucket, "--s3-root", "/" + root, "--s3-path-style"}
		},
		direct: func(t *testing.T, root string) storage.Driver {
			d, err := s3.New(context.Background(), s3.Config{Endpoint: m.URL(), Region: "us-east-1", Bucket: bucket, AccessKey: m.AccessKey,
				SecretKey: m.SecretKey, RootDirectory: "/" + root, ForcePathStyle: true, V4Auth: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
		// Every GET with a prefix is a listing (objects, delimiter, uploads).
		listing: func(root, prefix string) *regexp.Regexp {
			return regexp.MustCompile(`(^|&)prefix=` + regexp.QuoteMeta(root+"/"+prefix))
		},
		reads: regexp.MustCompile(`/(docker/registry/v2/.*(/data|/link|/startedat)|regsweep/lock\.json)$`),
	}
}

func swiftFaultStore(t *testing.T) *faultStore {
	s := testenv.Swift(t)
	container := testenv.NewContainer(t, s)
	target := strings.TrimSuffix(s.AuthURL, "/auth/v1.0")
	p, err := faultproxy.New(target, uint64(time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	srv := p.Start()
	t.Cleanup(srv.Close)
	return &faultStore{name: "swift", proxy: srv,
		env: []string{"REGSWEEP_SWIFT_PASSWORD=" + s.Key},
		flags: func(root string) []string {
			return []string{"--swift-auth-url", srv.URL + "/auth/v1.0", "--swift-username", s.User, "--swift-container", container,
				"--swift-auth-version", "1", "--swift-prefix", root}
		},
		direct: func(t *testing.T, root string) storage.Driver {
			d, err := swift.New(context.Background(), swift.Config{AuthURL: s.AuthURL, Username: s.User, Password: s.Key,
				Container: container, Prefix: root, AuthVersion: 1}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
		listing: func(root, prefix string) *regexp.Regexp {
			re := `(^|&)prefix=` + regexp.QuoteMeta(root+"/files/"+prefix)
			if prefix == "" {
				re += `|(^|&)prefix=` + regexp.QuoteMeta(root+"/segments/")
			}
			return regexp.MustCompile(re)
		},
		reads: regexp.MustCompile(`/files/(docker/registry/v2/.*(/data|/link|/startedat)|regsweep/lock\.json)$`),
	}
}

// copyAt writes the corpus under root, directly.
func (fs *faultStore) copyAt(t *testing.T, root string) storage.Driver {
	t.Helper()
	d := fs.direct(t, root)
	if _, err := regtree.Generate(context.Background(), d, faultSpec, 8); err != nil {
		t.Fatalf("writing the corpus under %s: %v", root, err)
	}
	return d
}

func storeKeys(t *testing.T, d storage.Driver) []string {
	t.Helper()
	var out []string
	if err := d.Walk(context.Background(), "docker/", func(oi storage.ObjectInfo) error {
		out = append(out, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func minus(a, b []string) []string {
	in := map[string]bool{}
	for _, k := range b {
		in[k] = true
	}
	var out []string
	for _, k := range a {
		if !in[k] {
			out = append(out, k)
		}
	}
	return out
}

// run runs regsweep on the copy under root and returns stdout, stderr and
// the exit code.
func (fs *faultStore) run(t *testing.T, root string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(regsweepBinary(t), append(args, fs.flags(root)...)...)
	cmd.Env = append(os.Environ(), fs.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// runResult is what a command decided, without times and request counts.
type runResult struct {
	inventory string   // inventory's JSON: totals, repositories, problems
	items     []string // gc: kind and key of every planned item
	deleted   []string // gc --delete: the keys that went
}

func gcArgs(t *testing.T) []string {
	return []string{"gc", "--delete-untagged", "--grace", "0s", "--upload-grace", "0s", "--max-delete-fraction", "0.9",
		"--cache-dir", t.TempDir(), "--format", "json", "--concurrency", "4"}
}

func planItems(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var plan struct {
		Items []struct{ Kind, Key string }
	}
	if err := json.Unmarshal(raw, &plan); err != nil {
		t.Fatalf("plan %s: %v", path, err)
	}
	var out []string
	for _, it := range plan.Items {
		out = append(out, it.Kind+" "+it.Key)
	}
	sort.Strings(out)
	return out
}

func inventoryOf(t *testing.T, stdout string) string {
	t.Helper()
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("inventory JSON: %v: %s", err, stdout)
	}
	return string(doc["totals"]) + string(doc["repositories"]) + string(doc["problems"])
}

// runAll runs inventory, a gc dry run and gc --delete on the copy under
// root, failing the test on any non-zero exit. arm, if set, runs before
// each command (it sets the faults afresh, so each command meets them).
func (fs *faultStore) runAll(t *testing.T, root string, d storage.Driver, arm func(command string)) runResult {
	t.Helper()
	if arm == nil {
		arm = func(string) {}
	}
	var r runResult
	arm("inventory")
	out, stderr, code := fs.run(t, root, "inventory", "--format", "json")
	if code != 0 {
		t.Fatalf("inventory exited %d: %s", code, stderr)
	}
	r.inventory = inventoryOf(t, out)
	plan := filepath.Join(t.TempDir(), "plan.json")
	arm("gc dry run")
	if _, stderr, code := fs.run(t, root, append(gcArgs(t), "--plan-out", plan)...); code != 0 {
		t.Fatalf("gc dry run exited %d: %s", code, stderr)
	}
	r.items = planItems(t, plan)
	before := storeKeys(t, d)
	arm("gc --delete")
	if _, stderr, code := fs.run(t, root, append(gcArgs(t), "--delete")...); code != 0 {
		t.Fatalf("gc --delete exited %d: %s", code, stderr)
	}
	r.deleted = minus(before, storeKeys(t, d))
	return r
}

// transientRules are, per fault kind, faults that come and go on every
// kind of request: each rule faults a few requests, then lets them pass.
func (fs *faultStore) transientRules(root string, f faultproxy.Fault, kinds ...string) []faultproxy.Rule {
	var rules []faultproxy.Rule
	for _, k := range kinds {
		r := faultproxy.Rule{Name: k, Fault: f, Skip: 1, Times: 2}
		switch k {
		case "list":
			r.Method, r.Query = "GET", fs.listing(root, "")
		case "get":
			r.Method, r.Path = "GET", fs.reads
		case "head":
			r.Method, r.Path = "HEAD", fs.reads
		case "delete":
			rules = append(rules, deleteRules(r)...)
			continue
		}
		rules = append(rules, r)
	}
	return rules
}

// deleteRules fault deletes as r does: S3 DeleteObjects (POST ?delete),
// Swift bulk deletes (DELETE ?bulk-delete), and single DELETEs of registry keys (Swift without bulk
// delete; the lock's release is left alone).
func deleteRules(r faultproxy.Rule) []faultproxy.Rule {
	bulk, single := r, r
	bulk.Method, bulk.Query = "", regexp.MustCompile(`(^|&)(delete|bulk-delete)(=|&|$)`)
	single.Method, single.Path = "DELETE", regexp.MustCompile(`/docker/registry/v2/`)
	return []faultproxy.Rule{bulk, single}
}

// TestFaultTransient: every kind of transient fault, injected through the
// proxy into listings, reads, HEADs and deletes of inventory, a gc dry run
// and gc --delete, on MinIO and Swift: each run succeeds after retries and
// decides exactly what a fault-free run decides.
func TestFaultTransient(t *testing.T) {
	t.Parallel() // most of a run is waiting out retry backoff
	for _, open := range []func(*testing.T) *faultStore{minioFaultStore, swiftFaultStore} {
		fs := open(t)
		t.Run(fs.name, func(t *testing.T) {
			t.Parallel()
			fs.proxy.SetRules()
			ref := fs.runAll(t, "ref", fs.copyAt(t, "ref"), nil)
			if len(ref.items) == 0 || len(ref.deleted) == 0 {
				t.Fatalf("the corpus has no garbage: plan %d items, deleted %d", len(ref.items), len(ref.deleted))
			}
			type kind struct {
				name  string
				fault faultproxy.Fault
				on    []string
			}
			kinds := []kind{
				{"500", faultproxy.InternalError(), []string{"list", "get", "head", "delete"}},
				{"503 SlowDown", faultproxy.SlowDown(), []string{"list", "get", "head", "delete"}},
				{"reset", faultproxy.Reset(), []string{"list", "get", "head", "delete"}},
				{"hang then drop", faultproxy.Hang(300 * time.Millisecond), []string{"list", "get", "delete"}},
				{"truncated body", faultproxy.TruncateBody(), []string{"list", "get", "delete"}},
				{"latency", faultproxy.Latency(50 * time.Millisecond), []string{"list", "get", "head", "delete"}},
			}
			if fs.name == "s3" {
				// A short page that says it is truncated, with the token to go
				// on from: a correct client loses nothing. (Swift pages carry
				// no such flag.)
				kinds = append(kinds, kind{"short page that says truncated", faultproxy.ShortListing(2, true), []string{"list"}})
			}
			for i, k := range kinds {
				root := fmt.Sprintf("k%d", i)
				d := fs.copyAt(t, root)
				fs.proxy.ResetLog()
				byCommand := map[string]map[string]int{}
				var last string
				count := func() {
					if last != "" {
						byCommand[last] = map[string]int{}
						for _, in := range fs.proxy.Injections() {
							byCommand[last][in.Rule]++
						}
						fs.proxy.ResetLog()
					}
				}
				got := fs.runAll(t, root, d, func(command string) {
					count()
					last = command
					fs.proxy.SetRules(fs.transientRules(root, k.fault, k.on...)...)
				})
				count()
				fs.proxy.SetRules()
				for command, n := range byCommand {
					if len(n) == 0 {
						t.Errorf("%s: no fault was injected into %s", k.name, command)
					}
				}
				t.Logf("%s: faults injected %v", k.name, byCommand)
				if got.inventory != ref.inventory {
					t.Errorf("%s: inventory differs from the fault-free one:\n%s\n%s", k.name, got.inventory, ref.inventory)
				}
				if !slices.Equal(got.items, ref.items) {
					t.Errorf("%s: the plan differs: only here %v, only fault-free %v", k.name, minus(got.items, ref.items), minus(ref.items, got.items))
				}
				if !slices.Equal(got.deleted, ref.deleted) {
					t.Errorf("%s: deleted %d keys, the fault-free run %d: only here %v, only fault-free %v", k.name, len(got.deleted), len(ref.deleted),
						minus(got.deleted, ref.deleted), minus(ref.deleted, got.deleted))
				}
			}
		})
	}
}

// TestFaultPersistent: faults that never clear end gc --delete with a named
// error and the exit code of an incomplete walk (5), a storage error (4) or
// failed deletions (8), and nothing is deleted.
func TestFaultPersistent(t *testing.T) {
	t.Parallel() // most of a run is waiting out retry backoff
	for _, open := range []func(*testing.T) *faultStore{minioFaultStore, swiftFaultStore} {
		fs := open(t)
		t.Run(fs.name, func(t *testing.T) {
			t.Parallel()
			// How many listings the first walk makes: the recheck's come
			// after them.
			fs.copyAt(t, "count")
			fs.proxy.SetRules(faultproxy.Rule{Name: "count", Method: "GET", Query: fs.listing("count", ""), Fault: faultproxy.Latency(0)})
			if _, stderr, code := fs.run(t, "count", gcArgs(t)...); code != 0 {
				t.Fatalf("counting run exited %d: %s", code, stderr)
			}
			firstWalk := len(fs.proxy.Injections())
			cases := []struct {
				name  string
				rule  faultproxy.Rule
				codes []int
				want  string // in stderr
			}{
				{"every listing answers 503", faultproxy.Rule{Method: "GET", Fault: faultproxy.SlowDown()}, []int{5}, "list"},
				{"every registry object read resets", faultproxy.Rule{Method: "GET", Path: regexp.MustCompile(`/docker/registry/v2/`), Fault: faultproxy.Reset()}, []int{4, 5}, "docker/registry/v2/"},
				{"the lock cannot be read", faultproxy.Rule{Method: "GET", Path: regexp.MustCompile(`/regsweep/lock\.json$`), Fault: faultproxy.Reset()}, []int{4, 5}, "lock"},
				{"the recheck's listings fail", faultproxy.Rule{Method: "GET", Skip: firstWalk, Fault: faultproxy.InternalError()}, []int{5}, "list"},
				{"every delete fails", faultproxy.Rule{Fault: faultproxy.SlowDown()}, []int{4, 8}, "delete"},
			}
			for i, c := range cases {
				root := fmt.Sprintf("p%d", i)
				d := fs.copyAt(t, root)
				before := storeKeys(t, d)
				c.rule.Name = c.name
				rules := []faultproxy.Rule{c.rule}
				switch {
				case c.name == "every delete fails":
					rules = deleteRules(c.rule)
				case c.rule.Query == nil && c.rule.Path == nil:
					rules[0].Query = fs.listing(root, "")
				}
				fs.proxy.ResetLog()
				fs.proxy.SetRules(rules...)
				_, stderr, code := fs.run(t, root, append(gcArgs(t), "--delete")...)
				injected := len(fs.proxy.Injections())
				fs.proxy.SetRules()
				lastLine := stderr[strings.LastIndex(strings.TrimRight(stderr, "\n"), "\n")+1:]
				t.Logf("%s: %d faults, exit %d: %s", c.name, injected, code, strings.TrimSpace(lastLine))
				if injected == 0 {
					t.Errorf("%s: no fault was injected", c.name)
				}
				if !slices.Contains(c.codes, code) || !strings.Contains(lastLine, "regsweep: ") || !strings.Contains(lastLine, c.want) {
					t.Errorf("%s: exit %d (want one of %v), last line %q (want it to name %q)", c.name, code, c.codes, lastLine, c.want)
				}
				if after := storeKeys(t, d); !slices.Equal(after, before) {
					t.Errorf("%s: DELETED under a persistent fault: %v", c.name, minus(before, after))
				}
			}
		})
	}
}

// TestFaultSilentShortListing: a listing page that ends early and says it
// is complete cannot be noticed by any client. What regsweep does with it:
// an empty repository tree trips a guard; a blob listing that ends early
// leaves blobs unlisted, so undeletable; a repository listing that ends
// early once is caught by the re-list before deleting; one that ends early
// every time makes the repository's images look deleted.
func TestFaultSilentShortListing(t *testing.T) {
	t.Parallel() // most of a run is waiting out retry backoff
	for _, open := range []func(*testing.T) *faultStore{minioFaultStore, swiftFaultStore} {
		fs := open(t)
		t.Run(fs.name, func(t *testing.T) {
			t.Parallel()
			ref := fs.copyAt(t, "ref")
			before := storeKeys(t, ref)
			if _, stderr, code := fs.run(t, "ref", append(gcArgs(t), "--delete")...); code != 0 {
				t.Fatalf("fault-free gc --delete exited %d: %s", code, stderr)
			}
			kept := storeKeys(t, ref)
			refDeleted := minus(before, kept)

			// The repository shard holding team2/app2, and where in it
			// app2's manifests start: a page cut there loses the tags and
			// revisions of app2 and keeps its layer links, as a listing
			// that ends early does.
			// Both stores list one level in a request, so the walk shards
			// the repository tree by its top-level names.
			shard := "docker/registry/v2/repositories/team2/"
			cut := 0
			for _, k := range before {
				if strings.HasPrefix(k, shard) && !strings.HasPrefix(k, "docker/registry/v2/repositories/team2/app2/_manifests/") {
					cut++
				}
				if strings.HasPrefix(k, "docker/registry/v2/repositories/team2/app2/_manifests/") {
					break
				}
			}
			cases := []struct {
				name string
				rule faultproxy.Rule
				// safe is what the case must show; lost live data fails any case.
				codes []int
			}{
				{"every repository listing is empty", faultproxy.Rule{Method: "GET", Query: fs.listing("%s", "docker/registry/v2/repositories/"), Fault: faultproxy.ShortListing(0, false)}, []int{6}},
				{"every blob listing ends after 2 keys", faultproxy.Rule{Method: "GET", Query: fs.listing("%s", "docker/registry/v2/blobs/"), Fault: faultproxy.ShortListing(2, false)}, []int{0, 5, 6}},
				{"team2/app2's listing ends early once", faultproxy.Rule{Method: "GET", Query: fs.listing("%s", shard), Times: 1, Fault: faultproxy.ShortListing(cut, false)}, []int{0, 5}},
				// The walk and both rechecks see app2 with layer links only;
				// listing app2's _manifests/ on its own before removing the
				// repository shows what they missed: exit 5, nothing deleted.
				{"team2/app2's listing always ends early", faultproxy.Rule{Method: "GET", Query: fs.listing("%s", shard), Fault: faultproxy.ShortListing(cut, false)}, []int{5}},
			}
			for i, c := range cases {
				root := fmt.Sprintf("s%d", i)
				d := fs.copyAt(t, root)
				c.rule.Name = c.name
				c.rule.Query = regexp.MustCompile(strings.ReplaceAll(c.rule.Query.String(), "%s", root))
				fs.proxy.ResetLog()
				fs.proxy.SetRules(c.rule)
				_, stderr, code := fs.run(t, root, append(gcArgs(t), "--delete")...)
				injected := len(fs.proxy.Injections())
				fs.proxy.SetRules()
				after := storeKeys(t, d)
				deleted := minus(before, after)
				lost := minus(kept, after)
				t.Logf("%s: %d faults, exit %d, deleted %d keys (fault-free run: %d), %s", c.name, injected, code, len(deleted), len(refDeleted), lastLine(stderr))
				if injected == 0 {
					t.Errorf("%s: no fault was injected", c.name)
				}
				if !slices.Contains(c.codes, code) {
					t.Errorf("%s: exit %d, want one of %v", c.name, code, c.codes)
				}
				if len(lost) > 0 {
					t.Errorf("%s: LIVE DATA DELETED: %d keys the fault-free run keeps, e.g. %v", c.name, len(lost), lost[:min(len(lost), 4)])
				}
			}
		})
	}
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return strings.TrimSpace(s[strings.LastIndex(s, "\n")+1:])
}
