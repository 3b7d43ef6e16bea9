package main

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"sync"
	"time"
)

// The raw engine: one goroutine per client connection reads a request head
// by hand, forwards it on a pooled upstream conn with Content-Length
// framing, relays the response head and body, and returns the upstream
// conn. It allocates nothing per request once its buffers are sized.
//
// Deliberately missing (this is a measurement prototype): chunked request
// bodies (501) and chunked responses (502), Expect: 100-continue handling
// (the body is forwarded at once), upgrades (Upgrade is dropped), HTTP/2,
// pipelined requests with bodies beyond what is buffered, and every
// timeout. Header lines longer than rawBufSize get 431.

const (
	rawBufSize        = 8 << 10
	rawMaxIdlePerHost = 256
)

// rawPool is a backend's stack of idle upstream conns.
type rawPool struct {
	mu   sync.Mutex
	idle []*rawUp
}

type rawUp struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

func (p *rawPool) get(addr string) (*rawUp, bool, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		u := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return u, true, nil
	}
	p.mu.Unlock()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, false, err
	}
	return &rawUp{c: c, br: bufio.NewReaderSize(c, rawBufSize), bw: bufio.NewWriterSize(c, rawBufSize)}, false, nil
}

func (p *rawPool) put(u *rawUp) {
	p.mu.Lock()
	if len(p.idle) < rawMaxIdlePerHost {
		p.idle = append(p.idle, u)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	u.c.Close()
}

func serveRaw(ln net.Listener, lb *balancer) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return err
		}
		go (&rawConn{c: c, lb: lb}).serve()
	}
}

// rawConn is one client connection and its reusable buffers.
type rawConn struct {
	c    net.Conn
	lb   *balancer
	br   *bufio.Reader
	bw   *bufio.Writer
	ip   []byte
	out  []byte // request head for the backend
	head []byte // response head for the client
}

var errRaw = errors.New("enginebench: bad message")

func (rc *rawConn) serve() {
	defer rc.c.Close()
	if a, ok := rc.c.RemoteAddr().(*net.TCPAddr); ok {
		rc.ip = []byte(a.IP.String())
	}
	rc.br = bufio.NewReaderSize(rc.c, rawBufSize)
	rc.bw = bufio.NewWriterSize(rc.c, rawBufSize)
	rc.out = make([]byte, 0, 1024)
	rc.head = make([]byte, 0, 1024)
	for rc.serveOne() {
	}
}

// serveOne handles one request; false closes the client conn.
func (rc *rawConn) serveOne() bool {
	br := rc.br
	// Request line (leading empty lines are allowed, RFC 9112 2.2).
	var line []byte
	for {
		l, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				rc.fail(414, "URI Too Long")
			}
			return false
		}
		if line = trimEOL(l); len(line) > 0 {
			break
		}
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return rc.fail(400, "Bad Request")
	}
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= 0 {
		return rc.fail(400, "Bad Request")
	}
	sp2 += sp1 + 1
	method, target, version := line[:sp1], line[sp1+1:sp2], line[sp2+1:]
	var http10 bool
	switch string(version) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		http10 = true
	default:
		return rc.fail(505, "HTTP Version Not Supported")
	}
	if bytes.IndexByte(target, ' ') >= 0 || hasCTL(line) {
		return rc.fail(400, "Bad Request")
	}
	keepAlive := !http10
	isHead := string(method) == "HEAD"
	out := append(rc.out[:0], method...)
	out = append(out, ' ')
	out = append(out, target...)
	out = append(out, " HTTP/1.1\r\n"...)

	var cl int64
	haveCL := false
	for {
		l, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				rc.fail(431, "Request Header Fields Too Large")
			}
			return false
		}
		h := trimEOL(l)
		if len(h) == 0 {
			break
		}
		colon := bytes.IndexByte(h, ':')
		// No obs-fold, no whitespace before the colon (RFC 9112 5.1-5.2).
		if colon <= 0 || h[0] == ' ' || h[0] == '\t' || h[colon-1] == ' ' || h[colon-1] == '\t' || hasCTL(h) {
			return rc.fail(400, "Bad Request")
		}
		name, value := h[:colon], trimOWS(h[colon+1:])
		switch {
		case eqFold(name, "content-length"):
			n, ok := parseUint(value)
			if !ok || (haveCL && n != cl) {
				return rc.fail(400, "Bad Request")
			}
			cl, haveCL = n, true
		case eqFold(name, "transfer-encoding"):
			return rc.fail(501, "Not Implemented")
		case eqFold(name, "connection"):
			if hasToken(value, "close") {
				keepAlive = false
			} else if http10 && hasToken(value, "keep-alive") {
				keepAlive = true
			}
			continue
		case eqFold(name, "keep-alive"), eqFold(name, "proxy-connection"), eqFold(name, "upgrade"), eqFold(name, "te"):
			continue
		}
		out = append(out, h...)
		out = append(out, '\r', '\n')
	}
	// A further X-Forwarded-For line combines with any earlier ones as
	// "prior, ip" (RFC 9110 5.3).
	out = append(out, "X-Forwarded-For: "...)
	out = append(out, rc.ip...)
	out = append(out, "\r\n\r\n"...)
	rc.out = out

	b := rc.lb.pick()
	ok := rc.forward(b, cl, isHead, keepAlive, http10)
	b.done()
	return ok && keepAlive
}

// forward sends rc.out and cl bytes of body to b and relays the answer.
func (rc *rawConn) forward(b *backend, cl int64, isHead, keepAlive, http10 bool) bool {
	for attempt := 0; ; attempt++ {
		u, reused, err := b.pool.get(b.addr)
		if err != nil {
			rc.fail(502, "Bad Gateway")
			return cl == 0
		}
		sentBody := false
		_, err = u.bw.Write(rc.out)
		if err == nil && cl > 0 {
			sentBody = true
			err = copyN(u.bw, rc.br, cl)
		}
		if err == nil {
			err = u.bw.Flush()
		}
		var status []byte
		if err == nil {
			status, err = readStatus(u.br)
		}
		if err != nil {
			u.c.Close()
			// An idle conn the backend closed fails before any answer:
			// retry once on a fresh one if no body was consumed.
			if reused && attempt == 0 && !sentBody {
				continue
			}
			rc.fail(502, "Bad Gateway")
			return false
		}
		reuse, ok := rc.relay(u, status, isHead, keepAlive, http10)
		if reuse {
			b.pool.put(u)
		} else {
			u.c.Close()
		}
		return ok
	}
}

// readStatus reads the status line of the first final (non-1xx) response,
// skipping interim ones; the slice is valid until the next read of br.
func readStatus(br *bufio.Reader) ([]byte, error) {
	for {
		l, err := br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		l = trimEOL(l)
		if len(l) < 12 || !bytes.HasPrefix(l, []byte("HTTP/1.")) || l[8] != ' ' {
			return nil, errRaw
		}
		if l[9] != '1' || (l[10] == '0' && l[11] == '1') {
			return l, nil // 101 is refused by the caller's header scan
		}
		for { // skip the interim response's headers
			h, err := br.ReadSlice('\n')
			if err != nil {
				return nil, err
			}
			if len(trimEOL(h)) == 0 {
				break
			}
		}
	}
}

// relay writes the response head and body to the client. reuse says the
// upstream conn is at a message boundary and may serve again; ok says the
// client conn may.
func (rc *rawConn) relay(u *rawUp, status []byte, isHead, keepAlive, http10 bool) (reuse, ok bool) {
	code := int(status[9]-'0')*100 + int(status[10]-'0')*10 + int(status[11]-'0')
	if code == 101 {
		rc.fail(502, "Bad Gateway")
		return false, false
	}
	head := append(rc.head[:0], status...)
	head = append(head, '\r', '\n')
	var cl int64
	haveCL, upClose := false, false
	for {
		l, err := u.br.ReadSlice('\n')
		if err != nil {
			rc.fail(502, "Bad Gateway")
			return false, false
		}
		h := trimEOL(l)
		if len(h) == 0 {
			break
		}
		colon := bytes.IndexByte(h, ':')
		if colon <= 0 {
			rc.fail(502, "Bad Gateway")
			return false, false
		}
		name, value := h[:colon], trimOWS(h[colon+1:])
		switch {
		case eqFold(name, "content-length"):
			n, ok := parseUint(value)
			if !ok || (haveCL && n != cl) {
				rc.fail(502, "Bad Gateway")
				return false, false
			}
			cl, haveCL = n, true
		case eqFold(name, "transfer-encoding"):
			rc.fail(502, "Bad Gateway") // chunked: not in the prototype
			return false, false
		case eqFold(name, "connection"):
			upClose = upClose || hasToken(value, "close")
			continue
		case eqFold(name, "keep-alive"):
			continue
		}
		head = append(head, h...)
		head = append(head, '\r', '\n')
	}
	bodyless := isHead || code == 204 || code == 304
	untilClose := !bodyless && !haveCL
	if untilClose || status[7] == '0' {
		keepAlive, upClose = false, true
	}
	if !keepAlive {
		head = append(head, "Connection: close\r\n"...)
	} else if http10 {
		head = append(head, "Connection: keep-alive\r\n"...)
	}
	head = append(head, '\r', '\n')
	rc.head = head
	if _, err := rc.bw.Write(head); err != nil {
		return false, false
	}
	var err error
	switch {
	case bodyless:
	case untilClose:
		err = copyAll(rc.bw, u.br)
	default:
		err = copyN(rc.bw, u.br, cl)
	}
	if err != nil {
		return false, false
	}
	// Pipelined requests already buffered are answered before a flush.
	if rc.br.Buffered() == 0 || !keepAlive {
		if rc.bw.Flush() != nil {
			return !upClose, false
		}
	}
	return !upClose, true
}

func (rc *rawConn) fail(code int, reason string) bool {
	bw := rc.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteByte(byte('0' + code/100))
	bw.WriteByte(byte('0' + code/10%10))
	bw.WriteByte(byte('0' + code%10))
	bw.WriteByte(' ')
	bw.WriteString(reason)
	bw.WriteString("\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	bw.Flush()
	return false
}
