// Package healthcheck lets a FROM-scratch image check its own health.
//
// lbscale's images hold one static binary and nothing else (no shell, no
// curl), so a Docker HEALTHCHECK cannot run a probe tool: the binary probes
// itself. The convention every lbscale command follows is that its main
// starts with
//
//	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
//		os.Exit(healthcheck.Run(healthcheck.LocalURL(os.Getenv("LISTEN_ADDR"), ":8080")))
//	}
//
// (the balancer and the scaler pass ADMIN_ADDR and ":9090"), so that an image
// or a compose file can say HEALTHCHECK CMD ["/<binary>", "healthcheck"].
// The probe runs in the same container as the server, reads the same
// environment, and therefore finds the same port without being told.
package healthcheck

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// Timeout bounds one probe: shorter than Docker's default health-check
// timeout (30 s) so that a hung server is reported by the probe's own
// message rather than by Docker killing it.
const Timeout = 2 * time.Second

// Run GETs url and returns the process exit status for a health check: 0
// when the answer is 2xx, 1 otherwise (Docker reads any other status as
// "reserved"). Why it failed goes to stderr, which Docker keeps in the
// container's health log.
func Run(url string) int {
	return run(url, Timeout, os.Stderr)
}

func run(url string, timeout time.Duration, errOut io.Writer) int {
	c := &http.Client{Timeout: timeout}
	res, err := c.Get(url)
	if err != nil {
		fmt.Fprintf(errOut, "healthcheck: %v\n", err)
		return 1
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4096))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		fmt.Fprintf(errOut, "healthcheck: GET %s: %s\n", url, res.Status)
		return 1
	}
	return 0
}

// LocalURL is the /healthz URL of a server listening on addr in the same
// network namespace, or on def when addr is empty (the program's default).
// A wildcard or empty host (":8080", "0.0.0.0:8080", "[::]:8080") is probed
// on 127.0.0.1; a specific host is probed as given, since a server bound to
// one address does not answer on loopback. An addr that is not host:port
// yields a URL that fails, so a misconfigured container reads unhealthy.
func LocalURL(addr, def string) string {
	if addr == "" {
		addr = def
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + "/healthz"
	}
	switch host {
	case "", "0.0.0.0", "::":
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz"
}
