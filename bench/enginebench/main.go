// Command enginebench is a measurement prototype: a least-connections HTTP/1.1
// reverse proxy built several ways, so that scripts/bench-engines (and
// docs/engine-prototype.md, which reports its figures) can show what a
// different HTTP engine would gain over net/http and which part of net/http
// costs what. It is not part of the balancer, which never imports or runs it;
// nothing here is hardened for production (see "raw" below).
//
// Modes (-mode):
//
//	nethttp                 httputil.ReverseProxy + http.Transport on http.Server:
//	                        the floor of the balancer's current engine.
//	nethttp-lean-transport  the same server and ReverseProxy, with a minimal
//	                        RoundTripper that does the upstream round trip on
//	                        the handler's goroutine over a pool of idle conns
//	                        (no writeLoop/readLoop hand-offs).
//	raw                     a minimal hand-written HTTP/1.1 engine: one goroutine
//	                        per client connection, no per-request goroutine, no
//	                        allocation per request in steady state. Requests and
//	                        responses must be framed by Content-Length (or have
//	                        no body); chunked messages get 501/502, 100-continue,
//	                        upgrades, HTTP/2 and timeouts are not handled.
//	idle-clients            not a proxy: opens -conns keep-alive connections to
//	                        -target, sends one GET on each, reads the answer,
//	                        prints "ready N" and holds them open until killed
//	                        (to measure the proxy's memory per idle connection).
//
// Usage:
//
//	enginebench -mode raw -listen 127.0.0.1:18080 -backends 127.0.0.1:18001,127.0.0.1:18002 [-pprof 127.0.0.1:16060]
//	enginebench -mode idle-clients -target 127.0.0.1:18080 -conns 10000
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof" // served on -pprof only
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// backend is one upstream with its in-flight count (least-connections).
type backend struct {
	addr     string
	inflight atomic.Int64
	pool     rawPool // the raw engine's idle upstream conns
}

// balancer picks the backend with the fewest requests in flight; ties go
// round-robin from a rotating start.
type balancer struct {
	backends []*backend
	next     atomic.Uint32
}

func newBalancer(addrs []string) *balancer {
	b := &balancer{}
	for _, a := range addrs {
		b.backends = append(b.backends, &backend{addr: a})
	}
	return b
}

// pick returns the least-loaded backend with its count already raised; the
// caller must call done.
func (b *balancer) pick() *backend {
	n := len(b.backends)
	start := int(b.next.Add(1)) % n
	best := b.backends[start]
	bestN := best.inflight.Load()
	for i := 1; i < n; i++ {
		c := b.backends[(start+i)%n]
		if v := c.inflight.Load(); v < bestN {
			best, bestN = c, v
		}
	}
	best.inflight.Add(1)
	return best
}

func (b *backend) done() { b.inflight.Add(-1) }

func main() {
	mode := flag.String("mode", "nethttp", "nethttp | nethttp-lean-transport | raw | idle-clients")
	listen := flag.String("listen", "127.0.0.1:18080", "proxy listen address")
	backends := flag.String("backends", "", "comma-separated host:port list")
	pprofAddr := flag.String("pprof", "", "serve /debug/pprof/ on this address (empty: off)")
	target := flag.String("target", "", "idle-clients: proxy address")
	conns := flag.Int("conns", 10000, "idle-clients: connections to open")
	flag.Parse()

	if *mode == "idle-clients" {
		if err := idleClients(*target, *conns, os.Stdout); err != nil {
			log.Fatal(err)
		}
		select {}
	}
	var addrs []string
	for _, a := range strings.Split(*backends, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		log.Fatal("enginebench: -backends is empty")
	}
	if *pprofAddr != "" {
		go func() { log.Println(http.ListenAndServe(*pprofAddr, nil)) }()
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(serve(*mode, ln, newBalancer(addrs)))
}

// serve runs the proxy of the given mode on ln until ln fails.
func serve(mode string, ln net.Listener, lb *balancer) error {
	switch mode {
	case "nethttp":
		return newHTTPServer(newNetHTTPHandler(lb, newStdTransport())).Serve(ln)
	case "nethttp-lean-transport":
		return newHTTPServer(newNetHTTPHandler(lb, newLeanTransport())).Serve(ln)
	case "raw":
		return serveRaw(ln, lb)
	}
	return fmt.Errorf("enginebench: unknown mode %q", mode)
}

func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		ErrorLog: log.New(discard{}, "", 0)}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
