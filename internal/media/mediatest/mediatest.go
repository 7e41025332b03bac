// Package mediatest gives tests the S3-compatible store started by hack/s3.sh.
package mediatest

import (
	"os"
	"testing"

	"github.com/imkube/imkube/internal/media"
	"github.com/imkube/imkube/internal/testenv"
)

// S3 returns the S3-compatible store started by hack/s3.sh
// (IMKUBE_TEST_S3_*; `make test` writes them): skipped on a developer
// machine without it, failed in CI. Tests share its bucket; keys are random.
func S3(t testing.TB) *media.S3 {
	t.Helper()
	endpoint := testenv.Require(t, "IMKUBE_TEST_S3_ENDPOINT")
	s, err := media.NewS3(media.S3Config{Endpoint: endpoint, Bucket: os.Getenv("IMKUBE_TEST_S3_BUCKET"), Region: os.Getenv("IMKUBE_TEST_S3_REGION"),
		PathStyle: true, AccessKey: os.Getenv("IMKUBE_TEST_S3_ACCESS_KEY"), SecretKey: os.Getenv("IMKUBE_TEST_S3_SECRET_KEY")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
