package render

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
)

func TestObjectStoreSettingsReachOnlyTheMessagePods(t *testing.T) {
	c := &imv1.IMCluster{Spec: imv1.IMClusterSpec{Media: imv1.MediaSpec{ObjectStore: &imv1.ObjectStoreSpec{
		Endpoint: "http://s3.storage:9000", PublicEndpoint: "https://media.example.com", Bucket: "chat-media",
		CredentialsSecret: corev1.LocalObjectReference{Name: "s3-creds"},
	}}}}
	env := map[string]corev1.EnvVar{}
	for _, e := range MediaEnv(c, Message) {
		env[e.Name] = e
	}
	for name, want := range map[string]string{"IMKUBE_S3_ENDPOINT": "http://s3.storage:9000", "IMKUBE_S3_PUBLIC_ENDPOINT": "https://media.example.com",
		"IMKUBE_S3_BUCKET": "chat-media", "IMKUBE_S3_REGION": "us-east-1", "IMKUBE_S3_PATH_STYLE": "true"} {
		if env[name].Value != want {
			t.Errorf("%s = %q, want %q", name, env[name].Value, want)
		}
	}
	for name, key := range map[string]string{"IMKUBE_S3_ACCESS_KEY": "accessKey", "IMKUBE_S3_SECRET_KEY": "secretKey"} {
		ref := env[name].ValueFrom
		if ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != "s3-creds" || ref.SecretKeyRef.Key != key {
			t.Errorf("%s = %+v, want Secret s3-creds key %s", name, env[name], key)
		}
	}
	for _, comp := range []string{Gateway, User, Sequence} {
		if got := MediaEnv(c, comp); len(got) != 0 {
			t.Errorf("%s pods get object store env %v", comp, got)
		}
		for _, r := range SecretEnvRefs(c, comp) {
			if r.Name == "s3-creds" {
				t.Errorf("%s pods read the object store credentials", comp)
			}
		}
	}
	refs := SecretEnvRefs(c, Message)
	if n := len(refs); n < 3 || refs[n-1].Name != "s3-creds" {
		t.Errorf("message Secret refs %v: want the credentials (pods roll when they change)", refs)
	}
	if !ReferencesSecret(c, "s3-creds") {
		t.Error("ReferencesSecret(s3-creds) = false: a changed credentials Secret would not be noticed")
	}
	if got := MediaEnv(&imv1.IMCluster{}, Message); got != nil {
		t.Errorf("no objectStore: env %v, want none (media off)", got)
	}
}
