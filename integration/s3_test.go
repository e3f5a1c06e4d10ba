package integration

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/internal/testminio"
	"github.com/rtmrec/rtmrec/rtm"
)

// TestRecordingToS3 records through the real binary into a real
// S3-compatible store, once with s3://bucket/key and the server's own
// credentials, once with a pre-signed PUT URL made by aws-sdk-go-v2.
func TestRecordingToS3(t *testing.T) {
	const bucket = "recordings"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	endpoint, client := startS3(ctx, t, bucket)
	presigned, err := s3.NewPresignClient(client).PresignPutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("presigned.ogg")}, s3.WithPresignExpires(time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	srv := runRTMRec(t, t.TempDir(), "-allow-private-urls", "-s3-endpoint", endpoint, "-s3-path-style", "-s3-region", "us-east-1",
		"-s3-allow", bucket+"/calls/")
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

// TestS3AllowList gives s3:// URLs inside and outside -s3-allow and checks
// through a counting proxy in front of a real MinIO that a refused URL
// gets invalid_url without a single request reaching the store, while one
// inside the tenant's prefix is uploaded.
func TestS3AllowList(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	endpoint, client := startS3(ctx, t, "recordings", "other")
	// rtmrec reaches MinIO only through this proxy, which counts requests.
	// It keeps the Host header, which the requests' signatures cover.
	target, _ := url.Parse(endpoint)
	var requests atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(target)
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		proxy.ServeHTTP(w, r)
	}))
	defer counting.Close()

	acme := bearer(token(t, auth.Claims{Subject: "agent@acme", Role: auth.RoleClient, Tenant: "acme"}))
	srv := runRTMRec(t, t.TempDir(), "-auth-hs256-secret", jwtSecret, "-allow-private-urls",
		"-s3-endpoint", counting.URL, "-s3-path-style", "-s3-region", "us-east-1",
		"-s3-allow", "recordings/tenants/{tenant}/")
	c := startCall(t, srv.wsURL(), "s3-allow", "", acme, testclient.Tone)

	refused := []struct{ name, bucket, key string }{
		{"another tenant's prefix", "recordings", "tenants/globex/call.ogg"},
		{"outside any prefix", "recordings", "call.ogg"},
		{"another bucket", "other", "tenants/acme/call.ogg"},
		{"climbing out of the prefix", "recordings", "tenants/acme/../globex/call.ogg"},
		{"a prefix sharing the tenant's letters", "recordings", "tenants/acme-evil/call.ogg"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			c.send(rtm.TypeRecordingStart, rtm.RecordingStart{UploadURL: "s3://" + tt.bucket + "/" + tt.key})
			e := testclient.Data[rtm.ErrorData](c.wait(testclient.IsError(rtm.CodeInvalidURL)))
			if !strings.Contains(e.Message, "outside the s3 buckets and prefixes") {
				t.Errorf("message %q", e.Message)
			}
		})
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("%d requests reached the S3 store for refused URLs", n)
	}
	for _, tt := range refused {
		if _, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(tt.bucket), Key: aws.String(tt.key)}); err == nil {
			t.Errorf("s3://%s/%s exists", tt.bucket, tt.key)
		}
	}
	for _, m := range c.c.Messages() {
		if m.Type == rtm.TypeRecordingState {
			t.Fatalf("a refused URL started a recording: %s", m.Data)
		}
	}

	c.record("s3://recordings/tenants/acme/call.ogg", "")
	time.Sleep(time.Second)
	c.send(rtm.TypeRecordingStop, nil)
	stopped := testclient.Data[rtm.RecordingStateData](c.wait(testclient.IsRecording(c.id, rtm.RecordingStopped)))
	head, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("recordings"), Key: aws.String("tenants/acme/call.ogg")})
	if err != nil {
		t.Fatalf("the allowed upload is not in MinIO: %v", err)
	}
	if *head.ContentLength != *stopped.SizeBytes {
		t.Fatalf("object has %d bytes, STOPPED said %d", *head.ContentLength, *stopped.SizeBytes)
	}
	if requests.Load() == 0 {
		t.Fatal("the allowed upload did not go through the counting proxy")
	}

	// Without -s3-allow, s3:// is refused outright.
	open := runRTMRec(t, t.TempDir(), "-allow-private-urls", "-s3-endpoint", counting.URL, "-s3-path-style")
	o := startCall(t, open.wsURL(), "no-allow", "", nil, testclient.Tone)
	o.send(rtm.TypeRecordingStart, rtm.RecordingStart{UploadURL: "s3://recordings/call.ogg"})
	if e := testclient.Data[rtm.ErrorData](o.wait(testclient.IsError(rtm.CodeInvalidURL))); !strings.Contains(e.Message, "not enabled") {
		t.Errorf("message %q", e.Message)
	}
}

// startS3 runs MinIO with the given buckets and returns its endpoint and a
// client for it. The server's AWS credentials, from the environment, are
// MinIO's.
func startS3(ctx context.Context, t *testing.T, buckets ...string) (string, *s3.Client) {
	t.Helper()
	const user, pass = "rtmrec-test", "rtmrec-test-secret"
	endpoint := testminio.Start(t, user, pass)
	t.Setenv("AWS_ACCESS_KEY_ID", user)
	t.Setenv("AWS_SECRET_ACCESS_KEY", pass)
	t.Setenv("AWS_REGION", "us-east-1")
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
	})
	for _, b := range buckets {
		if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
	return endpoint, client
}
