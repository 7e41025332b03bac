package render

import (
	"regexp"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
)

func clusterIn(ns, name string) *imv1.IMCluster {
	return &imv1.IMCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

func TestIsolationDefaultsAreDerivedFromNamespaceAndName(t *testing.T) {
	got := Isolation(clusterIn("chat", "demo"))
	want := imv1.IsolationSpec{
		UpstreamTopic: "IM_UPSTREAM_chat_demo", PushTopic: "IM_PUSH_chat_demo", ConsumerGroupPrefix: "chat_demo_",
		SessionKeyPrefix: "imkube:chat/demo:", SequenceKeyPrefix: "imkube:seq:chat/demo:", MySQLDatabase: "imkube_chat_demo",
	}
	if got != want {
		t.Errorf("Isolation(chat/demo) = %+v, want %+v", got, want)
	}
	c := clusterIn("chat", "demo")
	c.Spec.Isolation = imv1.IsolationSpec{PushTopic: "MY_PUSH", MySQLDatabase: "legacy"}
	got = Isolation(c)
	if got.PushTopic != "MY_PUSH" || got.MySQLDatabase != "legacy" || got.UpstreamTopic != want.UpstreamTopic {
		t.Errorf("overrides: %+v", got)
	}
}

// Clusters that differ in namespace or name share none of the names, even
// when their namespace/name only differ in where a dash sits; every name
// stays within the limits of RocketMQ and MySQL.
func TestIsolationNamesNeverCollideAndFitTheirSystems(t *testing.T) {
	long := "a-very-long-namespace-name-that-is-allowed-by-kubernetes-ok-63"
	clusters := []*imv1.IMCluster{
		clusterIn("chat", "demo"), clusterIn("support", "demo"), clusterIn("chat", "demo2"),
		clusterIn("a-b", "c"), clusterIn("a", "b-c"), clusterIn("a", "b.c"), clusterIn("a-b", "c.d"),
		clusterIn(long, "forty-character-cluster-name-0123456789"), clusterIn(long, "forty-character-cluster-name-0123456788"),
	}
	topic := regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)
	database := regexp.MustCompile(`^[A-Za-z0-9_$-]{1,64}$`)
	seen := map[string]string{}
	for _, c := range clusters {
		iso := Isolation(c)
		who := c.Namespace + "/" + c.Name
		for field, v := range map[string]string{
			"upstream": iso.UpstreamTopic, "push": iso.PushTopic, "group": iso.ConsumerGroupPrefix,
			"session": iso.SessionKeyPrefix, "sequence": iso.SequenceKeyPrefix, "database": iso.MySQLDatabase,
		} {
			if other, ok := seen[field+"="+v]; ok {
				t.Errorf("%s and %s share the %s name %q", other, who, field, v)
			}
			seen[field+"="+v] = who
		}
		if !topic.MatchString(iso.UpstreamTopic) || !topic.MatchString(iso.PushTopic) {
			t.Errorf("%s: topics %q, %q are not valid RocketMQ topic names", who, iso.UpstreamTopic, iso.PushTopic)
		}
		// %RETRY% + group prefix + "imkube-push-" + a 63-character pod name.
		if n := len("%RETRY%") + len(PushGroupPrefix(iso.ConsumerGroupPrefix)) + 63; n > 127 {
			t.Errorf("%s: retry topics of the push groups can be %d characters, RocketMQ allows 127", who, n)
		}
		if !database.MatchString(iso.MySQLDatabase) {
			t.Errorf("%s: database %q is not a valid MySQL name", who, iso.MySQLDatabase)
		}
	}
}
