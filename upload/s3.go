package upload

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rtmrec/rtmrec/internal/netguard"
)

// S3Config configures uploads to s3://bucket/key URLs. Credentials come
// from the aws-sdk-go-v2 default chain (environment, shared files, web
// identity, instance role).
type S3Config struct {
	// Endpoint overrides the S3 endpoint, e.g. http://minio:9000 for an
	// S3-compatible store. It is operator configuration and trusted, so it
	// is not subject to the address guard (the bucket comes from the client,
	// the endpoint does not).
	Endpoint string
	// Region; empty takes the SDK's default chain, then us-east-1.
	Region string
	// PathStyle addresses buckets as endpoint/bucket/key instead of
	// bucket.endpoint/key; most S3-compatible stores need it.
	PathStyle bool
	// PartSize is the multipart part size; files larger than it go up in
	// parts. Default and minimum 5 MiB (the S3 minimum).
	PartSize int64
	// Concurrency is the number of parts uploaded at once per file; default 4.
	Concurrency int
}

// s3Client builds the SDK client on first use (loading credentials then,
// not at start-up, so a server without S3 jobs needs no AWS setup) and
// keeps it for the queue's lifetime.
type s3Client struct {
	cfg S3Config

	mu sync.Mutex
	up *manager.Uploader
	tr *http.Transport
}

func (c *s3Client) uploader(ctx context.Context, timeout time.Duration) (*manager.Uploader, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up != nil {
		return c.up, nil
	}
	var opts []func(*config.LoadOptions) error
	if c.cfg.Region != "" {
		opts = append(opts, config.WithRegion(c.cfg.Region))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS config: %w", err)
	}
	// The SDK's client carries settings from the environment (e.g. the CA
	// bundle of AWS_CA_BUNDLE) in its transport; take that transport into a
	// client of our own so Run can close its idle connections.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if bc, ok := awsCfg.HTTPClient.(*awshttp.BuildableClient); ok {
		tr = bc.GetTransport()
	}
	awsCfg.HTTPClient = &http.Client{
		Transport: tr,
		// Per HTTP request, i.e. per part for multipart uploads.
		Timeout: timeout,
		// As the SDK's own client: S3 answers redirects with errors to act on.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if c.cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.cfg.Endpoint)
		}
		o.UsePathStyle = c.cfg.PathStyle
		// The SDK prints this notice straight to stderr, outside our
		// structured log; it says nothing an operator can act on.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	c.up = manager.NewUploader(client, func(u *manager.Uploader) {
		u.PartSize = max(c.cfg.PartSize, manager.MinUploadPartSize)
		u.Concurrency = c.cfg.Concurrency
		if u.Concurrency <= 0 {
			u.Concurrency = 4
		}
	})
	c.tr = tr
	return c.up, nil
}

func (c *s3Client) closeIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tr != nil {
		c.tr.CloseIdleConnections()
	}
}

// putS3 uploads the job's file to s3://bucket/key, in parts when it is
// larger than PartSize. An *os.File is an io.ReaderAt, so the uploader
// reads parts straight from disk instead of buffering them.
func (u *Uploader) putS3(ctx context.Context, job Job) Outcome {
	pu, err := url.Parse(job.URL)
	if err != nil || pu.Host == "" || strings.Trim(pu.Path, "/") == "" {
		return Outcome{Reason: "malformed s3 URL, want s3://bucket/key"}
	}
	bucket, key := pu.Host, strings.TrimPrefix(pu.Path, "/")
	up, err := u.s3.uploader(ctx, u.cfg.RequestTimeout)
	if err != nil {
		// Missing configuration may be fixed by the operator; retry.
		u.log.Error("s3: cannot load the AWS configuration", "error", err)
		return Outcome{Retry: true, Reason: "the server's S3 configuration is not usable"}
	}
	f, err := os.Open(job.File)
	if err != nil {
		return fileProblem(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileProblem(err)
	}
	in := &s3.PutObjectInput{
		Bucket:        aws.String(bucket),
		Key:           aws.String(key),
		Body:          f,
		ContentLength: aws.Int64(fi.Size()),
	}
	if job.ContentType != "" {
		in.ContentType = aws.String(job.ContentType)
	}
	if _, err := up.Upload(ctx, in); err != nil {
		return classifyS3(err)
	}
	u.m.bytes.Add(float64(fi.Size()))
	return Outcome{OK: true, Status: http.StatusOK, Size: fi.Size()}
}

// classifyS3 applies the HTTP rules to an SDK error: 4xx other than 408
// and 429 is the store refusing (no such bucket, access denied), anything
// else (5xx, network, credentials not yet available) may pass on retry.
// The SDK has already retried throttling and 5xx a few times per request.
func classifyS3(err error) Outcome {
	var re interface{ HTTPStatusCode() int }
	var ae interface{ ErrorCode() string }
	if errors.As(err, &re) {
		st := re.HTTPStatusCode()
		retry := st == http.StatusRequestTimeout || st == http.StatusTooManyRequests || st >= 500
		reason := fmt.Sprintf("S3 answered HTTP %d", st)
		if errors.As(err, &ae) && ae.ErrorCode() != "" {
			reason += " " + ae.ErrorCode() // AccessDenied, NoSuchBucket, ...
		}
		return Outcome{Retry: retry, Status: st, Reason: reason}
	}
	return Outcome{Retry: true, Reason: "S3: " + netguard.Explain(err)}
}
