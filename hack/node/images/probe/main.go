// Command probe checks the network from inside a pod of the local real node
// (hack/node.sh check): each argument is one check, run in order, and the
// first failure exits 1.
//
//	dns:NAME          resolve NAME with the pod's resolver (cluster DNS), print the addresses
//	http:URL          GET URL, want a 2xx status, print the status and the first bytes of the body
//	https:URL         the same over TLS, trusting the pod's service-account CA (the API server)
//	tcp:HOST:PORT     open a TCP connection
//	blocked:HOST:PORT want a TCP connection attempt to fail: time out or be refused
//	                  (a NetworkPolicy drops or rejects the SYN; pick a port the
//	                  target listens on); a connection that opens is retried, since
//	                  a new pod's policy may lag, and is a failure after 30 s
//	redis:HOST:PORT   send PING, want +PONG
//	mysql:HOST:PORT   want the server's handshake (not an error packet such as "host not allowed")
//	rocketmq:HOST:PORT  ask the name server for the cluster (GET_BROKER_CLUSTER_INFO) and
//	                  connect to every broker address it advertises
//	sleep:DURATION    sleep (e.g. keep a pod running: sleep:1h)
//
// Every network check retries for up to 30 s (DNS records and iptables rules
// may lag a new Service by a few seconds).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe dns:NAME|http:URL|tcp:HOST:PORT|redis:HOST:PORT|sleep:DURATION ...")
		os.Exit(2)
	}
	for _, arg := range os.Args[1:] {
		kind, target, ok := strings.Cut(arg, ":")
		if !ok {
			fail(arg, fmt.Errorf("want KIND:TARGET"))
		}
		if kind == "sleep" {
			d, err := time.ParseDuration(target)
			if err != nil {
				fail(arg, err)
			}
			time.Sleep(d)
			continue
		}
		var out string
		var err error
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, err = check(kind, target)
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		if err != nil {
			fail(arg, err)
		}
		fmt.Printf("ok %s %s\n", arg, out)
	}
}

// client trusts the service-account CA when the pod has one (https to the API server).
var client = func() *http.Client {
	pem, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
	if err != nil {
		return http.DefaultClient
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return &http.Client{Transport: tr}
}()

func fail(arg string, err error) {
	fmt.Printf("FAIL %s: %v\n", arg, err)
	os.Exit(1)
}

func check(kind, target string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	switch kind {
	case "dns":
		addrs, err := net.DefaultResolver.LookupHost(ctx, target)
		if err != nil {
			return "", err
		}
		return strings.Join(addrs, ","), nil
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, kind+":"+target, nil)
		if err != nil {
			return "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		if resp.StatusCode/100 != 2 {
			return "", fmt.Errorf("status %s: %q", resp.Status, body)
		}
		return fmt.Sprintf("%s %q", resp.Status, strings.TrimSpace(string(body))), nil
	case "rocketmq":
		return rocketmqBrokers(ctx, target)
	case "blocked":
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		conn, err := d.DialContext(dctx, "tcp", target)
		if err == nil {
			conn.Close()
			return "", fmt.Errorf("connected to %s", conn.RemoteAddr())
		}
		// A policy drops the SYN (timeout) or rejects it (kube-router answers
		// ICMP port unreachable: refused); a DNS failure is not a policy.
		if errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err) || errors.Is(err, syscall.ECONNREFUSED) {
			return "not connected: " + err.Error(), nil
		}
		return "", fmt.Errorf("want a timeout or a refusal, got %w", err)
	case "tcp", "redis", "mysql":
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			return "", err
		}
		defer conn.Close()
		if kind == "tcp" {
			return conn.RemoteAddr().String(), nil
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if kind == "mysql" {
			// A packet: 3-byte length, sequence number, payload; the handshake
			// starts with protocol version 10, an error packet with 0xff.
			hdr := make([]byte, 4)
			if _, err := io.ReadFull(conn, hdr); err != nil {
				return "", err
			}
			payload := make([]byte, int(hdr[0])|int(hdr[1])<<8|int(hdr[2])<<16)
			if _, err := io.ReadFull(conn, payload); err != nil {
				return "", err
			}
			if len(payload) < 2 || payload[0] != 10 {
				return "", fmt.Errorf("no handshake: %q", payload)
			}
			version, _, _ := strings.Cut(string(payload[1:]), "\x00")
			return "handshake " + version, nil
		}
		if _, err := io.WriteString(conn, "PING\r\n"); err != nil {
			return "", err
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			return "", err
		}
		if strings.TrimSpace(line) != "+PONG" {
			return "", fmt.Errorf("reply %q", line)
		}
		return "+PONG", nil
	}
	return "", fmt.Errorf("unknown check %q", kind)
}

var addrRE = regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}:\d{1,5}\b`)

// rocketmqBrokers sends one RocketMQ remoting request (JSON header, code 106
// GET_BROKER_CLUSTER_INFO) to the name server and dials every broker address in
// the answer: the addresses clients of this pod would use.
func rocketmqBrokers(ctx context.Context, namesrv string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", namesrv)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	header := []byte(`{"code":106,"flag":0,"language":"GO","opaque":1,"serializeTypeCurrentRPC":"JSON","version":317}`)
	frame := make([]byte, 8, 8+len(header))
	binary.BigEndian.PutUint32(frame[0:4], uint32(4+len(header)))
	binary.BigEndian.PutUint32(frame[4:8], uint32(len(header))) // serialize type 0 (JSON) in the high byte
	if _, err := conn.Write(append(frame, header...)); err != nil {
		return "", err
	}
	lenBuf := make([]byte, 4)
	if _, err := io.ReadFull(conn, lenBuf); err != nil {
		return "", err
	}
	n := binary.BigEndian.Uint32(lenBuf)
	if n < 4 || n > 1<<20 {
		return "", fmt.Errorf("bad frame length %d", n)
	}
	resp := make([]byte, n)
	if _, err := io.ReadFull(conn, resp); err != nil {
		return "", err
	}
	hlen := binary.BigEndian.Uint32(resp[0:4]) & 0xffffff
	if int(hlen) > len(resp)-4 {
		return "", fmt.Errorf("bad header length %d", hlen)
	}
	body := resp[4+hlen:]
	addrs := addrRE.FindAllString(string(body), -1)
	if len(addrs) == 0 {
		return "", fmt.Errorf("no broker address in %q (header %q)", body, resp[4:4+hlen])
	}
	for _, a := range addrs {
		c, err := d.DialContext(ctx, "tcp", a)
		if err != nil {
			return "", fmt.Errorf("advertised broker %s: %w", a, err)
		}
		c.Close()
	}
	return "brokers " + strings.Join(addrs, ","), nil
}
