// Command bench measures regsweep on generated registries in the test
// MinIO and on the filesystem, against distribution's own garbage-collect
// on the same storage: wall time, CPU, peak RSS, requests by operation and
// syscall counts. It is a benchmark, not a test: it asserts nothing and prints
// figures. Run it with `make bench`.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"

	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/storage/s3"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// The store the issues name: 100k blobs, 10k manifests, 500 repositories
// (101,150 blobs: 10,100 manifests, 10,000 configs, 80,000 layers, 50
// shared base layers and 1,000 orphans).
var spec = regtree.Spec{Seed: 7, Repositories: 500, ImagesPerRepo: 20, TagsPerRepo: 5, LayersPerImg: 9,
	SharedLayers: 50, OrphanBlobs: 1000, LayerSize: 64, MultiArch: true, Uploads: 20}

// tenthSpec is the same registry at a tenth of the size (10,115 blobs,
// 50 repositories). Peak RSS on both gives the memory each blob adds, with
// every fixed cost of a real run (connections, worker pools, the code of
// every phase) on both sides of the difference.
var tenthSpec = regtree.Spec{Seed: 7, Repositories: 50, ImagesPerRepo: 20, TagsPerRepo: 5, LayersPerImg: 9,
	SharedLayers: 5, OrphanBlobs: 100, LayerSize: 64, MultiArch: true, Uploads: 2}

// options are the bench's flags.
type options struct {
	bin, bucket, tenthBucket string
	reference                bool
	rounds                   int
	fs                       fsOptions
}

func run() error {
	var o options
	flag.StringVar(&o.bin, "regsweep", "bin/regsweep", "regsweep binary")
	flag.StringVar(&o.bucket, "bucket", "regsweep-bench-101k", "bucket holding the generated store (generated once, then reused)")
	flag.StringVar(&o.tenthBucket, "tenth-bucket", "regsweep-bench-10k", "bucket holding the store at a tenth of the size (generated once, then reused)")
	flag.BoolVar(&o.reference, "reference", true, "also run distribution's garbage-collect dry runs on the same store (v3 on S3; v2.8.3 and v3 on the filesystem)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of every timed run: ratios use the median wall time, memory the highest peak")
	parts := flag.String("parts", "s3,fs", "what to measure, comma-separated: s3 (MinIO), fs (generated trees on the local filesystem)")
	o.fs.register()
	flag.Parse()
	for _, part := range strings.Split(*parts, ",") {
		var err error
		switch strings.TrimSpace(part) {
		case "s3":
			err = runS3(o)
		case "fs":
			err = runFS(o)
		default:
			err = fmt.Errorf("-parts: unknown part %q (s3, fs)", part)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// runS3 measures inventory and gc on the generated store in MinIO.
func runS3(o options) error {
	fmt.Printf("== S3 (MinIO) ==\n")
	endpoint, access, secret := os.Getenv("REGSWEEP_TEST_MINIO_ENDPOINT"), os.Getenv("REGSWEEP_TEST_MINIO_ACCESS_KEY"), os.Getenv("REGSWEEP_TEST_MINIO_SECRET_KEY")
	if endpoint == "" {
		return fmt.Errorf("MinIO is not running: run `make testenv-up` (REGSWEEP_TEST_MINIO_ENDPOINT unset)")
	}
	ctx := context.Background()
	if err := ensureStore(ctx, endpoint, access, secret, o.bucket, spec); err != nil {
		return err
	}
	if err := ensureStore(ctx, endpoint, access, secret, o.tenthBucket, tenthSpec); err != nil {
		return err
	}
	if err := ensureBucket(ctx, endpoint, access, secret, emptyBucket); err != nil {
		return err
	}
	// Both collectors talk to MinIO directly, and MinIO counts their
	// requests: a counting proxy in between costs CPU per request, which
	// slows the sequential reference by far more than a parallel client.
	server := &requestCounter{url: "http://" + endpoint + "/minio/v2/metrics/node"}
	env := append(os.Environ(), "REGSWEEP_S3_ACCESS_KEY="+access, "REGSWEEP_S3_SECRET_KEY="+secret)
	args := []string{"--s3-endpoint", "http://" + endpoint, "--s3-bucket", o.bucket, "--s3-path-style", "--quiet"}

	base, err := measure(o.bin, env, "version")
	if err != nil {
		return err
	}
	// The same gc on an empty store: the process's fixed cost for the job
	// (the code it pages in, its pools), so what is above it is per blob.
	emptyArgs := []string{"gc", "--format", "json", "--s3-endpoint", "http://" + endpoint, "--s3-bucket", emptyBucket, "--s3-path-style", "--quiet"}
	emptyGC, err := measure(o.bin, env, emptyArgs...)
	if err != nil {
		return err
	}
	inv, invReqs, err := server.measure(o.bin, env, append([]string{"inventory", "--format", "json"}, args...)...)
	if err != nil {
		return err
	}
	var doc struct {
		Totals struct {
			Repositories int `json:"repositories"`
			Tags         int `json:"tags"`
			Manifests    int `json:"manifests"`
			LayerLinks   int `json:"layer_links"`
			Blobs        int `json:"blobs"`
			Uploads      int `json:"uploads"`
		} `json:"totals"`
		Requests   map[string]int64 `json:"requests"`
		KeysListed int64            `json:"keys_listed"`
	}
	if err := json.Unmarshal(inv.stdout, &doc); err != nil {
		return fmt.Errorf("inventory output: %w", err)
	}
	floorLists := int64(math.Ceil(float64(doc.KeysListed) / 1000))
	blobs := max(doc.Totals.Blobs, 1)
	fmt.Printf("store: %d repositories, %d tags, %d manifests, %d layer links, %d blobs, %d keys listed\n",
		doc.Totals.Repositories, doc.Totals.Tags, doc.Totals.Manifests, doc.Totals.LayerLinks, doc.Totals.Blobs, doc.KeysListed)
	fmt.Printf("\ninventory: wall %s, peak RSS %.1f MiB (baseline %.1f MiB, %.0f bytes/blob above it)\n",
		inv.wall.Round(time.Millisecond), mib(inv.maxRSS), mib(base.maxRSS), float64(inv.maxRSS-base.maxRSS)/float64(blobs))
	fmt.Printf("  requests (its own count): %s\n  requests (at the server):  %s\n", fmtReqs(doc.Requests), fmtReqs(invReqs))
	fmt.Printf("  floor: %d LISTs (ceil(keys/1000)) + %d GETs (one per tag and upload start time)\n", floorLists, doc.Totals.Tags+doc.Totals.Uploads)
	fmt.Printf("  ratio: LIST %.3fx the floor (target <= 1.05x); GET %.3fx\n",
		float64(doc.Requests["list"])/float64(floorLists), float64(doc.Requests["get"])/float64(doc.Totals.Tags+doc.Totals.Uploads))

	// Grace 0: the store was generated minutes ago, and the dry run should
	// plan its garbage as a real collection would.
	gcArgs := []string{"gc", "--format", "json", "--max-delete-fraction", "1", "--grace", "0s", "--upload-grace", "0s"}
	// Wall times on a machine shared with the server vary by 10-20% from
	// run to run: several rounds, each cold then warm on a cache of its own.
	var walls [2][]time.Duration
	var gcRuns [2]result // the highest peak RSS of the rounds; requests and reads of the first
	var gcReqs [2]map[string]int64
	var manifestReads [2]int64
	for round := range max(o.rounds, 1) {
		cache, err := os.MkdirTemp("", "regsweep-bench-cache")
		if err != nil {
			return err
		}
		roundArgs := append(append(slices.Clone(gcArgs), "--cache-dir", cache), args...)
		for i := range gcRuns {
			r, reqs, err := server.measure(o.bin, env, roundArgs...)
			if err != nil {
				os.RemoveAll(cache)
				return err
			}
			walls[i] = append(walls[i], r.wall)
			if round == 0 {
				gcRuns[i], gcReqs[i] = r, reqs
				var g struct {
					ManifestReads int64 `json:"manifest_reads"`
					Plan          struct {
						Blobs     int   `json:"blobs"`
						BlobBytes int64 `json:"blob_bytes"`
					} `json:"plan"`
				}
				json.Unmarshal(r.stdout, &g)
				manifestReads[i] = g.ManifestReads
				if i == 0 {
					fmt.Printf("\ngc --dry-run: plans %d blobs (%d bytes)\n", g.Plan.Blobs, g.Plan.BlobBytes)
				}
			}
			gcRuns[i].maxRSS = max(gcRuns[i].maxRSS, r.maxRSS)
		}
		os.RemoveAll(cache)
	}
	for i := range walls {
		slices.Sort(walls[i])
		gcRuns[i].wall = walls[i][len(walls[i])/2]
	}
	gcFloor := floorLists + int64(doc.Totals.Tags+doc.Totals.Uploads) + int64(doc.Totals.Manifests)
	for i, label := range []string{"cold cache", "warm cache"} {
		fmt.Printf("gc dry run, %s: wall %s (median of %s), peak RSS %.1f MiB (%.0f bytes/blob above baseline; %.0f above an empty store's gc, %.1f MiB), manifest GETs %d\n  requests: %s (floor cold: %d = LISTs + tag/upload GETs + one GET per manifest; ratio %.3fx)\n",
			label, gcRuns[i].wall.Round(time.Millisecond), fmtWalls(walls[i]), mib(gcRuns[i].maxRSS), float64(gcRuns[i].maxRSS-base.maxRSS)/float64(blobs),
			float64(gcRuns[i].maxRSS-emptyGC.maxRSS)/float64(blobs), mib(emptyGC.maxRSS),
			manifestReads[i], fmtReqs(gcReqs[i]), gcFloor, float64(total(gcReqs[i]))/float64(gcFloor))
	}
	if err := perBlobMemory(o.bin, env, endpoint, o.tenthBucket, int64(blobs), gcRuns); err != nil {
		return err
	}
	if !o.reference {
		return nil
	}
	regBin := os.Getenv("REGSWEEP_TEST_REGISTRY_V3")
	if regBin == "" {
		return fmt.Errorf("registry v3 is not installed: run `make testenv-up` (REGSWEEP_TEST_REGISTRY_V3 unset)")
	}
	cfg, err := os.CreateTemp("", "regsweep-bench-registry-*.yml")
	if err != nil {
		return err
	}
	defer os.Remove(cfg.Name())
	fmt.Fprintf(cfg, "version: 0.1\nlog:\n  level: error\nstorage:\n  s3:\n    region: us-east-1\n    bucket: %s\n    accesskey: %s\n    secretkey: %s\n    regionendpoint: http://%s\n    forcepathstyle: true\n    secure: false\n    v4auth: true\n",
		o.bucket, access, secret, endpoint)
	cfg.Close()
	var regEnv []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_CA_BUNDLE=") {
			regEnv = append(regEnv, kv)
		}
	}
	fmt.Printf("\nregistry garbage-collect --dry-run (distribution v3), sequential; this takes a while...\n")
	ref, refReqs, err := server.measure(regBin, regEnv, "garbage-collect", "--dry-run", cfg.Name())
	if err != nil {
		return err
	}
	fmt.Printf("reference: wall %s, peak RSS %.1f MiB\n  requests: %s\n", ref.wall.Round(time.Millisecond), mib(ref.maxRSS), fmtReqs(refReqs))
	fmt.Printf("\nregsweep gc dry run vs reference: %.1fx faster cold, %.1fx warm (medians; every round: cold %s, warm %s); %.1fx fewer requests cold\n",
		ref.wall.Seconds()/gcRuns[0].wall.Seconds(), ref.wall.Seconds()/gcRuns[1].wall.Seconds(),
		fmtRatios(ref.wall, walls[0]), fmtRatios(ref.wall, walls[1]), float64(total(refReqs))/float64(total(gcReqs[0])))
	// What listing every key costs on this server, with nothing else: no
	// collector that proves each key (sizes, mtimes, link ETags) can
	// finish sooner, so it bounds the ratio any collector can reach here.
	for _, conc := range []int{2, 8, 32} {
		wall, keys, err := listEverything(ctx, endpoint, access, secret, o.bucket, conc)
		if err != nil {
			return err
		}
		fmt.Printf("listing every key alone (%d keys, %d listings at once, no other work): %s = %.1fx the reference at best\n",
			keys, conc, wall.Round(time.Millisecond), ref.wall.Seconds()/wall.Seconds())
	}
	return nil
}

// listEverything lists every key of bucket in parallel shards, as a
// collector must, and does nothing with them.
func listEverything(ctx context.Context, endpoint, access, secret, bucket string, concurrency int) (time.Duration, int64, error) {
	c, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(access, secret, "")})
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	var shards []string
	const hexDigits = "0123456789abcdef"
	for _, a := range hexDigits {
		for _, b := range hexDigits {
			shards = append(shards, "docker/registry/v2/blobs/sha256/"+string(a)+string(b))
		}
	}
	shards = append(shards, "docker/registry/v2/blobs/sha384/", "docker/registry/v2/blobs/sha512/")
	var keys atomic.Int64
	// The repository tree is split as regsweep splits it: by the names
	// one level down, and one more while they are fewer than the listings.
	dirs := []string{"docker/registry/v2/repositories/"}
	for depth := 0; depth < 2 && len(dirs) < concurrency; depth++ {
		var below []string
		for _, dir := range dirs {
			for o := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: dir}) {
				if o.Err != nil {
					return 0, 0, o.Err
				}
				if strings.HasSuffix(o.Key, "/") {
					below = append(below, o.Key)
				} else {
					keys.Add(1)
				}
			}
		}
		dirs = below
	}
	shards = append(shards, dirs...)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for _, shard := range shards {
		g.Go(func() error {
			for o := range c.ListObjects(gctx, bucket, minio.ListObjectsOptions{Prefix: shard, Recursive: true}) {
				if o.Err != nil {
					return o.Err
				}
				keys.Add(1)
			}
			return nil
		})
	}
	err = g.Wait()
	return time.Since(start), keys.Load(), err
}

func fmtRatios(ref time.Duration, walls []time.Duration) string {
	var parts []string
	for _, w := range walls {
		parts = append(parts, fmt.Sprintf("%.1fx", ref.Seconds()/w.Seconds()))
	}
	return strings.Join(parts, " ")
}

func fmtWalls(walls []time.Duration) string {
	var parts []string
	for _, w := range walls {
		parts = append(parts, w.Round(10*time.Millisecond).String())
	}
	return strings.Join(parts, ", ")
}

func total(m map[string]int64) int64 {
	var t int64
	for _, v := range m {
		t += v
	}
	return t
}

func fmtReqs(m map[string]int64) string {
	return fmt.Sprintf("%d (list %d, get %d, head %d, put %d, delete %d)", total(m), m["list"], m["get"], m["head"], m["put"], m["delete"])
}

// requestCounter reads MinIO's own request counters (its node metrics,
// public in the test environment) before and after a run. Nothing else
// uses the bench's MinIO while it runs, so the difference is the run's.
type requestCounter struct{ url string }

func (c *requestCounter) measure(bin string, env []string, args ...string) (result, map[string]int64, error) {
	before, err := c.read()
	if err != nil {
		return result{}, nil, err
	}
	r, err := measure(bin, env, args...)
	if err != nil {
		return r, nil, err
	}
	after, err := c.read()
	if err != nil {
		return r, nil, err
	}
	for op := range after {
		after[op] -= before[op]
	}
	return r, after, nil
}

// read returns MinIO's S3 request totals so far, by operation class.
func (c *requestCounter) read() (map[string]int64, error) {
	resp, err := http.Get(c.url)
	if err != nil {
		return nil, fmt.Errorf("MinIO metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("MinIO metrics: %s (the bench counts requests at MinIO: start it with `make testenv-up`, which makes its metrics public)", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("MinIO metrics: %w", err)
	}
	out := map[string]int64{}
	fam := families["minio_s3_requests_total"]
	if fam == nil {
		return out, nil // no S3 request yet since MinIO started
	}
	for _, m := range fam.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "api" {
				out[operation(l.GetValue())] += int64(m.GetCounter().GetValue())
			}
		}
	}
	return out, nil
}

// operation classes MinIO's API names (listobjectsv2, getobject,
// deletemultipleobjects, ...) the way the collectors' own counts do.
func operation(api string) string {
	for _, op := range []string{"list", "get", "head", "delete"} {
		if strings.HasPrefix(api, op) {
			return op
		}
	}
	return "put"
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

type result struct {
	wall      time.Duration
	user, sys time.Duration // the child's CPU, from wait4's rusage
	maxRSS    int64
	diskRead  int64 // bytes read from disk (rusage's blocks in): a tree the page cache does not hold
	stdout    []byte
}

func (r result) cpu() time.Duration { return r.user + r.sys }

// measure runs bin and reports its wall time, CPU and peak RSS. The RSS
// comes from GNU time when installed: the rusage of a child started by a
// large process (this one, after generating a store) counts the parent's
// pages. The CPU is wait4's rusage of the child, which holds GNU time's
// waited-for child, the measured command.
func measure(bin string, env []string, args ...string) (result, error) {
	var out bytes.Buffer
	r, err := measureTo(&out, bin, env, args...)
	r.stdout = out.Bytes()
	return r, err
}

// measureTo is measure with the command's standard output sent to stdout
// (a file, for the references' long listings).
func measureTo(stdout io.Writer, bin string, env []string, args ...string) (result, error) {
	rssFile := ""
	cmd := exec.Command(bin, args...)
	if gnuTime, err := exec.LookPath("/usr/bin/time"); err == nil {
		f, ferr := os.CreateTemp("", "regsweep-bench-rss")
		if ferr == nil {
			f.Close()
			rssFile = f.Name()
			defer os.Remove(rssFile)
			cmd = exec.Command(gnuTime, append([]string{"-o", rssFile, "-f", "%M", bin}, args...)...)
		}
	}
	cmd.Env = env
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = stdout, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{wall: time.Since(start)}
	if cmd.ProcessState == nil {
		return r, fmt.Errorf("%s %v: %v", bin, args, err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss * 1024
		r.user = time.Duration(ru.Utime.Nano())
		r.sys = time.Duration(ru.Stime.Nano())
		r.diskRead = ru.Inblock * 512
	}
	if rssFile != "" {
		if b, err := os.ReadFile(rssFile); err == nil {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &kb); err == nil && kb > 0 {
				r.maxRSS = kb * 1024
			}
		}
	}
	if err != nil {
		return r, fmt.Errorf("%s %v: %v\n%s", bin, args, err, errb.String())
	}
	return r, nil
}

// perBlobMemory runs the same two gc dry runs (cold, then warm) on the
// tenth-scale store and prints what each blob of the full store added to
// peak RSS: the difference of the two peaks over the difference in blobs.
func perBlobMemory(bin string, env []string, endpoint, bucket string, blobs int64, full [2]result) error {
	cache, err := os.MkdirTemp("", "regsweep-bench-cache")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cache)
	args := []string{"gc", "--format", "json", "--cache-dir", cache, "--max-delete-fraction", "1", "--grace", "0s", "--upload-grace", "0s",
		"--s3-endpoint", "http://" + endpoint, "--s3-bucket", bucket, "--s3-path-style", "--quiet"}
	for i, label := range []string{"cold cache", "warm cache"} {
		r, err := measure(bin, env, args...)
		if err != nil {
			return err
		}
		var g struct {
			Totals struct {
				Blobs int64 `json:"blobs"`
			} `json:"totals"`
		}
		if err := json.Unmarshal(r.stdout, &g); err != nil || g.Totals.Blobs <= 0 || g.Totals.Blobs >= blobs {
			return fmt.Errorf("gc of the tenth-scale store: no blob count in its output (%v)", err)
		}
		fmt.Printf("  per blob, %s: the tenth-scale store (%d blobs) peaks at %.1f MiB: %.0f bytes per added blob\n",
			label, g.Totals.Blobs, mib(r.maxRSS), float64(full[i].maxRSS-r.maxRSS)/float64(blobs-g.Totals.Blobs))
	}
	return nil
}

// emptyBucket holds no registry: the gc run on it is the RSS baseline.
const emptyBucket = "regsweep-bench-empty"

func ensureBucket(ctx context.Context, endpoint, access, secret, bucket string) error {
	c, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(access, secret, "")})
	if err != nil {
		return err
	}
	if ok, err := c.BucketExists(ctx, bucket); err != nil || ok {
		return err
	}
	return c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{})
}

func ensureStore(ctx context.Context, endpoint, access, secret, bucket string, spec regtree.Spec) error {
	c, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(access, secret, "")})
	if err != nil {
		return err
	}
	const marker = "regsweep-bench/complete"
	if ok, _ := c.BucketExists(ctx, bucket); ok {
		if _, err := c.StatObject(ctx, bucket, marker, minio.StatObjectOptions{}); err == nil {
			return nil
		}
	} else if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "generating the benchmark store in bucket %s (once)...\n", bucket)
	start := time.Now()
	d, err := s3.New(ctx, s3.Config{Endpoint: endpoint, Region: "us-east-1", Bucket: bucket, AccessKey: access, SecretKey: secret, ForcePathStyle: true, V4Auth: true, Concurrency: 64}, nil)
	if err != nil {
		return err
	}
	counts, err := regtree.Generate(ctx, d, spec, 64)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "generated %d blobs, %d manifests in %s\n", counts.Blobs, counts.Manifests, time.Since(start).Round(time.Second))
	_, err = c.PutObject(ctx, bucket, marker, bytes.NewReader([]byte("ok")), 2, minio.PutObjectOptions{})
	return err
}
