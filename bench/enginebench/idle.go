package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// idleClients opens n keep-alive connections to target (64 at a time),
// sends one GET on each and reads the whole answer, then writes "ready N"
// (N connections that succeeded) to w and returns, leaving them open for
// the caller to hold.
func idleClients(target string, n int, w io.Writer) error {
	if target == "" {
		return fmt.Errorf("enginebench: -target is empty")
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
		sem   = make(chan struct{}, 64)
		first error
	)
	for range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := openIdle(target)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = err
				}
				return
			}
			conns = append(conns, c)
		})
	}
	wg.Wait()
	idleHeld = conns
	fmt.Fprintf(w, "ready %d\n", len(conns))
	if first != nil {
		fmt.Fprintf(w, "first error: %v\n", first)
	}
	return nil
}

// idleHeld keeps the idle connections reachable.
var idleHeld []net.Conn

func openIdle(target string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", target, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+target+"\r\n\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err == nil && resp.Close {
		err = fmt.Errorf("enginebench: %s closed the connection", target)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
