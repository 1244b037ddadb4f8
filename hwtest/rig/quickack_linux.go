package rig

import (
	"net"
	"syscall"
)

// quickAck turns delayed ACKs off again; Linux clears TCP_QUICKACK after a while, so it
// is renewed after every read.
func quickAck(c *net.TCPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
