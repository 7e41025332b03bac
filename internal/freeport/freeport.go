// Package freeport picks a loopback TCP port for a process that will bind
// it later (a server started as a child process).
//
// Asking the kernel for port 0 and closing the listener hands out a port
// from the ephemeral range, which any outgoing connection on the machine
// may take before the child binds it ("address already in use"). Ports
// picked here come from below that range, where only explicit binds land,
// and are never handed out twice by one process.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the bottom of the band; the project's fixed ports (brokers,
// control plane) are all below it.
const lowest = 21000

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Port returns a port of 127.0.0.1 that could be bound just now.
func Port() (int, error) {
	top := ephemeralLow() - 1
	if top-lowest < 1000 {
		// A machine whose ephemeral range starts low: fall back to the kernel.
		return kernelPort()
	}
	mu.Lock()
	defer mu.Unlock()
	for range 200 {
		p := lowest + rand.IntN(top-lowest+1)
		if given[p] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		given[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("freeport: no free port in %d-%d after 200 tries", lowest, top)
}

// Addr is Port as "127.0.0.1:port".
func Addr() (string, error) {
	p, err := Port()
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(p), nil
}

func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768 // Linux's default
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

func kernelPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
