//go:build unix

package proxy

import (
	"net"
	"syscall"
)

// probe looks at an idle connection's socket without reading from it. It
// is made once per connection, with its callback bound, so that a check,
// made before every reuse, allocates nothing.
type probe struct {
	rc   syscall.RawConn // nil: not a socket (tests' pipes)
	peek func(fd uintptr) bool
	n    int
	err  error
}

func newProbe(c net.Conn) *probe {
	p := &probe{}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			p.rc = rc
		}
	}
	p.peek = p.recv
	return p
}

func (p *probe) recv(fd uintptr) bool {
	var b [1]byte
	p.n, _, p.err = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return true
}

// alive reports whether the connection is still open and silent: a peek
// that must not wait finds nothing (EAGAIN). A closed connection reads end
// of file, and a backend has nothing to say before it is asked, so a byte
// waiting is a stray one. Connections that are not sockets count as alive.
func (p *probe) alive() bool {
	if p.rc == nil {
		return true
	}
	if err := p.rc.Read(p.peek); err != nil {
		return false
	}
	return p.n <= 0 && (p.err == syscall.EAGAIN || p.err == syscall.EWOULDBLOCK)
}
