//go:build !unix

package proxy

import "net"

// probe cannot look at the socket here: a closed connection is found out by
// the request (and retried once), and stray bytes that came after the
// answer's end are not seen before reuse.
type probe struct{}

func newProbe(net.Conn) *probe { return &probe{} }

func (*probe) alive() bool { return true }
