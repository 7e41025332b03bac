package media

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config names an S3-compatible store.
type S3Config struct {
	// Endpoint is http(s)://host[:port] as this process reaches it.
	Endpoint string
	// PublicEndpoint, if set, is the endpoint presigned URLs name.
	PublicEndpoint string
	Bucket         string
	Region         string
	PathStyle      bool
	AccessKey      string
	SecretKey      string
}

// S3 is Objects on an S3-compatible store (minio-go client).
type S3 struct {
	c, public *minio.Client
	bucket    string
}

var _ Objects = (*S3)(nil)

// NewS3 returns the store; it does not connect (Ready does).
func NewS3(cfg S3Config) (*S3, error) {
	client := func(endpoint string) (*minio.Client, error) {
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("media: object store endpoint %q: want http(s)://host[:port]", endpoint)
		}
		lookup := minio.BucketLookupDNS
		if cfg.PathStyle {
			lookup = minio.BucketLookupPath
		}
		return minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
			Secure: u.Scheme == "https", Region: cfg.Region, BucketLookup: lookup})
	}
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("media: object store bucket is required")
	}
	c, err := client(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	s := &S3{c: c, public: c, bucket: cfg.Bucket}
	if cfg.PublicEndpoint != "" {
		if s.public, err = client(cfg.PublicEndpoint); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// PresignPut signs the content type and owner header into the URL: a PUT
// without them, or with other values, is refused by the store.
func (s *S3) PresignPut(ctx context.Context, key, contentType, owner string, _ int64, ttl time.Duration) (string, map[string]string, error) {
	h := http.Header{}
	h.Set("Content-Type", contentType)
	h.Set(OwnerHeader, owner)
	u, err := s.public.PresignHeader(ctx, http.MethodPut, s.bucket, key, ttl, nil, h)
	if err != nil {
		return "", nil, fmt.Errorf("media: presign upload: %w", err)
	}
	return u.String(), map[string]string{"Content-Type": contentType, OwnerHeader: owner}, nil
}

// PresignGet returns a presigned GET.
func (s *S3) PresignGet(ctx context.Context, key string, ttl time.Duration, attachment string) (string, error) {
	params := url.Values{}
	if attachment != "" {
		params.Set("response-content-disposition", contentDisposition(attachment))
	}
	u, err := s.public.PresignedGetObject(ctx, s.bucket, key, ttl, params)
	if err != nil {
		return "", fmt.Errorf("media: presign download: %w", err)
	}
	return u.String(), nil
}

// Stat is a HEAD of the object.
func (s *S3) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	info, err := s.c.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		if isNotFound(err) {
			return ObjectInfo{}, ErrNotFound
		}
		return ObjectInfo{}, fmt.Errorf("media: stat %s: %w", key, err)
	}
	owner := info.UserMetadata["Imkube-Owner"]
	if owner == "" {
		owner = info.Metadata.Get(OwnerHeader)
	}
	return ObjectInfo{Size: info.Size, ContentType: info.ContentType, Owner: owner}, nil
}

// Open reads the object.
func (s *S3) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	o, err := s.c.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("media: get %s: %w", key, err)
	}
	if _, err := o.Stat(); err != nil {
		o.Close()
		if isNotFound(err) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("media: get %s: %w", key, err)
	}
	return o, nil
}

// Put uploads an object.
func (s *S3) Put(ctx context.Context, key, contentType, owner string, r io.Reader, size int64) error {
	_, err := s.c.PutObject(ctx, s.bucket, key, r, size, minio.PutObjectOptions{ContentType: contentType,
		UserMetadata: map[string]string{"Imkube-Owner": owner}})
	if err != nil {
		return fmt.Errorf("media: put %s: %w", key, err)
	}
	return nil
}

// Remove deletes the object.
func (s *S3) Remove(ctx context.Context, key string) error {
	if err := s.c.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
		return fmt.Errorf("media: remove %s: %w", key, err)
	}
	return nil
}

// Ready checks that the bucket exists.
func (s *S3) Ready(ctx context.Context) error {
	ok, err := s.c.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("object store: %w", err)
	}
	if !ok {
		return fmt.Errorf("object store: bucket %q does not exist", s.bucket)
	}
	return nil
}

func isNotFound(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.StatusCode == http.StatusNotFound || r.Code == "NoSuchKey" || r.Code == "NotFound"
}

// contentDisposition is an attachment header with the file name, ASCII
// fallback and RFC 5987 UTF-8 form.
func contentDisposition(name string) string {
	ascii := make([]rune, 0, len(name))
	for _, r := range name {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			r = '_'
		}
		ascii = append(ascii, r)
	}
	return fmt.Sprintf(`attachment; filename="%s"; filename*=UTF-8''%s`, string(ascii), url.PathEscape(name))
}
