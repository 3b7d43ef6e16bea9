package main

import (
	"bufio"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// newNetHTTPHandler is the nethttp modes' handler: least-connections over
// one httputil.ReverseProxy per backend, all sharing rt. The proxy keeps
// Host and adds X-Forwarded-For, like the raw engine; buffers are pooled
// as the balancer's proxy does.
func newNetHTTPHandler(lb *balancer, rt http.RoundTripper) http.Handler {
	proxies := make(map[*backend]*httputil.ReverseProxy, len(lb.backends))
	for _, b := range lb.backends {
		u := &url.URL{Scheme: "http", Host: b.addr}
		proxies[b] = &httputil.ReverseProxy{
			Rewrite: func(r *httputil.ProxyRequest) {
				r.SetURL(u)
				r.Out.Host = r.In.Host
				if ip, _, err := net.SplitHostPort(r.In.RemoteAddr); err == nil {
					if prior := r.In.Header["X-Forwarded-For"]; len(prior) > 0 {
						ip = joinComma(prior) + ", " + ip
					}
					r.Out.Header["X-Forwarded-For"] = []string{ip}
				}
			},
			Transport:  rt,
			BufferPool: bufPool{},
			ErrorLog:   log.New(discard{}, "", 0),
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := lb.pick()
		defer b.done()
		proxies[b].ServeHTTP(w, r)
	})
}

func joinComma(v []string) string {
	s := v[0]
	for _, x := range v[1:] {
		s += ", " + x
	}
	return s
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// bufPool is httputil.BufferPool over copyBufs.
type bufPool struct{}

func (bufPool) Get() []byte  { return *copyBufs.Get().(*[]byte) }
func (bufPool) Put(b []byte) { copyBufs.Put(&b) }

func newStdTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ResponseHeaderTimeout: 30 * time.Second,
	}
}

// leanTransport is a minimal HTTP/1.1 RoundTripper: per-host stacks of idle
// conns, the round trip done on the caller's goroutine (req.Write, then
// http.ReadResponse), the conn handed back when the body reaches EOF.
type leanTransport struct {
	mu    sync.Mutex
	pools map[string][]*leanConn
}

type leanConn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

const leanMaxIdlePerHost = 256

func newLeanTransport() *leanTransport { return &leanTransport{pools: map[string][]*leanConn{}} }

func (t *leanTransport) get(host string) (lc *leanConn, reused bool, err error) {
	t.mu.Lock()
	if p := t.pools[host]; len(p) > 0 {
		lc = p[len(p)-1]
		p[len(p)-1] = nil
		t.pools[host] = p[:len(p)-1]
		t.mu.Unlock()
		return lc, true, nil
	}
	t.mu.Unlock()
	c, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		return nil, false, err
	}
	return &leanConn{c: c, br: bufio.NewReaderSize(c, 4096), bw: bufio.NewWriterSize(c, 4096)}, false, nil
}

func (t *leanTransport) put(host string, lc *leanConn) {
	t.mu.Lock()
	if p := t.pools[host]; len(p) < leanMaxIdlePerHost {
		t.pools[host] = append(p, lc)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	lc.c.Close()
}

func (t *leanTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	for attempt := 0; ; attempt++ {
		lc, reused, err := t.get(host)
		if err != nil {
			return nil, err
		}
		resp, err := lc.roundTrip(req)
		if err == nil {
			resp.Body = &leanBody{rc: resp.Body, t: t, host: host, lc: lc,
				reusable: !resp.Close && !req.Close}
			return resp, nil
		}
		lc.c.Close()
		// A pooled conn the backend closed while idle fails before any
		// byte of answer; retry once on a fresh conn if there is no body
		// to replay.
		if !reused || attempt > 0 || (req.Body != nil && req.Body != http.NoBody) {
			return nil, err
		}
	}
}

func (lc *leanConn) roundTrip(req *http.Request) (*http.Response, error) {
	if err := req.Write(lc.bw); err != nil {
		return nil, err
	}
	if err := lc.bw.Flush(); err != nil {
		return nil, err
	}
	return http.ReadResponse(lc.br, req)
}

// leanBody returns the conn to the pool at EOF (or at Close after a full
// drain) when the response allows reuse, and closes it otherwise.
type leanBody struct {
	rc       io.ReadCloser
	t        *leanTransport
	host     string
	lc       *leanConn
	reusable bool
	done     bool
}

func (b *leanBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if errors.Is(err, io.EOF) {
		b.release(true)
	} else if err != nil {
		b.release(false)
	}
	return n, err
}

func (b *leanBody) Close() error {
	if b.done {
		return nil
	}
	// net/http's body drains to EOF on Close; a clean drain leaves the
	// conn at the next response.
	err := b.rc.Close()
	b.release(err == nil)
	return err
}

func (b *leanBody) release(ok bool) {
	if b.done {
		return
	}
	b.done = true
	if ok && b.reusable {
		b.t.put(b.host, b.lc)
	} else {
		b.lc.c.Close()
	}
}
