package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrLimit is returned when a per-user bound would be exceeded.
var ErrLimit = errors.New("limit reached")

// Thumbnail states of an upload.
const (
	ThumbNone    = ""        // not an image the platform thumbnails
	ThumbPending = "pending" // queued; the thumbnail object does not exist yet
	ThumbReady   = "ready"   // thumb_key names an existing object
	ThumbRefused = "refused" // the image could not be thumbnailed (too large, malformed)
)

// Upload is an object a user was allowed to upload (POST /api/v1/uploads).
type Upload struct {
	ObjectKey   string
	Owner       string
	Kind        string
	ContentType string
	Size        int64
	Name        string
	CreatedAt   time.Time
	Referenced  bool
	ThumbKey    string
	ThumbState  string
}

const uploadCols = "object_key, owner, kind, content_type, size, name, created_at, referenced, thumb_key, thumb_state"

func scanUpload(sc interface{ Scan(...any) error }) (*Upload, error) {
	var u Upload
	var created int64
	var ref int
	if err := sc.Scan(&u.ObjectKey, &u.Owner, &u.Kind, &u.ContentType, &u.Size, &u.Name, &created, &ref, &u.ThumbKey, &u.ThumbState); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	u.CreatedAt, u.Referenced = time.UnixMilli(created), ref != 0
	return &u, nil
}

// CreateUpload records an upload unless its owner already has maxPending
// unreferenced uploads (ErrLimit).
func (s *DB) CreateUpload(ctx context.Context, u Upload, maxPending int) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM media_uploads WHERE owner = ? AND referenced = 0", u.Owner).Scan(&n); err != nil {
			return err
		}
		if n >= maxPending {
			return fmt.Errorf("%w: %d uploads not sent yet", ErrLimit, n)
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO media_uploads ("+uploadCols+") VALUES (?, ?, ?, ?, ?, ?, ?, 0, '', '')",
			u.ObjectKey, u.Owner, u.Kind, u.ContentType, u.Size, u.Name, u.CreatedAt.UnixMilli())
		if isUniqueViolation(err) {
			return ErrConflict
		}
		return err
	})
}

// UploadByKey returns the upload of an object (ErrNotFound).
func (s *DB) UploadByKey(ctx context.Context, key string) (*Upload, error) {
	return scanUpload(s.queryRow(ctx, "SELECT "+uploadCols+" FROM media_uploads WHERE object_key = ?", key))
}

// ReferenceUpload records that conv contains the object (idempotent); a
// referenced upload is never swept.
func (s *DB) ReferenceUpload(ctx context.Context, key, conv string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.insertIgnore()+" INTO media_refs (object_key, conv) VALUES (?, ?)", key, conv); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "UPDATE media_uploads SET referenced = 1 WHERE object_key = ?", key)
		return err
	})
}

// MediaConvs lists the conversations that contain the object.
func (s *DB) MediaConvs(ctx context.Context, key string) ([]string, error) {
	rows, err := s.query(ctx, "SELECT conv FROM media_refs WHERE object_key = ? ORDER BY conv LIMIT 100", key)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// SetThumb records the thumbnail state (and key) of an upload.
func (s *DB) SetThumb(ctx context.Context, key, thumbKey, state string) error {
	_, err := s.db.ExecContext(ctx, "UPDATE media_uploads SET thumb_key = ?, thumb_state = ? WHERE object_key = ?", thumbKey, state, key)
	return err
}

// OrphanUploads returns up to limit unreferenced uploads created before
// before, oldest first.
func (s *DB) OrphanUploads(ctx context.Context, before time.Time, limit int) ([]Upload, error) {
	return s.uploads(ctx, "WHERE referenced = 0 AND created_at < ? ORDER BY created_at LIMIT ?", before.UnixMilli(), limit)
}

// PendingThumbs returns up to limit referenced uploads whose thumbnail is
// still pending and that were created before before.
func (s *DB) PendingThumbs(ctx context.Context, before time.Time, limit int) ([]Upload, error) {
	return s.uploads(ctx, "WHERE referenced = 1 AND thumb_state = ? AND created_at < ? ORDER BY created_at LIMIT ?", ThumbPending, before.UnixMilli(), limit)
}

func (s *DB) uploads(ctx context.Context, where string, args ...any) ([]Upload, error) {
	rows, err := s.query(ctx, "SELECT "+uploadCols+" FROM media_uploads "+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Upload
	for rows.Next() {
		u, err := scanUpload(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *u)
	}
	return out, rows.Err()
}

// DeleteUpload removes an unreferenced upload's record; a referenced one
// stays (false): it was sent while the sweeper looked at it.
func (s *DB) DeleteUpload(ctx context.Context, key string) (bool, error) {
	res, err := s.db.ExecContext(ctx, "DELETE FROM media_uploads WHERE object_key = ? AND referenced = 0", key)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}
