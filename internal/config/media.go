package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"time"
)

// MediaKinds are the message kinds that carry an uploaded object.
var MediaKinds = []string{"image", "file", "audio", "video"}

// MediaKind bounds the uploads of one kind.
type MediaKind struct {
	// MaxBytes is the largest object of this kind.
	MaxBytes int64 `json:"maxBytes"`
	// ContentTypes are the allowed media types ("image/png"); "*" allows any.
	ContentTypes []string `json:"contentTypes"`
}

// Media are the media settings (IMCluster spec.media): limits per kind, how
// many uploads a user may have that no message references yet, and when such
// an orphan is deleted.
type Media struct {
	Image MediaKind `json:"image"`
	File  MediaKind `json:"file"`
	Audio MediaKind `json:"audio"`
	Video MediaKind `json:"video"`
	// MaxPendingUploads per user: uploads not yet sent in a message.
	MaxPendingUploads int `json:"maxPendingUploads"`
	// OrphanTTL: an upload no message references is deleted this long after
	// it was requested.
	OrphanTTL Duration `json:"orphanTTL"`
	// ThumbnailMaxPixels bounds the images the platform decodes to make a
	// thumbnail (width*height); larger images get none.
	ThumbnailMaxPixels int64 `json:"thumbnailMaxPixels"`
}

// Duration is a time.Duration written as a Go duration string ("24h") in
// JSON.
type Duration time.Duration

// MarshalJSON writes "24h0m0s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "24h" (or a number of nanoseconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err := json.Unmarshal(b, &n); err != nil {
			return errors.New("a duration must be a string like \"24h\"")
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// DefaultMedia returns the built-in media settings.
func DefaultMedia() Media {
	return Media{
		Image:              MediaKind{MaxBytes: 10 << 20, ContentTypes: []string{"image/png", "image/jpeg", "image/gif", "image/webp"}},
		File:               MediaKind{MaxBytes: 50 << 20, ContentTypes: []string{"*"}},
		Audio:              MediaKind{MaxBytes: 20 << 20, ContentTypes: []string{"audio/mpeg", "audio/mp4", "audio/ogg", "audio/webm", "audio/wav", "audio/aac"}},
		Video:              MediaKind{MaxBytes: 200 << 20, ContentTypes: []string{"video/mp4", "video/webm", "video/quicktime"}},
		MaxPendingUploads:  20,
		OrphanTTL:          Duration(24 * time.Hour),
		ThumbnailMaxPixels: 40_000_000,
	}
}

// Kind returns the limits of a media kind (false: not a media kind).
func (m Media) Kind(kind string) (MediaKind, bool) {
	switch kind {
	case "image":
		return m.Image, true
	case "file":
		return m.File, true
	case "audio":
		return m.Audio, true
	case "video":
		return m.Video, true
	}
	return MediaKind{}, false
}

// Allows reports whether the kind accepts the content type.
func (k MediaKind) Allows(contentType string) bool {
	for _, t := range k.ContentTypes {
		if t == "*" || t == contentType {
			return true
		}
	}
	return false
}

// Validate names the first bad field.
func (m Media) Validate() error {
	for _, kind := range MediaKinds {
		k, _ := m.Kind(kind)
		if k.MaxBytes < 1 || k.MaxBytes > 5<<30 {
			return fmt.Errorf("config.json: media.%s.maxBytes must be 1..5368709120", kind)
		}
		if len(k.ContentTypes) == 0 {
			return fmt.Errorf("config.json: media.%s.contentTypes must list at least one type (or \"*\")", kind)
		}
		for _, t := range k.ContentTypes {
			if t == "*" {
				continue
			}
			if mt, params, err := mime.ParseMediaType(t); err != nil || mt != t || len(params) > 0 {
				return fmt.Errorf("config.json: media.%s.contentTypes: %q is not a lower-case media type like image/png", kind, t)
			}
		}
	}
	switch {
	case m.MaxPendingUploads < 1 || m.MaxPendingUploads > 10000:
		return errors.New("config.json: media.maxPendingUploads must be 1..10000")
	case time.Duration(m.OrphanTTL) < time.Minute:
		return errors.New("config.json: media.orphanTTL must be at least 1m")
	case m.ThumbnailMaxPixels < 1 || m.ThumbnailMaxPixels > 200_000_000:
		return errors.New("config.json: media.thumbnailMaxPixels must be 1..200000000")
	}
	return nil
}
