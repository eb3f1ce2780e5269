package testenv

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// RegionalMinIO starts a MinIO of the test's own whose site region is
// region (the shared one has none), with the bucket "regional", and stops
// it when the test ends: for what only a store with a region produces.
func RegionalMinIO(tb testing.TB, region string) MinIOServer {
	tb.Helper()
	bin := MinIOBinary(tb)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := MinIOServer{Endpoint: addr, AccessKey: "regionadmin", SecretKey: "region-secret-Kq3"}
	cmd := exec.Command(bin, "server", tb.TempDir(), "--address", addr, "--console-address", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+s.AccessKey, "MINIO_ROOT_PASSWORD="+s.SecretKey, "MINIO_SITE_REGION="+region, "MINIO_BROWSER=off")
	cmd.SysProcAttr = childProcAttr()
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	client, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Region: region})
	if err != nil {
		tb.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = client.MakeBucket(ctx, "regional", minio.MakeBucketOptions{Region: region})
		cancel()
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			tb.Fatalf("MinIO in region %s did not start: %v\n%s", region, err, log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
