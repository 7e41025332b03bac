package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/imkube/imkube/internal/store"
)

func TestUploadsAreBoundedPerUserReferencedAndSwept(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		t0 := time.UnixMilli(1_700_000_000_000)
		up := func(key string, at time.Time) error {
			return db.CreateUpload(ctx, store.Upload{ObjectKey: key, Owner: "u1", Kind: "file", ContentType: "text/plain", Size: 3, Name: "a.txt", CreatedAt: at}, 2)
		}
		if err := up("m/u1/a", t0); err != nil {
			t.Fatal(err)
		}
		if err := up("m/u1/a", t0); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("same key again: %v, want ErrConflict", err)
		}
		if err := up("m/u1/b", t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := up("m/u1/c", t0); !errors.Is(err, store.ErrLimit) {
			t.Fatalf("third pending upload: %v, want ErrLimit", err)
		}
		if err := db.ReferenceUpload(ctx, "m/u1/a", "u:u1:u2"); err != nil {
			t.Fatal(err)
		}
		if err := db.ReferenceUpload(ctx, "m/u1/a", "u:u1:u2"); err != nil {
			t.Fatalf("referencing twice: %v", err)
		}
		if err := up("m/u1/c", t0); err != nil {
			t.Fatalf("a referenced upload no longer counts as pending: %v", err)
		}
		convs, err := db.MediaConvs(ctx, "m/u1/a")
		if err != nil || len(convs) != 1 || convs[0] != "u:u1:u2" {
			t.Fatalf("MediaConvs = %v, %v", convs, err)
		}
		orphans, err := db.OrphanUploads(ctx, t0.Add(time.Minute), 10)
		if err != nil || len(orphans) != 1 || orphans[0].ObjectKey != "m/u1/c" {
			t.Fatalf("orphans before t0+1m: %+v %v, want only m/u1/c", orphans, err)
		}
		if ok, err := db.DeleteUpload(ctx, "m/u1/a"); ok || err != nil {
			t.Fatalf("DeleteUpload of a referenced upload: %v %v, want kept", ok, err)
		}
		if ok, err := db.DeleteUpload(ctx, "m/u1/c"); !ok || err != nil {
			t.Fatalf("DeleteUpload of an orphan: %v %v", ok, err)
		}
		if err := db.SetThumb(ctx, "m/u1/a", "m/u1/a.thumb", store.ThumbReady); err != nil {
			t.Fatal(err)
		}
		u, err := db.UploadByKey(ctx, "m/u1/a")
		if err != nil || !u.Referenced || u.ThumbState != store.ThumbReady || u.ThumbKey != "m/u1/a.thumb" || !u.CreatedAt.Equal(t0) {
			t.Fatalf("UploadByKey = %+v, %v", u, err)
		}
		if _, err := db.UploadByKey(ctx, "m/u1/c"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted upload: %v, want ErrNotFound", err)
		}
	})
}
