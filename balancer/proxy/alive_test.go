//go:build unix

package proxy

import (
	"net"
	"testing"
	"time"

	"lbscale/internal/testenv"
)

// TestAlive: the probe tells an open, silent connection from one the other
// side closed or wrote to, without waiting.
func TestAlive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() (client, server net.Conn) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c, <-accepted
	}

	open, s1 := dial()
	defer open.Close()
	defer s1.Close()
	if !newProbe(open).alive() {
		t.Error("an open, silent connection reads as dead")
	}

	closed, s2 := dial()
	defer closed.Close()
	s2.Close()
	testenv.Eventually(t, 5*time.Second, "a connection closed by the other side still reads as alive", func() bool { return !newProbe(closed).alive() })

	spoke, s3 := dial()
	defer spoke.Close()
	defer s3.Close()
	_, _ = s3.Write([]byte("HTTP/1.1 408 Request Timeout\r\n\r\n"))
	testenv.Eventually(t, 5*time.Second, "a connection with unasked-for bytes still reads as reusable", func() bool { return !newProbe(spoke).alive() })
}
