package upload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// findMinio looks for the MinIO server: $RTMREC_MINIO, the cache that
// scripts/minio.sh fills, then PATH.
func findMinio(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("RTMREC_MINIO"); p != "" {
		return p
	}
	tools := os.Getenv("RTMREC_TOOLS")
	if tools == "" {
		if home, err := os.UserHomeDir(); err == nil {
			tools = filepath.Join(home, ".cache", "rtmrec-tools")
		}
	}
	if p := filepath.Join(tools, "bin", "minio"); tools != "" && exists(p) {
		return p
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	if os.Getenv("RTMREC_REQUIRE_TOOLS") == "1" {
		t.Fatal("minio not installed: run scripts/minio.sh")
	}
	t.Skip("minio not installed: run scripts/minio.sh")
	return ""
}

// startMinio runs MinIO on a free loopback port with a temp data dir and
// returns its endpoint; it is killed when the test ends.
func startMinio(t *testing.T, user, pass string) string {
	t.Helper()
	bin := findMinio(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	console, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	consoleAddr := console.Addr().String()
	console.Close()

	cmd := exec.Command(bin, "server", "--quiet", "--address", addr, "--console-address", consoleAddr, t.TempDir())
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+user, "MINIO_ROOT_PASSWORD="+pass,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	endpoint := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("minio not ready after 30s:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	http.DefaultClient.CloseIdleConnections()
	return endpoint
}

func TestS3MinIO(t *testing.T) {
	const user, pass, bucket = "rtmrec-test", "rtmrec-test-secret", "recordings"
	endpoint := startMinio(t, user, pass)
	t.Setenv("AWS_ACCESS_KEY_ID", user)
	t.Setenv("AWS_SECRET_ACCESS_KEY", pass)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tr := awsCfg.HTTPClient.(*awshttp.BuildableClient).GetTransport()
	defer tr.CloseIdleConnections()
	awsCfg.HTTPClient = &http.Client{Transport: tr}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
	})
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	presigned, err := s3.NewPresignClient(client).PresignPutObject(ctx,
		&s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("presigned/rec.webm")},
		s3.WithPresignExpires(15*time.Minute))
	if err != nil {
		t.Fatal(err)
	}

	cfg := testConfig(t, t.TempDir())
	cfg.Retention = time.Hour // keep files to compare
	cfg.S3 = S3Config{Endpoint: endpoint, PathStyle: true, PartSize: 5 << 20}
	h := start(t, cfg)

	dir := t.TempDir()
	small, smallSum := writeFile(t, dir, 300<<10)
	large, largeSum := writeFile(t, dir, 12<<20+123) // three parts of 5 MiB
	presFile, presSum := writeFile(t, dir, 2<<20)
	jobs := map[string]struct {
		job  Job
		key  string
		sum  [32]byte
		size int64
	}{
		"small":     {Job{ID: "small", File: small, ContentType: "audio/ogg", URL: "s3://" + bucket + "/a/small.ogg"}, "a/small.ogg", smallSum, 300 << 10},
		"multipart": {Job{ID: "multipart", File: large, ContentType: "video/webm", URL: "s3://" + bucket + "/b/large.webm"}, "b/large.webm", largeSum, 12<<20 + 123},
		"presigned": {Job{ID: "presigned", File: presFile, ContentType: "video/webm", URL: presigned.URL}, "presigned/rec.webm", presSum, 2 << 20},
	}
	for _, j := range jobs {
		if err := h.q.Enqueue(j.job); err != nil {
			t.Fatal(err)
		}
	}
	for range jobs {
		res := h.result(t)
		if !res.OK {
			t.Fatalf("%s failed: %+v", res.Job.ID, res)
		}
	}
	for name, j := range jobs {
		obj, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(j.key)})
		if err != nil {
			t.Fatalf("%s: get: %v", name, err)
		}
		data, err := io.ReadAll(obj.Body)
		obj.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(data)) != j.size || sha256.Sum256(data) != j.sum {
			t.Errorf("%s: object of %d bytes differs from the file", name, len(data))
		}
		if name != "presigned" && aws.ToString(obj.ContentType) != j.job.ContentType {
			t.Errorf("%s: content type %q", name, aws.ToString(obj.ContentType))
		}
	}

	// A bucket that does not exist is the store refusing: fails at once.
	if err := h.q.Enqueue(Job{ID: "nobucket", File: small, URL: "s3://no-such-bucket/x"}); err != nil {
		t.Fatal(err)
	}
	if res := h.result(t); res.OK || res.Attempts != 1 || res.Status != 404 {
		t.Fatalf("missing bucket: %+v", res)
	}
}
