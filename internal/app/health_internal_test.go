package app

import (
	"net"
	"strings"
	"testing"
)

func TestNameServersReachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	hold, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := hold.Addr().String()
	hold.Close()

	if err := nameServersReachable(down + ";" + ln.Addr().String())(t.Context()); err != nil {
		t.Errorf("one of two name servers answers: %v, want reachable", err)
	}
	err = nameServersReachable(down)(t.Context())
	if err == nil || !strings.Contains(err.Error(), "no name server answers") {
		t.Errorf("no name server answers: %v, want an error", err)
	}
	if err := nameServersReachable(" ")(t.Context()); err == nil {
		t.Error("an empty list is reachable")
	}
}
