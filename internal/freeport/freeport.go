package freeport

import (
	"errors"
	"net"
)

// Loopback returns a TCP port on 127.0.0.1 that was free a moment ago: the
// kernel's choice for a listener on port 0, closed again at once.
func Loopback() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("freeport: no TCP address")
	}
	return addr.Port, nil
}
