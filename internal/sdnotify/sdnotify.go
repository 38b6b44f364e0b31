// Package sdnotify sends sd_notify(3) state messages to the service
// manager, for both daemons' Type=notify and Type=notify-reload units.
//
// It sends the same datagram as go-systemd's daemon.SdNotify (whose
// state constants it re-exports), but to an address captured once at
// start-up: daemon.SdNotify reads NOTIFY_SOCKET at every call, and with
// unsetEnvironment it unsets it at the first, so later messages (RELOADING,
// STOPPING) would go nowhere. Capturing it once lets the daemons remove
// NOTIFY_SOCKET from the environment before they start any child process.
package sdnotify

import (
	"net"
	"os"
	"strconv"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// The states, as go-systemd's daemon package spells them.
const (
	// Ready: start-up or a reload is finished.
	Ready = daemon.SdNotifyReady
	// Stopping: the service is shutting down.
	Stopping = daemon.SdNotifyStopping
)

// Notifier sends sd_notify(3) state messages ("READY=1", "RELOADING=1",
// "STOPPING=1", "STATUS=...") to the service manager at Addr. The zero
// value and a nil *Notifier send nothing. It is safe for concurrent use.
type Notifier struct {
	// Addr is the notification socket path ("@name" for an abstract
	// socket), as in NOTIFY_SOCKET. Empty disables notifications.
	Addr string
}

// FromEnv returns a Notifier for $NOTIFY_SOCKET and unsets the variable.
// Without NOTIFY_SOCKET the Notifier sends nothing.
func FromEnv() *Notifier {
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

// Reloading returns the RELOADING=1 message with the MONOTONIC_USEC field
// that systemd's Type=notify-reload requires.
func Reloading() string {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return daemon.SdNotifyReloading + "\nMONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1000, 10)
}
