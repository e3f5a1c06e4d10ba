package upload

import (
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rtmrec/rtmrec/internal/testminio"
)

func TestS3MinIO(t *testing.T) {
	const user, pass, bucket = "rtmrec-test", "rtmrec-test-secret", "recordings"
	endpoint := testminio.Start(t, user, pass)
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
		o.DisableLogOutputChecksumValidationSkipped = true
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

	u, _ := testUploader(t, func(c *Config) {
		c.RequestTimeout = time.Minute
		c.S3 = S3Config{Endpoint: endpoint, PathStyle: true, PartSize: 5 << 20}
	})

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
		"small":     {Job{File: small, ContentType: "audio/ogg", URL: "s3://" + bucket + "/a/small.ogg"}, "a/small.ogg", smallSum, 300 << 10},
		"multipart": {Job{File: large, ContentType: "video/webm", URL: "s3://" + bucket + "/b/large.webm"}, "b/large.webm", largeSum, 12<<20 + 123},
		"presigned": {Job{File: presFile, ContentType: "video/webm", URL: presigned.URL}, "presigned/rec.webm", presSum, 2 << 20},
	}
	for name, j := range jobs {
		if out := u.Put(ctx, j.job); !out.OK || out.Size != j.size {
			t.Fatalf("%s failed: %+v", name, out)
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

	// A bucket that does not exist is the store refusing: no retry.
	out := u.Put(ctx, Job{File: small, URL: "s3://no-such-bucket/x"})
	if out.OK || out.Retry || out.Status != 404 || !strings.Contains(out.Reason, "NoSuchBucket") {
		t.Fatalf("missing bucket: %+v", out)
	}
}
