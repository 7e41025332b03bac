package imcluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"

	imv1 "github.com/imkube/imkube/api/v1alpha1"
	"github.com/imkube/imkube/operator/internal/render"
	"github.com/imkube/imkube/operator/internal/secrets"
	"github.com/imkube/imkube/operator/rocketmq"
)

// reconcileDependencies checks the referenced Secrets and the RocketMQ
// topics. Missing dependencies are recorded in the scope
// (DependenciesReady=False), not returned as an error: the workloads are
// still applied, and the check is retried after RetryInterval. A cluster
// whose dependencies are there is checked again after ResyncInterval.
func (r *Reconciler) reconcileDependencies(ctx context.Context, s *scope) (ctrl.Result, error) {
	s.secrets = secrets.NewReader(r.APIReader, s.cluster.Namespace) // each Secret read once per reconcile
	if err := r.hashSecrets(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.checkDependencies(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	if s.depErr != nil {
		log.FromContext(ctx).Info("dependencies not ready; retrying", "reason", s.depReason,
			"error", s.depErr.Error(), "after", r.RetryInterval)
		return ctrl.Result{RequeueAfter: r.RetryInterval}, nil
	}
	return ctrl.Result{RequeueAfter: r.ResyncInterval}, nil
}

// hashSecrets reads the Secret keys each component takes as environment
// variables and records their fingerprint for the pod templates: a changed
// DSN or Redis password rolls the pods that read it (the Secret watch in
// SetupWithManager brings the change here).
func (r *Reconciler) hashSecrets(ctx context.Context, s *scope) error {
	for _, comp := range components() {
		vals, err := s.secrets.Read(ctx, render.SecretEnvRefs(s.cluster, comp))
		if err != nil {
			return err
		}
		s.secretsHash[comp] = secrets.Hash(vals)
	}
	return nil
}

// checkDependencies records missing Secrets or keys and a failed topic
// check in s.depErr; it returns an error only when it could not tell.
func (r *Reconciler) checkDependencies(ctx context.Context, s *scope) error {
	c := s.cluster
	type secretRef struct {
		what string
		ref  corev1.SecretKeySelector
	}
	refs := []secretRef{{"MySQL DSN", c.Spec.Dependencies.MySQL.DSNSecretRef}}
	if p := c.Spec.Dependencies.Redis.PasswordSecretRef; p != nil {
		refs = append(refs, secretRef{"Redis password", *p})
	}
	if a := c.Spec.Auth.SecretRef; a != nil {
		refs = append(refs, secretRef{"auth", corev1.SecretKeySelector{LocalObjectReference: *a, Key: render.JWTKeyKey}})
	}
	var missing []string
	for _, x := range refs {
		if x.ref.Optional != nil && *x.ref.Optional {
			continue
		}
		sec, err := s.secrets.Get(ctx, x.ref.Name)
		switch {
		case err != nil:
			return fmt.Errorf("%s Secret: %w", x.what, err)
		case sec == nil:
			missing = append(missing, fmt.Sprintf("%s Secret %q not found", x.what, x.ref.Name))
		default:
			if _, ok := sec.Data[x.ref.Key]; !ok {
				missing = append(missing, fmt.Sprintf("%s Secret %q has no key %q", x.what, x.ref.Name, x.ref.Key))
			}
		}
	}
	if len(missing) > 0 {
		s.depErr, s.depReason = errors.New(strings.Join(missing, "; ")), imv1.ReasonSecretNotFound
		return nil
	}

	rmq := c.Spec.Dependencies.RocketMQ
	var topics []rocketmq.Topic
	for _, t := range s.topics() {
		topics = append(topics, rocketmq.Topic{Name: t.Name, Queues: queues(t)})
	}
	target := rocketmq.Target{Namespace: c.Namespace, NameServers: rmq.NameServers, BrokerAddresses: rmq.BrokerAddresses}
	// Owned-object events reconcile often during rollouts; a successful topic
	// check of the same target is trusted for ResyncInterval.
	key := fmt.Sprintf("%s/%s %v %v", c.Namespace, c.Name, target, topics)
	if r.topicChecks.fresh(key, r.ResyncInterval) {
		return nil
	}
	created, err := r.Topics.EnsureTopics(ctx, target, topics)
	if err == nil {
		r.topicChecks.ok(key)
	}
	if len(created) > 0 {
		s.topicCreated = created
		r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, "TopicsCreated", "EnsureTopics",
			"created RocketMQ topics %s", strings.Join(created, ", "))
	}
	if err != nil {
		s.depErr, s.depReason = err, imv1.ReasonTopicsNotReady
	}
	return nil
}

// checkCache remembers recent successful dependency checks.
type checkCache struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (c *checkCache) fresh(key string, ttl time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.last[key]
	return ok && time.Since(t) < ttl
}

func (c *checkCache) ok(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[string]time.Time{}
	}
	for k, t := range c.last { // bounded: drop entries of clusters gone quiet
		if time.Since(t) > time.Hour {
			delete(c.last, k)
		}
	}
	c.last[key] = time.Now()
}
