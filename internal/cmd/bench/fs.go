package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/storage/filesystem"
)

// The filesystem trees, of the shape issue 18 measured: 500 repositories of
// 30 images (5 layers each, one from a pool of 50 base layers shared by
// all, and 4 more mounted from images of other repositories), 5 tags per
// repository re-tagged once, a tagged index in every fifth, one image per
// repository deleted through the API (its revision link gone, its blobs and
// layer links left), and orphan blobs up to the round number. 100k: 100,000
// blobs, 15,100 manifest blobs (14,600 linked), about 268,000 files.
// Garbage: the orphans and each deleted image's 6 blobs.
func fsSpec(repos, orphans, uploads int) regtree.Spec {
	return regtree.Spec{Seed: 7, Repositories: repos, ImagesPerRepo: 30, TagsPerRepo: 5, LayersPerImg: 5,
		SharedLayers: 50, OrphanBlobs: orphans, LayerSize: 64, MultiArch: true, Uploads: uploads,
		MountedLayers: 4, UnlinkedImages: 1}
}

var fsSpecs = map[string]regtree.Spec{
	"10k":  fsSpec(50, 940, 2),
	"100k": fsSpec(500, 9850, 20),
	"1m":   fsSpec(5000, 98950, 200),
}

type fsOptions struct {
	dir           string
	scales        string
	countScales   string
	countAll      bool
	rounds1m      int
	latency       time.Duration
	latencyScale  string
	latencyOps    string
	latencyRounds int
	latencyTTL    time.Duration
	cpuProfile    string
	profileScale  string
	generateOnly  bool
}

func (f *fsOptions) register() {
	flag.StringVar(&f.dir, "fs-dir", filepath.Join(os.TempDir(), "regsweep-bench-fs"), "directory holding the generated filesystem trees (each generated once, then reused)")
	flag.StringVar(&f.scales, "fs-scales", "10k,100k", "filesystem trees to measure, comma-separated: 10k, 100k, 1m (growth is printed between consecutive ones)")
	flag.StringVar(&f.countScales, "fs-count-scales", "100k", "trees whose syscalls are counted (strace -c -f, in runs of their own, never timed); empty: none")
	flag.BoolVar(&f.countAll, "fs-count-all", false, "count every syscall, not only the filesystem's (about 4x slower: strace then stops every thread at every syscall)")
	flag.IntVar(&f.rounds1m, "rounds-1m", 1, "rounds on the 1m tree (a round there takes about 15 minutes)")
	flag.DurationVar(&f.latency, "fs-latency", 0, "simulate a network filesystem: a FUSE passthrough that adds this delay to each delayed request (e.g. 500us); 0: off")
	flag.StringVar(&f.latencyScale, "fs-latency-scale", "10k", "the tree measured through the simulated network filesystem")
	flag.StringVar(&f.latencyOps, "fs-latency-ops", defaultDelayedOps, "FUSE requests delayed, comma-separated: "+strings.Join(fuseOps, ", "))
	flag.IntVar(&f.latencyRounds, "fs-latency-rounds", 1, "rounds through the simulated network filesystem")
	flag.DurationVar(&f.latencyTTL, "fs-latency-ttl", time.Hour, "how long the kernel caches a looked-up name and its attributes on the simulated filesystem")
	flag.BoolVar(&f.generateOnly, "fs-generate-only", false, "generate the trees of -fs-scales (and -fs-latency-scale) that are missing, measure nothing")
	flag.StringVar(&f.cpuProfile, "fs-cpuprofile", "", "write a CPU profile of regsweep's warm gc to this file (an extra, untimed run after the timed ones) and print its top entries")
	flag.StringVar(&f.profileScale, "fs-cpuprofile-scale", "100k", "the tree -fs-cpuprofile profiles")
}

// A fsTool is one collector run on a tree.
type fsTool struct {
	label string
	kind  string // "regsweep" or "reference"
	bin   string
	args  []string
	env   []string
}

// fsRun is one timed run.
type fsRun struct {
	result
	gc      gcDoc            // regsweep's document
	garbage map[string]bool  // the garbage blobs it found
	ops     map[string]int64 // FUSE requests, through the simulated filesystem
	delayed int64
}

// gcDoc is what the bench reads of regsweep's JSON document.
type gcDoc struct {
	Totals struct {
		Repositories int   `json:"repositories"`
		Tags         int   `json:"tags"`
		Manifests    int   `json:"manifests"`
		LayerLinks   int   `json:"layer_links"`
		Blobs        int64 `json:"blobs"`
	} `json:"totals"`
	Plan struct {
		Blobs int `json:"blobs"`
	} `json:"plan"`
	Requests          map[string]int64 `json:"requests"`
	ManifestReads     int64            `json:"manifest_reads"`
	ManifestCacheHits int64            `json:"manifest_cache_hits"`
}

// fsScale is what one tree's runs gave, for the growth between trees.
type fsScale struct {
	name  string
	blobs int64
	runs  map[string][]fsRun // by tool label, one per round
}

func runFS(o options) error {
	f := o.fs
	fmt.Printf("\n== filesystem ==\n")
	regsweepBin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	v28, v3 := os.Getenv("REGSWEEP_TEST_REGISTRY_V28"), os.Getenv("REGSWEEP_TEST_REGISTRY_V3")
	if o.reference && (v28 == "" || v3 == "") {
		return fmt.Errorf("registry v2.8.3 and v3 are not installed: run `make testenv-up` (REGSWEEP_TEST_REGISTRY_V28 or _V3 unset)")
	}
	if _, err := exec.LookPath("/usr/bin/time"); err != nil {
		return fmt.Errorf("GNU time is needed for peak RSS: run `make testenv-install` (Debian package time)")
	}
	if f.countScales != "" {
		if _, err := exec.LookPath("strace"); err != nil {
			return fmt.Errorf("strace is needed to count syscalls: run `make testenv-install` (Debian package strace), or pass -fs-count-scales ''")
		}
	}
	work, err := os.MkdirTemp("", "regsweep-bench-fs-run")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	var scales []fsScale
	for _, name := range splitList(f.scales) {
		spec, ok := fsSpecs[name]
		if !ok {
			return fmt.Errorf("-fs-scales: unknown tree %q (10k, 100k, 1m)", name)
		}
		root, err := ensureTree(f.dir, name, spec)
		if err != nil || f.generateOnly {
			if err != nil {
				return err
			}
			continue
		}
		rounds := o.rounds
		if name == "1m" {
			rounds = f.rounds1m
		}
		sc, err := measureTree(o, name, root, work, regsweepBin, v28, v3, rounds, slices.Contains(splitList(f.countScales), name))
		if err != nil {
			return err
		}
		if f.cpuProfile != "" && name == f.profileScale {
			if err := profileGC(regsweepBin, root, work, f.cpuProfile); err != nil {
				return err
			}
		}
		scales = append(scales, sc)
	}
	for i := 1; i < len(scales); i++ {
		printGrowth(scales[i-1], scales[i])
	}
	if f.latency > 0 || f.generateOnly {
		spec, ok := fsSpecs[f.latencyScale]
		if !ok {
			return fmt.Errorf("-fs-latency-scale: unknown tree %q (10k, 100k, 1m)", f.latencyScale)
		}
		root, err := ensureTree(f.dir, f.latencyScale, spec)
		if err != nil || f.generateOnly {
			return err
		}
		if err := measureLatency(o, root, work, regsweepBin, v28, v3); err != nil {
			return err
		}
	}
	return nil
}

// tools are the collectors run on a tree rooted at root, in the order of a
// round. Each regsweep run writes its plan to work; cache is the round's
// manifest cache (empty before the cold run, filled by it for the rest).
func tools(o options, root, work, cache, regsweepBin, v28, v3 string) ([]fsTool, error) {
	cfg := filepath.Join(work, "registry.yml")
	if err := os.WriteFile(cfg, []byte("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: "+root+"\n"), 0o644); err != nil {
		return nil, err
	}
	common := []string{"--config=", "--fs-root", root, "--format", "json", "--quiet", "--grace", "0s", "--upload-grace", "0s", "--cache-dir", cache}
	gc := append([]string{"gc", "--max-delete-fraction", "1", "--plan-out", filepath.Join(work, "plan.json")}, common...)
	env := os.Environ()
	ts := []fsTool{
		{label: "regsweep gc, cold cache", kind: "regsweep", bin: regsweepBin, args: gc, env: env},
		{label: "regsweep gc, warm cache", kind: "regsweep", bin: regsweepBin, args: gc, env: env},
		{label: "regsweep audit, warm cache", kind: "audit", bin: regsweepBin, args: append([]string{"audit", "--fail-on", "none"}, common...), env: env},
	}
	if o.reference {
		ts = append(ts,
			fsTool{label: "distribution v2.8.3 garbage-collect -d", kind: "reference", bin: v28, args: []string{"garbage-collect", "-d", cfg}, env: env},
			fsTool{label: "distribution v3 garbage-collect --dry-run", kind: "reference", bin: v3, args: []string{"garbage-collect", "--dry-run", cfg}, env: env})
	}
	return ts, nil
}

// runTool runs t once, timed, and reads what it found.
func runTool(t fsTool, work string) (fsRun, error) {
	out, err := os.Create(filepath.Join(work, "stdout"))
	if err != nil {
		return fsRun{}, err
	}
	defer out.Close()
	os.Remove(filepath.Join(work, "plan.json"))
	r, err := measureTo(out, t.bin, t.env, t.args...)
	if err != nil {
		return fsRun{}, err
	}
	run := fsRun{result: r}
	switch t.kind {
	case "regsweep", "audit":
		b, err := os.ReadFile(out.Name())
		if err != nil {
			return run, err
		}
		if err := json.Unmarshal(b, &run.gc); err != nil {
			return run, fmt.Errorf("%s: its JSON output: %w", t.label, err)
		}
		if t.kind == "regsweep" {
			run.garbage, err = planBlobs(filepath.Join(work, "plan.json"))
		}
		return run, err
	default:
		run.garbage, err = referenceGarbage(out.Name())
		if err != nil {
			return run, fmt.Errorf("%s: %w", t.label, err)
		}
		return run, nil
	}
}

// planBlobs reads the digests of the blobs a regsweep plan deletes.
func planBlobs(path string) (map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var plan struct {
		Items []struct {
			Kind   string `json:"kind"`
			Digest string `json:"digest"`
		} `json:"items"`
	}
	if err := json.Unmarshal(b, &plan); err != nil {
		return nil, fmt.Errorf("regsweep's plan: %w", err)
	}
	out := map[string]bool{}
	for _, it := range plan.Items {
		if it.Kind == "blob" {
			out[it.Digest] = true
		}
	}
	return out, nil
}

// referenceGarbage reads distribution's dry-run listing: one "blob eligible
// for deletion: DIGEST" line per blob, after a line that counts them, which
// the listing must match.
func referenceGarbage(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]bool{}
	counted := -1
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if d, ok := strings.CutPrefix(line, "blob eligible for deletion: "); ok {
			out[strings.TrimSpace(d)] = true
		} else if _, after, ok := strings.Cut(line, " blobs marked, "); ok {
			n, _, _ := strings.Cut(after, " ")
			counted, err = strconv.Atoi(n)
			if err != nil {
				return nil, fmt.Errorf("unreadable summary line %q", line)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if counted != len(out) {
		return nil, fmt.Errorf("its summary counts %d eligible blobs, its listing names %d", counted, len(out))
	}
	return out, nil
}

func measureTree(o options, name, root, work, regsweepBin, v28, v3 string, rounds int, count bool) (fsScale, error) {
	files, dirs, warmup, err := warmTree(root)
	if err != nil {
		return fsScale{}, err
	}
	fmt.Printf("\n-- %s tree: %s (%d files, %d directories; read once to warm the page cache in %s; load average %s) --\n",
		name, root, files, dirs, warmup.Round(time.Millisecond), loadAvg())
	sc := fsScale{name: name, runs: map[string][]fsRun{}}
	var order []string
	for round := range max(rounds, 1) {
		cache, err := os.MkdirTemp(work, "cache")
		if err != nil {
			return sc, err
		}
		ts, err := tools(o, root, work, cache, regsweepBin, v28, v3)
		if err != nil {
			return sc, err
		}
		for _, t := range ts {
			r, err := runTool(t, work)
			if err != nil {
				return sc, err
			}
			if round == 0 {
				order = append(order, t.label)
				if t.kind == "regsweep" && sc.blobs == 0 {
					sc.blobs = r.gc.Totals.Blobs
					tt := r.gc.Totals
					fmt.Printf("store: %d repositories, %d tags, %d manifests (revision links), %d layer links, %d blobs\n",
						tt.Repositories, tt.Tags, tt.Manifests, tt.LayerLinks, tt.Blobs)
				}
			}
			sc.runs[t.label] = append(sc.runs[t.label], r)
			fmt.Printf("  round %d  %-42s %s\n", round+1, t.label, fmtRun(r.result))
		}
		os.RemoveAll(cache)
	}
	fmt.Printf("%s tree, medians of %d rounds (peak RSS: the highest; load average now %s):\n", name, max(rounds, 1), loadAvg())
	for _, label := range order {
		runs := sc.runs[label]
		fmt.Printf("  %-42s %s\n", label, fmtRun(summarize(runs)))
		if g := runs[0].gc; g.Requests != nil {
			fmt.Printf("  %-42s requests %s; manifest reads %d, manifest cache hits %d\n", "", fmtReqs(g.Requests), g.ManifestReads, g.ManifestCacheHits)
		}
	}
	if o.reference {
		cold, warm := summarize(sc.runs[order[0]]), summarize(sc.runs[order[1]])
		for _, ref := range order[3:] {
			r := summarize(sc.runs[ref])
			fmt.Printf("  %s / regsweep gc: wall %.2fx cold, %.2fx warm (every round, warm: %s); CPU %.2fx cold, %.2fx warm\n",
				ref, r.wall.Seconds()/cold.wall.Seconds(), r.wall.Seconds()/warm.wall.Seconds(),
				fmtRatios(r.wall, walls(sc.runs[order[1]])), r.cpu().Seconds()/cold.cpu().Seconds(), r.cpu().Seconds()/warm.cpu().Seconds())
		}
	}
	printAgreement(sc, order)
	if count {
		if err := countSyscalls(o, root, work, regsweepBin, v28, v3); err != nil {
			return sc, err
		}
	}
	return sc, nil
}

// printAgreement compares the garbage blobs every run of the first round
// found.
func printAgreement(sc fsScale, order []string) {
	var first map[string]bool
	agree := true
	var parts []string
	for _, label := range order {
		g := sc.runs[label][0].garbage
		if g == nil {
			continue // audit plans nothing
		}
		parts = append(parts, fmt.Sprintf("%s %d", label, len(g)))
		if first == nil {
			first = g
			continue
		}
		if missing, extra := diff(first, g); len(missing)+len(extra) > 0 {
			agree = false
			fmt.Printf("  DISAGREEMENT: %s lacks %d of regsweep's garbage blobs (e.g. %v) and adds %d (e.g. %v)\n",
				label, len(missing), head(missing), len(extra), head(extra))
		}
	}
	verdict := "all the same blobs"
	if !agree {
		verdict = "NOT the same blobs (above)"
	}
	fmt.Printf("garbage blobs found: %s: %s\n", strings.Join(parts, ", "), verdict)
}

func diff(a, b map[string]bool) (missing, extra []string) {
	for d := range a {
		if !b[d] {
			missing = append(missing, d)
		}
	}
	for d := range b {
		if !a[d] {
			extra = append(extra, d)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	return missing, extra
}

func head(s []string) []string { return s[:min(len(s), 3)] }

func walls(runs []fsRun) []time.Duration {
	var out []time.Duration
	for _, r := range runs {
		out = append(out, r.wall)
	}
	return out
}

// summarize is the median wall and CPU of runs, their highest peak RSS and
// the most any of them read from disk.
func summarize(runs []fsRun) result {
	median := func(get func(fsRun) time.Duration) time.Duration {
		var v []time.Duration
		for _, r := range runs {
			v = append(v, get(r))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	var s result
	s.wall = median(func(r fsRun) time.Duration { return r.wall })
	// The median user and system time of the run with the median CPU.
	cpus := slices.Clone(runs)
	slices.SortFunc(cpus, func(a, b fsRun) int { return int(a.cpu() - b.cpu()) })
	s.user, s.sys = cpus[len(cpus)/2].user, cpus[len(cpus)/2].sys
	for _, r := range runs {
		s.maxRSS = max(s.maxRSS, r.maxRSS)
		s.diskRead = max(s.diskRead, r.diskRead)
	}
	return s
}

func fmtRun(r result) string {
	return fmt.Sprintf("wall %7.2f s  CPU %7.2f s (user %.2f + sys %.2f)  peak RSS %6.1f MiB  disk reads %.0f MiB",
		r.wall.Seconds(), r.cpu().Seconds(), r.user.Seconds(), r.sys.Seconds(), mib(r.maxRSS), mib(r.diskRead))
}

// printGrowth prints how each tool's cost grew from tree a to tree b, and
// the peak RSS each added blob cost: the difference of the peaks over the
// difference in blobs, every fixed cost of a run on both sides of it.
func printGrowth(a, b fsScale) {
	fmt.Printf("\ngrowth from the %s tree (%d blobs) to the %s tree (%d blobs), %.1fx the blobs:\n", a.name, a.blobs, b.name, b.blobs, float64(b.blobs)/float64(a.blobs))
	var labels []string
	for label := range b.runs {
		labels = append(labels, label)
	}
	slices.Sort(labels)
	for _, label := range labels {
		if a.runs[label] == nil {
			continue
		}
		ra, rb := summarize(a.runs[label]), summarize(b.runs[label])
		fmt.Printf("  %-42s wall %.1fx, CPU %.1fx, peak RSS %.1fx (%.1f -> %.1f MiB; %.0f bytes per added blob)\n", label,
			rb.wall.Seconds()/ra.wall.Seconds(), rb.cpu().Seconds()/ra.cpu().Seconds(), float64(rb.maxRSS)/float64(ra.maxRSS),
			mib(ra.maxRSS), mib(rb.maxRSS), float64(rb.maxRSS-ra.maxRSS)/float64(b.blobs-a.blobs))
	}
}

// ensureTree generates the tree name under dir unless a complete one of
// the same spec is there, and returns its root.
func ensureTree(dir, name string, spec regtree.Spec) (string, error) {
	root := filepath.Join(dir, name)
	marker := root + ".complete"
	want := fmt.Sprintf("%+v\n", spec)
	if b, err := os.ReadFile(marker); err == nil && string(b) == want {
		return root, nil
	}
	fmt.Fprintf(os.Stderr, "generating the %s filesystem tree in %s (once)...\n", name, root)
	start := time.Now()
	os.Remove(marker)
	if err := os.RemoveAll(root); err != nil {
		return "", err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	d, err := filesystem.New(root, 64, nil)
	if err != nil {
		return "", err
	}
	counts, err := regtree.Generate(context.Background(), d, spec, 64)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "generated %d blobs, %d manifests in %s\n", counts.Blobs, counts.Manifests, time.Since(start).Round(time.Second))
	return root, os.WriteFile(marker, []byte(want), 0o644)
}

// warmTree reads every file of the tree, so that every timed run finds
// the same warm page cache, and counts its files and directories.
func warmTree(root string) (files, dirs int64, took time.Duration, err error) {
	start := time.Now()
	var nf, nd atomic.Int64
	g := new(errgroup.Group)
	g.SetLimit(8)
	var mu sync.Mutex
	var walkErr error
	filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			mu.Lock()
			walkErr = err
			mu.Unlock()
			return err
		}
		if e.IsDir() {
			nd.Add(1)
			return nil
		}
		nf.Add(1)
		g.Go(func() error {
			_, err := os.ReadFile(p)
			return err
		})
		return nil
	})
	if err := g.Wait(); err != nil {
		return 0, 0, 0, err
	}
	return nf.Load(), nd.Load(), time.Since(start), walkErr
}

// countSyscalls runs each tool once more under strace -c -f and prints the
// syscalls of each, side by side. strace slows a run several times over,
// so these runs are never timed.
func countSyscalls(o options, root, work, regsweepBin, v28, v3 string) error {
	cache, err := os.MkdirTemp(work, "cache")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cache)
	ts, err := tools(o, root, work, cache, regsweepBin, v28, v3)
	if err != nil {
		return err
	}
	var labels []string
	counts := map[string]map[string]int64{}
	for _, t := range ts {
		if t.kind == "audit" {
			continue
		}
		summary := filepath.Join(work, "strace.txt")
		out, err := os.Create(filepath.Join(work, "stdout"))
		if err != nil {
			return err
		}
		straceArgs := []string{"-f", "-c", "-o", summary}
		if !o.fs.countAll {
			// Only these calls stop the traced threads; the rest run
			// untraced, which makes the counting runs about 4x faster.
			straceArgs = append(straceArgs, "--seccomp-bpf", "-e", "trace="+strings.Join(countedSyscalls, ","))
		}
		cmd := exec.Command("strace", append(append(straceArgs, "--", t.bin), t.args...)...)
		cmd.Env, cmd.Stdout = t.env, out
		var errb strings.Builder
		cmd.Stderr = &errb
		err = cmd.Run()
		out.Close()
		if err != nil {
			return fmt.Errorf("strace %s: %v\n%s", t.label, err, errb.String())
		}
		c, err := parseStraceSummary(summary)
		if err != nil {
			return err
		}
		labels = append(labels, t.label)
		counts[t.label] = c
	}
	fmt.Printf("syscalls (strace -c -f, runs of their own, not timed):\n")
	rows := countedSyscalls
	if o.fs.countAll {
		rows = append(slices.Clone(rows), "fcntl", "futex", "nanosleep", "epoll_pwait", "sched_yield", "mmap")
	}
	fmt.Printf("  %-14s", "")
	for _, l := range labels {
		fmt.Printf(" %12s", shortLabel(l))
	}
	fmt.Println()
	for _, name := range rows {
		if !o.fs.countAll && sumCalls(counts, name) == 0 {
			continue // a call none of them makes
		}
		fmt.Printf("  %-14s", name)
		for _, l := range labels {
			fmt.Printf(" %12d", counts[l][name])
		}
		fmt.Println()
	}
	fsOps := func(c map[string]int64) int64 {
		var n int64
		for name, v := range c {
			if isFSOp(name) {
				n += v
			}
		}
		return n
	}
	fmt.Printf("  %-14s", "fs operations")
	for _, l := range labels {
		fmt.Printf(" %12d", fsOps(counts[l]))
	}
	fmt.Printf("   (opens, stats, directory reads)\n")
	if o.fs.countAll {
		fmt.Printf("  %-14s", "all syscalls")
		for _, l := range labels {
			fmt.Printf(" %12d", counts[l]["total"])
		}
		fmt.Println()
	}
	if o.reference {
		for _, l := range labels[:2] {
			fmt.Printf("  %s: %.2fx the fs operations of v2.8.3, %.2fx those of v3\n", l,
				float64(fsOps(counts[l]))/float64(fsOps(counts[labels[2]])), float64(fsOps(counts[l]))/float64(fsOps(counts[labels[3]])))
		}
	}
	return nil
}

// countedSyscalls are the syscalls a filesystem walk makes: opens, stats,
// directory reads and links, and the reads, seeks and closes of the files.
var countedSyscalls = []string{"open", "openat", "openat2", "stat", "lstat", "fstat", "newfstatat", "statx",
	"getdents", "getdents64", "readlink", "readlinkat", "access", "faccessat", "faccessat2", "read", "pread64", "lseek", "close"}

func sumCalls(counts map[string]map[string]int64, name string) int64 {
	var n int64
	for _, c := range counts {
		n += c[name]
	}
	return n
}

// isFSOp says whether a syscall is a filesystem operation the way a network
// filesystem sees one: an open, a stat or a directory read.
func isFSOp(name string) bool {
	switch name {
	case "open", "openat", "openat2", "stat", "lstat", "fstat", "newfstatat", "statx", "getdents", "getdents64", "access", "faccessat", "faccessat2", "readlink", "readlinkat":
		return true
	}
	return false
}

func shortLabel(l string) string {
	switch {
	case strings.HasPrefix(l, "regsweep gc, cold"):
		return "rs cold"
	case strings.HasPrefix(l, "regsweep gc, warm"):
		return "rs warm"
	case strings.Contains(l, "v2.8.3"):
		return "v2.8.3"
	case strings.Contains(l, "v3"):
		return "v3"
	}
	return l
}

// parseStraceSummary reads strace -c's table: calls by syscall, and the
// total under "total".
func parseStraceSummary(path string) (map[string]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		// % time, seconds, usecs/call, calls, [errors,] syscall.
		if len(f) < 5 || strings.HasPrefix(f[0], "%") || strings.HasPrefix(f[0], "-") {
			continue
		}
		name := f[len(f)-1]
		n, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("strace summary line %q: %w", line, err)
		}
		out[name] = n
	}
	if out["total"] == 0 {
		return nil, fmt.Errorf("strace summary %s: no total", path)
	}
	return out, nil
}

// profileGC runs regsweep's warm gc once more with a CPU profile and prints
// the profile's top entries.
func profileGC(regsweepBin, root, work, profile string) error {
	cache, err := os.MkdirTemp(work, "cache")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cache)
	args := []string{"gc", "--config=", "--fs-root", root, "--format", "json", "--quiet", "--grace", "0s", "--upload-grace", "0s", "--max-delete-fraction", "1", "--cache-dir", cache}
	if _, err := measure(regsweepBin, os.Environ(), args...); err != nil {
		return err
	}
	if _, err := measure(regsweepBin, append(os.Environ(), "REGSWEEP_CPUPROFILE="+profile), args...); err != nil {
		return err
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=30", regsweepBin, profile).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %v\n%s", err, out)
	}
	fmt.Printf("\nCPU profile of regsweep's warm gc (%s):\n%s", profile, out)
	return nil
}

// measureLatency runs every tool on the tree through the simulated network
// filesystem, each on a fresh mount (a cold client cache): first with no
// delay (what FUSE alone costs), then with the delay.
func measureLatency(o options, root, work, regsweepBin, v28, v3 string) error {
	f := o.fs
	mnt := filepath.Join(work, "mnt")
	fmt.Printf("\n-- simulated network filesystem: %s through FUSE, %s added to each %s request (name cache %s), %d round(s) --\n",
		root, f.latency, strings.ReplaceAll(f.latencyOps, ",", "/"), f.latencyTTL, f.latencyRounds)
	var order []string
	runs := map[time.Duration]map[string][]fsRun{0: {}, f.latency: {}}
	for round := range max(f.latencyRounds, 1) {
		for _, delay := range []time.Duration{0, f.latency} {
			cache, err := os.MkdirTemp(work, "cache")
			if err != nil {
				return err
			}
			ts, err := tools(o, mnt, work, cache, regsweepBin, v28, v3)
			if err != nil {
				return err
			}
			for _, t := range ts {
				if t.kind == "audit" {
					continue
				}
				m, err := mountSlow(root, mnt, delay, f.latencyTTL, f.latencyOps)
				if err != nil {
					return err
				}
				r, err := runTool(t, work)
				var slept time.Duration
				r.ops, r.delayed, slept = m.counts()
				if uerr := m.unmount(); err == nil && uerr != nil {
					err = fmt.Errorf("unmounting %s: %w", mnt, uerr)
				}
				if err != nil {
					return err
				}
				if round == 0 && delay == 0 {
					order = append(order, t.label)
				}
				runs[delay][t.label] = append(runs[delay][t.label], r)
				fmt.Printf("  round %d, delay %-6s %-42s %s\n    FUSE requests: %s\n", round+1, delay, t.label, fmtRun(r.result), fmtFuseOps(r.ops))
				if delay > 0 {
					fmt.Printf("    delayed %d requests, %.1f s of delay in all (%.0f us each, asked %s)\n",
						r.delayed, slept.Seconds(), float64(slept.Microseconds())/float64(max(r.delayed, 1)), delay)
				}
			}
			os.RemoveAll(cache)
		}
	}
	for _, delay := range []time.Duration{0, f.latency} {
		fmt.Printf("through FUSE, delay %s, medians (load average now %s):\n", delay, loadAvg())
		for _, label := range order {
			fmt.Printf("  %-42s %s\n", label, fmtRun(summarize(runs[delay][label])))
		}
		if o.reference {
			ref := summarize(runs[delay][order[2]])
			for _, l := range order[:2] {
				fmt.Printf("  v2.8.3 / %s: wall %.2fx; its delayable requests are %.2fx v2.8.3's\n", l,
					ref.wall.Seconds()/summarize(runs[delay][l]).wall.Seconds(), float64(delayable(runs[delay][l][0].ops, f.latencyOps))/float64(delayable(runs[delay][order[2]][0].ops, f.latencyOps)))
			}
		}
	}
	printAgreement(fsScale{runs: runs[f.latency]}, order)
	return nil
}

// delayable counts the requests of the kinds the latency mode delays.
func delayable(ops map[string]int64, delayed string) int64 {
	var n int64
	for _, name := range splitList(delayed) {
		n += ops[name]
	}
	return n
}

// loadAvg is the machine's 1, 5 and 15 minute load average: on a shared
// machine, what else ran beside the measurement.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
