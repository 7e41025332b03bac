package imcluster

import (
	"testing"
	"time"

	"github.com/imkube/imkube/internal/app"
	"github.com/imkube/imkube/internal/bus/rocketmq"
	"github.com/imkube/imkube/operator/internal/render"
)

// The grace periods cover the processes' own shutdown bounds: a message pod
// killed before its consumer stopped gracefully would leave records to be
// consumed twice.
func TestGracePeriodsCoverTheProcessesShutdownBounds(t *testing.T) {
	if got := time.Duration(httpShutdownSeconds) * time.Second; got != app.ShutdownTimeout {
		t.Errorf("httpShutdownSeconds = %s, app.ShutdownTimeout = %s", got, app.ShutdownTimeout)
	}
	if got := time.Duration(consumerStopSeconds) * time.Second; got != rocketmq.DefaultStopTimeout {
		t.Errorf("consumerStopSeconds = %s, rocketmq.DefaultStopTimeout = %s", got, rocketmq.DefaultStopTimeout)
	}
	s := newScope(sampleCluster(), render.Options{})
	for _, component := range []string{render.Message, render.Sequence, render.User} {
		d := desiredDeployment(s, component)
		grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
		need := app.ShutdownTimeout + 5*time.Second // HTTP, then telemetry flush
		if component == render.Message {
			need += rocketmq.DefaultStopTimeout + 5*time.Second // consumer stop, cancelled calls
		}
		if grace < need {
			t.Errorf("%s: terminationGracePeriodSeconds %s < %s", component, grace, need)
		}
	}
}
