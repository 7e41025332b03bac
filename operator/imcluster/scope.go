package imcluster

import (
	"cmp"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/render"
	"github.com/imkube/imkube/operator/internal/secrets"
)

// components are the Deployments of an IMCluster, in rollout order.
func components() []string { return []string{render.Sequence, render.User, render.Message} }

// scope is one reconcile of one IMCluster: the object, what the builders
// derive from it, and what the phases observed.
type scope struct {
	cluster    *imv1.IMCluster
	image      string
	configHash string
	// secretsHash is the fingerprint of the Secret keys each component reads
	// as environment variables (render.SecretEnvRefs), read by the
	// dependencies phase; empty when not read (rendering outside a reconcile).
	secretsHash map[string]string
	// secrets reads the referenced Secrets once per reconcile (set by the
	// dependencies phase).
	secrets *secrets.Reader

	// Observed by the phases.
	authKey      string // non-empty: the generated auth Secret must be created with it
	deployments  map[string]*appsv1.Deployment
	depErr       error // dependency check failure (DependenciesReady=False)
	depReason    string
	topicCreated []string
	pools        []imv1.GatewayPoolSummary
	// problems say why components do not run (Degraded), in component order.
	problems []render.Problem
	// kedaMissing: message autoscaling asks for KEDA, which is not installed
	// (Degraded when nothing worse is).
	kedaMissing bool
}

func newScope(c *imv1.IMCluster, o render.Options) *scope {
	return &scope{
		cluster:     c,
		image:       render.Image(c, o),
		configHash:  render.ConfigHash(c),
		deployments: map[string]*appsv1.Deployment{},
		secretsHash: map[string]string{},
	}
}

func (s *scope) name(component string) string { return render.ComponentName(s.cluster.Name, component) }

func (s *scope) labels(component string) map[string]string {
	return render.Labels(s.cluster.Name, component, "", render.ImageTag(s.image))
}

func (s *scope) selector(component string) map[string]string {
	return render.Selector(s.cluster.Name, component, "")
}

func (s *scope) objectMeta(name, component string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:            name,
		Namespace:       s.cluster.Namespace,
		Labels:          s.labels(component),
		OwnerReferences: []metav1.OwnerReference{render.OwnerReference(s.cluster, "IMCluster")},
	}
}

// workload returns the replicas/resources spec of a component.
func (s *scope) workload(component string) imv1.WorkloadSpec {
	switch component {
	case render.Message:
		return s.cluster.Spec.Message.WorkloadSpec
	case render.Sequence:
		return s.cluster.Spec.Sequence.WorkloadSpec
	default:
		return s.cluster.Spec.User.WorkloadSpec
	}
}

// autoscaled reports whether an HPA owns the replica count of component.
func (s *scope) autoscaled(component string) bool {
	switch component {
	case render.Message:
		return s.cluster.Spec.Message.Autoscaling != nil
	case render.Sequence:
		return s.cluster.Spec.Sequence.Autoscaling != nil
	default:
		return s.cluster.Spec.User.Autoscaling != nil
	}
}

// minReplicas is the autoscaling lower bound of component (at least 1).
func (s *scope) minReplicas(component string) int32 {
	var n int32
	switch component {
	case render.Message:
		if a := s.cluster.Spec.Message.Autoscaling; a != nil {
			n = a.MinReplicas
		}
	case render.Sequence:
		if a := s.cluster.Spec.Sequence.Autoscaling; a != nil {
			n = a.MinReplicas
		}
	default:
		if a := s.cluster.Spec.User.Autoscaling; a != nil {
			n = a.MinReplicas
		}
	}
	return max(n, 1)
}

// replicas is the fixed replica count of component (default 2).
func (s *scope) replicas(component string) int32 {
	if r := s.workload(component).Replicas; r != nil {
		return *r
	}
	return 2
}

// topics are the topics the operator ensures: the cluster's upstream and push
// topics (queue counts from spec.dependencies.rocketmq.topics when listed
// there, else 8), then the other listed topics.
func (s *scope) topics() []imv1.TopicSpec {
	iso := render.Isolation(s.cluster)
	listed := s.cluster.Spec.Dependencies.RocketMQ.Topics
	out := []imv1.TopicSpec{{Name: iso.UpstreamTopic, Queues: 8}, {Name: iso.PushTopic, Queues: 8}}
	for i := range out {
		for _, t := range listed {
			if t.Name == out[i].Name {
				out[i].Queues = t.Queues
			}
		}
	}
	for _, t := range listed {
		if t.Name != iso.UpstreamTopic && t.Name != iso.PushTopic {
			out = append(out, t)
		}
	}
	return out
}

func queues(t imv1.TopicSpec) int { return int(cmp.Or(t.Queues, 8)) }

// deploymentList is the observed Deployments of the components, in order
// (nil for one not observed).
func (s *scope) deploymentList() []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, comp := range components() {
		out = append(out, s.deployments[comp])
	}
	return out
}
