// Command bench measures regsweep on a generated registry in the test
// MinIO: wall time, peak RSS and requests by operation, against the request
// floor. It is a benchmark, not a test: it asserts nothing and prints
// figures. Run it with `make bench`.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/regsweep/regsweep/internal/regtree"
	"github.com/regsweep/regsweep/storage/s3"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// The store the issues name: 100k blobs, 10k manifests, 500 repositories.
var spec = regtree.Spec{Seed: 7, Repositories: 500, ImagesPerRepo: 20, TagsPerRepo: 5, LayersPerImg: 8,
	SharedLayers: 50, OrphanBlobs: 1000, LayerSize: 64, MultiArch: true, Uploads: 20}

func run() error {
	bin := flag.String("regsweep", "bin/regsweep", "regsweep binary")
	bucket := flag.String("bucket", "regsweep-bench-100k", "bucket holding the generated store (generated once, then reused)")
	flag.Parse()
	endpoint, access, secret := os.Getenv("REGSWEEP_TEST_MINIO_ENDPOINT"), os.Getenv("REGSWEEP_TEST_MINIO_ACCESS_KEY"), os.Getenv("REGSWEEP_TEST_MINIO_SECRET_KEY")
	if endpoint == "" {
		return fmt.Errorf("MinIO is not running: run `make testenv-up` (REGSWEEP_TEST_MINIO_ENDPOINT unset)")
	}
	ctx := context.Background()
	if err := ensureStore(ctx, endpoint, access, secret, *bucket); err != nil {
		return err
	}
	env := append(os.Environ(), "REGSWEEP_S3_ACCESS_KEY="+access, "REGSWEEP_S3_SECRET_KEY="+secret)
	args := []string{"--s3-endpoint", "http://" + endpoint, "--s3-bucket", *bucket, "--s3-path-style", "--quiet"}

	base, err := measure(*bin, env, "version")
	if err != nil {
		return err
	}
	inv, err := measure(*bin, env, append([]string{"inventory", "--format", "json"}, args...)...)
	if err != nil {
		return err
	}
	var doc struct {
		Totals struct {
			Repositories, Tags, Manifests, LayerLinks, Blobs, Uploads int
		} `json:"totals"`
		Requests   map[string]int64 `json:"requests"`
		KeysListed int64            `json:"keys_listed"`
	}
	if err := json.Unmarshal(inv.stdout, &doc); err != nil {
		return fmt.Errorf("inventory output: %w", err)
	}
	floorLists := int64(math.Ceil(float64(doc.KeysListed) / 1000))
	fmt.Printf("store: %d repositories, %d tags, %d manifests, %d blobs, %d keys listed\n",
		doc.Totals.Repositories, doc.Totals.Tags, doc.Totals.Manifests, doc.Totals.Blobs, doc.KeysListed)
	fmt.Printf("inventory: wall %s, peak RSS %.1f MiB (baseline %.1f MiB, %.0f bytes/blob above it)\n",
		inv.wall.Round(time.Millisecond), mib(inv.maxRSS), mib(base.maxRSS), float64(inv.maxRSS-base.maxRSS)/float64(max(doc.Totals.Blobs, 1)))
	fmt.Printf("requests: list %d, get %d, head %d, put %d, delete %d\n",
		doc.Requests["list"], doc.Requests["get"], doc.Requests["head"], doc.Requests["put"], doc.Requests["delete"])
	fmt.Printf("floor: %d LISTs (ceil(keys/1000)) + %d GETs (one per tag + %d upload start times)\n",
		floorLists, doc.Totals.Tags+doc.Totals.Uploads, doc.Totals.Uploads)
	fmt.Printf("ratio: LIST %.3fx the floor (target <= 1.05x); GETs %.3fx\n",
		float64(doc.Requests["list"])/float64(floorLists), float64(doc.Requests["get"])/float64(doc.Totals.Tags+doc.Totals.Uploads))
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

type result struct {
	wall   time.Duration
	maxRSS int64
	stdout []byte
}

func measure(bin string, env []string, args ...string) (result, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{wall: time.Since(start), stdout: out.Bytes()}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss * 1024
	}
	if err != nil {
		return r, fmt.Errorf("%s %v: %v\n%s", bin, args, err, errb.String())
	}
	return r, nil
}

func ensureStore(ctx context.Context, endpoint, access, secret, bucket string) error {
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
