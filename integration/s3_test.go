package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/internal/testminio"
	"github.com/rtmrec/rtmrec/rtm"
)

// TestRecordingToS3 records through the real binary into a real
// S3-compatible store, once with s3://bucket/key and the server's own
// credentials, once with a pre-signed PUT URL made by aws-sdk-go-v2.
func TestRecordingToS3(t *testing.T) {
	const user, pass, bucket = "rtmrec-test", "rtmrec-test-secret", "recordings"
	endpoint := testminio.Start(t, user, pass)
	t.Setenv("AWS_ACCESS_KEY_ID", user)
	t.Setenv("AWS_SECRET_ACCESS_KEY", pass)
	t.Setenv("AWS_REGION", "us-east-1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
	})
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	presigned, err := s3.NewPresignClient(client).PresignPutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("presigned.ogg")}, s3.WithPresignExpires(time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	srv := runRTMRec(t, t.TempDir(), "-allow-private-urls", "-s3-endpoint", endpoint, "-s3-path-style", "-s3-region", "us-east-1")
	for _, tt := range []struct{ name, url, key string }{
		{"s3 url", "s3://" + bucket + "/calls/s3.ogg", "calls/s3.ogg"},
		{"pre-signed PUT", presigned.URL, "presigned.ogg"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := startCall(t, srv.wsURL(), "s3-"+filepath.Base(tt.key), "", nil, testclient.Tone)
			c.record(tt.url, "")
			time.Sleep(2 * time.Second)
			c.send(rtm.TypeRecordingStop, nil)
			stopped := testclient.Data[rtm.RecordingStateData](c.wait(testclient.IsRecording(c.id, rtm.RecordingStopped)))
			obj, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(tt.key)})
			if err != nil {
				t.Fatal(err)
			}
			defer obj.Body.Close()
			file := filepath.Join(t.TempDir(), "got.ogg")
			f, _ := os.Create(file)
			n, err := f.ReadFrom(obj.Body)
			f.Close()
			if err != nil || n != *stopped.SizeBytes {
				t.Fatalf("object has %d bytes (%v), STOPPED said %d", n, err, *stopped.SizeBytes)
			}
			if p := ffprobe(t, file); p.codecs() != "audio/opus" || p.duration() < 1.7 {
				t.Fatalf("object: %s, %.2f s", p.codecs(), p.duration())
			}
		})
	}
	if strings.Contains(srv.log(), "X-Amz-Signature=") {
		t.Fatal("the pre-signed URL's signature appears in the server log")
	}
}
