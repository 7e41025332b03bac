// Package media is imkube's media path (issue 18): clients upload images,
// files, audio and video straight to an object store with presigned URLs,
// messages carry only the object's key, and members of a conversation that
// contains the object fetch it through short-lived presigned URLs.
//
// Objects is the object store: S3 (any S3-compatible store, minio-go) in
// distributed mode, Local (files in the data folder, URLs signed with HMAC
// and served by the dev process) for `imkube dev`. Service holds the REST
// endpoints, the check of media bodies at send, thumbnails and the orphan
// sweeper, on top of one Objects and the store's upload records.
package media

import (
	"context"
	"errors"
	"io"
	"regexp"
	"time"
)

// OwnerHeader is the object metadata that names the uploader; presigned
// uploads require the client to send it, so a HEAD proves who uploaded.
const OwnerHeader = "X-Amz-Meta-Imkube-Owner"

// ErrNotFound: no such object.
var ErrNotFound = errors.New("media: object not found")

// ObjectInfo is what a HEAD returns.
type ObjectInfo struct {
	Size        int64
	ContentType string
	Owner       string
}

// Objects is an object store.
type Objects interface {
	// PresignPut returns a URL (absolute, or a path on the serving host) and
	// the headers a client must send with its PUT of the object.
	PresignPut(ctx context.Context, key, contentType, owner string, size int64, ttl time.Duration) (url string, headers map[string]string, err error)
	// PresignGet returns a URL that serves the object until ttl passes;
	// attachment asks browsers to download instead of showing it.
	PresignGet(ctx context.Context, key string, ttl time.Duration, attachment string) (string, error)
	// Stat returns the object's size, type and owner (ErrNotFound).
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// Open reads the object (ErrNotFound).
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// Put stores an object the platform made (thumbnails).
	Put(ctx context.Context, key, contentType, owner string, r io.Reader, size int64) error
	// Remove deletes the object; a missing object is not an error.
	Remove(ctx context.Context, key string) error
	// Ready reports whether the store (and bucket) can be used.
	Ready(ctx context.Context) error
}

// keyRe matches the keys the platform hands out: m/<owner>/<26 base32>,
// and their thumbnails (".thumb").
var keyRe = regexp.MustCompile(`^m/[A-Za-z0-9_.-]{1,64}/[a-z2-7]{26}(\.thumb)?$`)

// ValidKey reports whether key has the form of a platform object key.
func ValidKey(key string) bool { return keyRe.MatchString(key) }
