//go:build e2e

package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// kube runs kubectl and helm against one kubeconfig and namespace, the way a
// user would; every call has a deadline.
type kube struct {
	t          *testing.T
	kubeconfig string
	helm       string
	ns         string
}

// cmdTimeout bounds one kubectl/helm call that does not wait by itself.
const cmdTimeout = 60 * time.Second

// result is the outcome of one command.
type result struct {
	stdout, stderr string
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("err=%v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
}

// exec runs name with args (stdin optional) within timeout.
func (k *kube) exec(timeout time.Duration, stdin, name string, args ...string) result {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+k.kubeconfig)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s: timed out after %s: %w", name, strings.Join(args, " "), timeout, ctx.Err())
	}
	return result{stdout: out.String(), stderr: errb.String(), err: err}
}

// kubectl runs kubectl in the test namespace.
func (k *kube) kubectl(args ...string) result {
	k.t.Helper()
	return k.exec(cmdTimeout, "", "kubectl", append([]string{"-n", k.ns}, args...)...)
}

// kubectlIn runs kubectl in the test namespace with stdin.
func (k *kube) kubectlIn(stdin string, args ...string) result {
	k.t.Helper()
	return k.exec(cmdTimeout, stdin, "kubectl", append([]string{"-n", k.ns}, args...)...)
}

// must runs kubectl and fails the test on an error.
func (k *kube) must(args ...string) string {
	k.t.Helper()
	r := k.kubectl(args...)
	if r.err != nil {
		k.t.Fatalf("kubectl %s: %v", strings.Join(args, " "), r)
	}
	return r.stdout
}

// mustIn is must with stdin.
func (k *kube) mustIn(stdin string, args ...string) string {
	k.t.Helper()
	r := k.kubectlIn(stdin, args...)
	if r.err != nil {
		k.t.Fatalf("kubectl %s: %v", strings.Join(args, " "), r)
	}
	return r.stdout
}

// get decodes `kubectl get <args> -o json` into out; found is false when the
// object does not exist.
func (k *kube) get(out any, args ...string) (found bool, err error) {
	k.t.Helper()
	r := k.kubectl(append(append([]string{"get"}, args...), "-o", "json")...)
	if r.err != nil {
		if strings.Contains(r.stderr, "NotFound") || strings.Contains(r.stderr, "not found") {
			return false, nil
		}
		return false, fmt.Errorf("kubectl get %s: %w: %s", strings.Join(args, " "), r.err, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), out); err != nil {
		return false, fmt.Errorf("decode %s: %w", strings.Join(args, " "), err)
	}
	return true, nil
}

// mustGet is get that fails the test when the object is missing.
func (k *kube) mustGet(out any, args ...string) {
	k.t.Helper()
	found, err := k.get(out, args...)
	if err != nil {
		k.t.Fatal(err)
	}
	if !found {
		k.t.Fatalf("%s not found", strings.Join(args, " "))
	}
}

// wait runs `kubectl wait` with its own timeout (plus slack for the call).
func (k *kube) wait(timeout time.Duration, args ...string) {
	k.t.Helper()
	full := append([]string{"-n", k.ns, "wait", "--timeout", timeout.String()}, args...)
	r := k.exec(timeout+30*time.Second, "", "kubectl", full...)
	if r.err != nil {
		k.t.Fatalf("kubectl wait %s: %v", strings.Join(args, " "), r)
	}
}

// rollout waits for `kubectl rollout status` of a Deployment.
func (k *kube) rollout(timeout time.Duration, deploy string) {
	k.t.Helper()
	full := []string{"-n", k.ns, "rollout", "status", "deployment/" + deploy, "--timeout", timeout.String()}
	r := k.exec(timeout+30*time.Second, "", "kubectl", full...)
	if r.err != nil {
		k.t.Fatalf("kubectl rollout status %s: %v", deploy, r)
	}
}

// eventually polls check every second until it reports done or timeout passes;
// the last reason is in the failure message.
func eventually(t *testing.T, timeout time.Duration, desc string, check func() (done bool, reason string, err error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var reason string
	for {
		done, r, err := check()
		if err != nil {
			t.Fatalf("%s: %v", desc, err)
		}
		if done {
			return
		}
		reason = r
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s: %s", desc, timeout, reason)
		}
		time.Sleep(time.Second)
	}
}
