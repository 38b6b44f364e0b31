package accessd

import (
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Notifier sends sd_notify(3) state messages ("READY=1", "RELOADING=1",
// "STOPPING=1", "STATUS=...") to the service manager. It sends the same
// datagram as go-systemd's daemon.SdNotify, but to an address captured once
// at start-up, so that NOTIFY_SOCKET can be removed from the environment
// before any child process is started (daemon.SdNotify reads the variable
// at every call). The zero value and a nil *Notifier send nothing.
// It is safe for concurrent use.
type Notifier struct {
	// Addr is the notification socket path ("@name" for an abstract
	// socket), as in NOTIFY_SOCKET. Empty disables notifications.
	Addr string
}

// NotifierFromEnv returns a Notifier for $NOTIFY_SOCKET and unsets the
// variable. Without NOTIFY_SOCKET the Notifier sends nothing.
func NotifierFromEnv() *Notifier {
	n := &Notifier{Addr: os.Getenv("NOTIFY_SOCKET")}
	os.Unsetenv("NOTIFY_SOCKET")
	return n
}

// Notify sends state in one datagram. It reports whether a message was
// sent: false with a nil error when notifications are disabled. The error
// is the dial or write error.
func (n *Notifier) Notify(state string) (bool, error) {
	if n == nil || n.Addr == "" {
		return false, nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.Addr, Net: "unixgram"})
	if err != nil {
		return false, err
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(state)); err != nil {
		return false, err
	}
	return true, nil
}

// reloading returns the RELOADING=1 message with the MONOTONIC_USEC field
// that systemd's Type=notify-reload requires.
func reloading() string {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return "RELOADING=1\nMONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1000, 10)
}
