package operator

import (
	"context"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/render"
)

// Pods take the DSN and the Redis password as environment variables, fixed
// when a container starts: a changed Secret must roll exactly the pods that
// read it. The operator watches the Secrets (metadata only) and hashes the
// referenced values into the pod templates.
func TestSecretChangesRollThePodsThatReadThem(t *testing.T) {
	h := startOperator(t)
	ctx := context.Background()
	ns := h.namespace("secrets")
	h.applySamples(ns, "imcluster.yaml", "gatewaypool.yaml")

	hash := func(name string) (string, error) {
		var d appsv1.Deployment
		if err := h.get(ns, name, &d); err != nil {
			return "", err
		}
		v := d.Spec.Template.Annotations[render.AnnotationSecretsHash]
		if v == "" {
			return "", fmt.Errorf("Deployment %s has no %s annotation", name, render.AnnotationSecretsHash)
		}
		return v, nil
	}
	snapshot := func() map[string]string {
		out := map[string]string{}
		for _, name := range []string{"demo-message", "demo-user", "demo-sequence", "edge-gateway"} {
			h.eventually("secrets hash of "+name, func() error {
				v, err := hash(name)
				out[name] = v
				return err
			})
		}
		return out
	}
	changed := func(before map[string]string, name string) func() error {
		return func() error {
			v, err := hash(name)
			if err != nil {
				return err
			}
			if v == before[name] {
				return fmt.Errorf("%s still has secrets hash %s", name, v)
			}
			return nil
		}
	}
	patchSecret := func(name, key, value string) {
		t.Helper()
		var sec corev1.Secret
		if err := h.get(ns, name, &sec); err != nil {
			t.Fatal(err)
		}
		sec.Data[key] = []byte(value)
		if err := h.c.Update(ctx, &sec); err != nil {
			t.Fatal(err)
		}
	}

	before := snapshot()
	patchSecret("demo-mysql", "dsn", "imkube:other@tcp(imkube-mysql:3306)/imkube?parseTime=true")
	for _, name := range []string{"demo-message", "demo-user", "demo-sequence"} {
		h.eventually(name+" rolls for the new DSN", changed(before, name))
	}
	if v, _ := hash("edge-gateway"); v != before["edge-gateway"] {
		t.Errorf("the gateway does not read the DSN but its pod template changed: %s -> %s", before["edge-gateway"], v)
	}

	// A Redis password Secret: the gateways and the components using Redis
	// roll when its value changes; the user service (no Redis) does not.
	afterDSN := snapshot()
	redis := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "demo-redis"}, Data: map[string][]byte{"password": []byte("one")}}
	if err := h.c.Create(ctx, redis); err != nil {
		t.Fatal(err)
	}
	h.eventually("IMCluster names the Redis password Secret", func() error {
		var c imv1.IMCluster
		if err := h.get(ns, "demo", &c); err != nil {
			return err
		}
		c.Spec.Dependencies.Redis.PasswordSecretRef = &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "demo-redis"}, Key: "password"}
		return h.c.Update(ctx, &c)
	})
	for _, name := range []string{"edge-gateway", "demo-message", "demo-sequence"} {
		h.eventually(name+" reads the Redis password", changed(afterDSN, name))
	}
	if v, _ := hash("demo-user"); v != afterDSN["demo-user"] {
		t.Errorf("the user service does not read the Redis password but its secrets hash changed: %s -> %s", afterDSN["demo-user"], v)
	}
	mid := snapshot()
	patchSecret("demo-redis", "password", "two")
	for _, name := range []string{"edge-gateway", "demo-message", "demo-sequence"} {
		h.eventually(name+" rolls for the new Redis password", changed(mid, name))
	}
	if v, _ := hash("demo-user"); v != mid["demo-user"] {
		t.Errorf("the user service does not read the Redis password but its secrets hash changed: %s -> %s", mid["demo-user"], v)
	}
}
