package render

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"strings"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
)

// isolationIDMax bounds the derived id: topics `IM_UPSTREAM_<id>`, the
// database `imkube_<id>` (MySQL: 64) and the retry topics of the push groups
// (`%RETRY%<id>_imkube-push-<pod name>`, RocketMQ: 127) stay within limits.
const isolationIDMax = 40

// IsolationID is the id of an IMCluster in names of shared dependencies:
// `<namespace>_<name>`, unique because neither part has an underscore. When
// the name has a dot, either part a dash (characters some of those names
// cannot hold), or the id would be longer than 40, it is the readable part
// (dots and dashes as underscores, cut) plus `_` and 8 hex digits of a hash
// of namespace/name.
func IsolationID(namespace, name string) string {
	id := namespace + "_" + name
	if !strings.ContainsAny(id, ".-") && len(id) <= isolationIDMax {
		return id
	}
	sum := sha256.Sum256([]byte(namespace + "/" + name))
	readable := strings.NewReplacer(".", "_", "-", "_").Replace(id)
	return readable[:min(len(readable), isolationIDMax-9)] + "_" + hex.EncodeToString(sum[:4])
}

// Isolation is spec.isolation of c with the derived defaults filled in: the
// names the cluster's processes use in the shared RocketMQ, Redis and MySQL.
func Isolation(c *imv1.IMCluster) imv1.IsolationSpec {
	id := IsolationID(c.Namespace, c.Name)
	o := c.Spec.Isolation
	key := c.Namespace + "/" + c.Name + ":"
	return imv1.IsolationSpec{
		UpstreamTopic:       cmp.Or(o.UpstreamTopic, "IM_UPSTREAM_"+id),
		PushTopic:           cmp.Or(o.PushTopic, "IM_PUSH_"+id),
		ConsumerGroupPrefix: cmp.Or(o.ConsumerGroupPrefix, id+"_"),
		SessionKeyPrefix:    cmp.Or(o.SessionKeyPrefix, "imkube:"+key),
		SequenceKeyPrefix:   cmp.Or(o.SequenceKeyPrefix, "imkube:seq:"+key),
		MySQLDatabase:       cmp.Or(o.MySQLDatabase, "imkube_"+id),
	}
}

// PushGroupPrefix is the prefix of the gateways' push consumer groups of a
// cluster whose groups are prefixed with groupPrefix (see
// internal/app.Distributed.Bus).
func PushGroupPrefix(groupPrefix string) string { return groupPrefix + "imkube-push-" }

// MessageGroup is the consumer group of the message service on the upstream
// topic (see internal/app.Distributed.Bus).
func MessageGroup(groupPrefix string) string { return groupPrefix + "imkube-message" }
