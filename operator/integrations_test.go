package operator

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/render"
)

// spec.webhooks and spec.admin reach the services: the hook settings in
// config.json (hot-reloaded), the signing and admin keys as environment
// variables of the message service only, hashed so that a new key rolls
// exactly the message service.
func TestWebhooksAndAdminRenderIntoConfigAndMessageEnv(t *testing.T) {
	h := startOperator(t)
	ctx := context.Background()
	ns := h.namespace("hooks")
	h.applySamples(ns, "imcluster.yaml", "gatewaypool.yaml")
	for name, key := range map[string]string{"demo-hooks": "signing-key", "demo-admin": "key"} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{key: []byte("first-value-0123456789")}}
		if err := h.c.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	h.eventually("IMCluster with webhooks and admin", func() error {
		var c imv1.IMCluster
		if err := h.get(ns, "demo", &c); err != nil {
			return err
		}
		c.Spec.Webhooks = imv1.WebhooksSpec{
			BeforeSend:  &imv1.BeforeSendHookSpec{URL: "https://hooks.example/before", Timeout: &metav1.Duration{Duration: 250 * time.Millisecond}, FailOpen: true},
			Events:      &imv1.EventsHookSpec{URL: "https://hooks.example/events"},
			OfflinePush: &imv1.OfflinePushHookSpec{URL: "http://push.example/offline"},
			SecretRef:   &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "demo-hooks"}, Key: "signing-key"},
		}
		c.Spec.Admin = imv1.AdminSpec{SecretRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "demo-admin"}, Key: "key"}}
		return h.c.Update(ctx, &c)
	})

	var c imv1.IMCluster
	if err := h.get(ns, "demo", &c); err != nil {
		t.Fatal(err)
	}
	if c.Spec.Admin.Port != 9091 {
		t.Errorf("spec.admin.port defaulted to %d, want 9091", c.Spec.Admin.Port)
	}
	h.eventually("config.json has the hooks", func() error {
		var cm corev1.ConfigMap
		if err := h.get(ns, "demo-config", &cm); err != nil {
			return err
		}
		for _, want := range []string{`"url": "https://hooks.example/before"`, `"timeout": "250ms"`, `"failOpen": true`, `"url": "https://hooks.example/events"`, `"url": "http://push.example/offline"`} {
			if !strings.Contains(cm.Data["config.json"], want) {
				return fmt.Errorf("config.json lacks %s: %s", want, cm.Data["config.json"])
			}
		}
		if strings.Contains(cm.Data["config.json"], "first-value") {
			return fmt.Errorf("a key leaked into the ConfigMap")
		}
		return nil
	})
	deployment := func(name string) (appsv1.Deployment, error) {
		var d appsv1.Deployment
		return d, h.get(ns, name, &d)
	}
	h.eventually("message env", func() error {
		d, err := deployment("demo-message")
		if err != nil {
			return err
		}
		ctr := d.Spec.Template.Spec.Containers[0]
		var secret, key *corev1.EnvVar
		for i, e := range ctr.Env {
			switch e.Name {
			case "IMKUBE_WEBHOOK_SECRET":
				secret = &ctr.Env[i]
			case "IMKUBE_ADMIN_KEY":
				key = &ctr.Env[i]
			}
		}
		if secret == nil || secret.ValueFrom.SecretKeyRef.Name != "demo-hooks" || key == nil || key.ValueFrom.SecretKeyRef.Name != "demo-admin" ||
			envValue(ctr, "IMKUBE_ADMIN_ADDR") != ":9091" {
			return fmt.Errorf("message env = %v", ctr.Env)
		}
		return nil
	})
	for _, name := range []string{"demo-user", "demo-sequence", "edge-gateway"} {
		d, err := deployment(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "IMKUBE_WEBHOOK_SECRET" || e.Name == "IMKUBE_ADMIN_KEY" {
				t.Errorf("%s reads %s; only the message service may", name, e.Name)
			}
		}
	}

	hashes := func() map[string]string {
		out := map[string]string{}
		for _, name := range []string{"demo-message", "demo-user", "demo-sequence", "edge-gateway"} {
			d, err := deployment(name)
			if err != nil {
				t.Fatal(err)
			}
			out[name] = d.Spec.Template.Annotations[render.AnnotationSecretsHash]
		}
		return out
	}
	h.eventually("message secrets hash is set", func() error {
		if hashes()["demo-message"] == "" {
			return fmt.Errorf("no secrets hash")
		}
		return nil
	})
	before := hashes()
	var sec corev1.Secret
	if err := h.get(ns, "demo-hooks", &sec); err != nil {
		t.Fatal(err)
	}
	sec.Data["signing-key"] = []byte("second-value-0123456789")
	if err := h.c.Update(ctx, &sec); err != nil {
		t.Fatal(err)
	}
	h.eventually("message rolls for the new signing key", func() error {
		if v := hashes()["demo-message"]; v == before["demo-message"] {
			return fmt.Errorf("message still has secrets hash %s", v)
		}
		return nil
	})
	after := hashes()
	for _, name := range []string{"demo-user", "demo-sequence", "edge-gateway"} {
		if after[name] != before[name] {
			t.Errorf("%s does not read the signing key but its secrets hash changed", name)
		}
	}
}
