package accessbench

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// NullReply is what the null responder writes to every request.
var NullReply = []byte("1\n")

// oobSpace is room for one SCM_RIGHTS cmsg with a few fds; extra fds are
// closed, never kept.
var oobSpace = syscall.CmsgSpace(4 * 4)

// ServeNull answers every connection accepted on ln with NullReply, without
// looking at the request: it reads one message (up to 1024 bytes plus
// SCM_RIGHTS), closes every fd that came with it, writes the reply in one
// write and closes the connection. A connection that sends nothing within
// 10 s is closed unanswered, as Dovecot's tcpwrap does.
//
// It uses the standard net package (one goroutine per connection, netpoller
// reads), like an idiomatic Go service, so it is the floor for a service
// built that way. ServeNull returns nil after ctx is cancelled (it closes
// ln), or the error that stopped Accept. It is safe to call once per ln.
func ServeNull(ctx context.Context, ln *net.UnixListener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		wg.Go(func() { answerNull(c) })
	}
}

func answerNull(c *net.UnixConn) {
	defer c.Close()
	buf := make([]byte, 1024+oobSpace)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, oobn, _, _, err := c.ReadMsgUnix(buf[:1024], buf[1024:])
	closeRights(buf[1024 : 1024+oobn])
	if err != nil || n == 0 {
		return
	}
	c.Write(NullReply)
}

// closeRights closes every fd carried by SCM_RIGHTS messages in oob.
func closeRights(oob []byte) {
	if len(oob) == 0 {
		return
	}
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, m := range msgs {
		fds, err := syscall.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
}

// ServeNullRaw is ServeNull built on blocking system calls: threads
// goroutines (0 means 4) each loop accept4, recvmsg, close the fds, write,
// close, on the listening socket lfd, which must be in blocking mode. It
// has no per-connection timeout and no netpoller, so it is the floor for
// any service on this machine. It returns nil after ctx is cancelled
// (it shuts lfd down and closes it).
func ServeNullRaw(ctx context.Context, lfd int, threads int) error {
	if threads <= 0 {
		threads = 4
	}
	var closing sync.Once
	stop := context.AfterFunc(ctx, func() {
		closing.Do(func() { syscall.Shutdown(lfd, syscall.SHUT_RDWR) })
	})
	defer stop()
	errc := make(chan error, threads)
	var wg sync.WaitGroup
	for range threads {
		wg.Go(func() {
			buf := make([]byte, 1024)
			oob := make([]byte, oobSpace)
			for {
				nfd, _, err := syscall.Accept4(lfd, syscall.SOCK_CLOEXEC)
				if err != nil {
					if err == syscall.EINTR || err == syscall.ECONNABORTED {
						continue
					}
					if ctx.Err() == nil {
						errc <- err
						closing.Do(func() { syscall.Shutdown(lfd, syscall.SHUT_RDWR) })
					}
					return
				}
				n, oobn, _, _, err := syscall.Recvmsg(nfd, buf, oob, 0)
				if err == nil {
					closeRights(oob[:oobn])
					if n > 0 {
						syscall.Write(nfd, NullReply)
					}
				}
				syscall.Close(nfd)
			}
		})
	}
	wg.Wait()
	syscall.Close(lfd)
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}
