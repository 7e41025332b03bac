package imcluster

import (
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/imkube/imkube/operator/internal/golden"
	"github.com/imkube/imkube/operator/internal/render"
)

// restrictedCluster is sampleCluster with egress limited to its
// dependencies and a custom monitoring selector.
func restrictedCluster() *scope {
	c := sampleCluster()
	c.Spec.NetworkPolicy.RestrictEgress = true
	c.Spec.NetworkPolicy.MonitoringNamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "observability"}}
	c.Spec.NetworkPolicy.DependencyEgress = []networkingv1.NetworkPolicyEgressRule{
		{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.20.0.0/16"}}}},
		{
			To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "data"}}}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(6379))}},
		},
	}
	return newScope(c, render.Options{Version: "v0.0.0-operator"})
}

func TestNetworkPoliciesMatchGoldenFiles(t *testing.T) {
	open := newScope(sampleCluster(), render.Options{Version: "v0.0.0-operator"})
	restricted := restrictedCluster()
	for _, comp := range networkPolicyComponents() {
		t.Run(comp, func(t *testing.T) {
			golden.Assert(t, "networkpolicy-"+comp, desiredNetworkPolicy(open, comp))
			golden.Assert(t, "networkpolicy-"+comp+"-restricted", desiredNetworkPolicy(restricted, comp))
		})
	}
}

// allowedFrom returns the components of cluster "demo" a policy lets in on
// the HTTP port ("*" for anyone).
func allowedFrom(p *networkingv1.NetworkPolicy) []string {
	var out []string
	for _, r := range p.Spec.Ingress {
		if r.Ports[0].Port.StrVal != render.HTTPPortName {
			continue
		}
		if len(r.From) == 0 {
			out = append(out, "*")
		}
		for _, f := range r.From {
			if f.PodSelector != nil && f.NamespaceSelector == nil && f.PodSelector.MatchLabels[render.LabelInstance] == "demo" {
				out = append(out, f.PodSelector.MatchLabels[render.LabelComponent])
			}
		}
	}
	return out
}

// Who may talk to whom: clients reach gateways; gateways reach user and
// message; message reaches sequence; nothing else of the cluster and nothing
// outside it reaches the services. (While the metrics port is the HTTP port,
// the monitoring rule also opens it to the monitoring namespaces; that rule
// is checked separately.)
func TestNetworkPoliciesLetOnlyTheClustersCallersIn(t *testing.T) {
	s := newScope(sampleCluster(), render.Options{})
	tests := []struct {
		give string
		want []string
	}{
		{give: render.Gateway, want: []string{"*"}},
		{give: render.User, want: []string{render.Gateway}},
		{give: render.Message, want: []string{render.Gateway}},
		{give: render.Sequence, want: []string{render.Message}},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			p := desiredNetworkPolicy(s, tt.give)
			if got := allowedFrom(p); !slices.Equal(got, tt.want) {
				t.Errorf("%s lets in %v, want %v", tt.give, got, tt.want)
			}
			if got := p.Spec.PodSelector.MatchLabels; got[render.LabelInstance] != "demo" || got[render.LabelComponent] != tt.give {
				t.Errorf("selects %v, want the %s pods of demo", got, tt.give)
			}
			if !slices.Equal(p.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
				t.Errorf("policy types %v: egress must stay open without restrictEgress", p.Spec.PolicyTypes)
			}
			mon := p.Spec.Ingress[len(p.Spec.Ingress)-1]
			if mon.Ports[0].Port.StrVal != render.MetricsPortName || mon.From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "monitoring" {
				t.Errorf("metrics rule %+v: want port %s from the monitoring namespace", mon, render.MetricsPortName)
			}
		})
	}
}

// With restrictEgress, each component may reach DNS, its callees in the
// cluster and the configured dependencies, nothing else.
func TestRestrictEgressAllowsDNSCalleesAndDependenciesOnly(t *testing.T) {
	s := restrictedCluster()
	for _, comp := range networkPolicyComponents() {
		p := desiredNetworkPolicy(s, comp)
		if !slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			t.Fatalf("%s: no Egress policy type", comp)
		}
		var callees []string
		for _, r := range p.Spec.Egress {
			for _, to := range r.To {
				if to.PodSelector != nil && to.PodSelector.MatchLabels[render.LabelInstance] == "demo" {
					callees = append(callees, to.PodSelector.MatchLabels[render.LabelComponent])
				}
			}
		}
		want := map[string][]string{render.Gateway: {render.Message, render.User}, render.Message: {render.Sequence}}[comp]
		if !slices.Equal(callees, want) {
			t.Errorf("%s reaches %v in the cluster, want %v", comp, callees, want)
		}
		if dns := p.Spec.Egress[0]; len(dns.To) != 0 || dns.Ports[0].Port.IntVal != 53 {
			t.Errorf("%s: first egress rule %+v, want DNS", comp, dns)
		}
		if got := len(p.Spec.Egress) - 1 - min(len(want), 1); got != 2 {
			t.Errorf("%s: %d dependency rules, want the 2 configured", comp, got)
		}
	}
}

// The policies name ports that the pods expose, and the monitoring rule
// covers the port the probes and /metrics use: when the processes get a
// separate internal port, this fails until the policies follow it.
func TestNetworkPolicyPortsAreThePodsPorts(t *testing.T) {
	s := newScope(sampleCluster(), render.Options{})
	ports := map[string]bool{}
	metricsPort := ""
	for _, p := range render.ContainerPorts() {
		ports[p.Name] = true
		if p.Name == render.MetricsPortName {
			metricsPort = fmt.Sprint(p.ContainerPort)
		}
	}
	liveness, readiness := render.Probes()
	for _, probe := range []*corev1.Probe{liveness, readiness} {
		if got := probe.HTTPGet.Port.StrVal; got != render.MetricsPortName {
			t.Errorf("probes use port %q, the monitoring rule %q", got, render.MetricsPortName)
		}
	}
	d := desiredDeployment(s, render.Sequence)
	if got := d.Spec.Template.Annotations["prometheus.io/port"]; got != metricsPort {
		t.Errorf("metrics scraped on port %s, the monitoring rule opens %q (= %q)", got, render.MetricsPortName, metricsPort)
	}
	for _, comp := range networkPolicyComponents() {
		for _, r := range desiredNetworkPolicy(s, comp).Spec.Ingress {
			for _, p := range r.Ports {
				if !ports[p.Port.StrVal] {
					t.Errorf("%s: ingress on port %q, which no container exposes (%v)", comp, p.Port.StrVal, ports)
				}
			}
		}
	}
}
