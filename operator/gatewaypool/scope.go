package gatewaypool

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/render"
)

// scope is one reconcile of one GatewayPool.
type scope struct {
	pool    *imv1.GatewayPool
	cluster *imv1.IMCluster // nil when clusterRef names no IMCluster
	image   string
	// secretsHash fingerprints the Secret keys gateways read as environment
	// variables (empty when not read: rendering outside a reconcile).
	secretsHash string

	deployment  *appsv1.Deployment // observed
	connections *int64             // observed through the HPA metric
	problem     *render.Problem    // why the gateways do not run (Degraded); nil: they do
	kedaMissing bool               // autoscaling asks for KEDA, which is not installed (Degraded)
}

func newScope(p *imv1.GatewayPool, c *imv1.IMCluster, o render.Options) *scope {
	s := &scope{pool: p, cluster: c}
	if c != nil {
		s.image = render.Image(c, o)
	}
	return s
}

func (s *scope) name() string { return render.GatewayName(s.pool.Name) }

func (s *scope) selector() map[string]string {
	return render.Selector(s.pool.Spec.ClusterRef.Name, render.Gateway, s.pool.Name)
}

func (s *scope) labels() map[string]string {
	return render.Labels(s.pool.Spec.ClusterRef.Name, render.Gateway, s.pool.Name, render.ImageTag(s.image))
}

// podLabels are the labels of the pod template: labels plus LabelServing.
func (s *scope) podLabels() map[string]string {
	l := s.labels()
	l[LabelServing] = "true"
	return l
}

// serviceSelector selects the pods that take new client connections.
func (s *scope) serviceSelector() map[string]string {
	l := s.selector()
	l[LabelServing] = "true"
	return l
}

func (s *scope) objectMeta() metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:            s.name(),
		Namespace:       s.pool.Namespace,
		Labels:          s.labels(),
		OwnerReferences: []metav1.OwnerReference{render.OwnerReference(s.pool, "GatewayPool")},
	}
}

func (s *scope) drainTimeout() time.Duration {
	if d := s.pool.Spec.DrainTimeout; d != nil && d.Duration > 0 {
		return d.Duration
	}
	return 30 * time.Second
}

func (s *scope) heartbeat() time.Duration {
	if d := s.pool.Spec.HeartbeatInterval; d != nil && d.Duration > 0 {
		return d.Duration
	}
	return 25 * time.Second
}

func (s *scope) servicePort() int32 {
	if p := s.pool.Spec.Service.Port; p > 0 {
		return p
	}
	return 80
}
