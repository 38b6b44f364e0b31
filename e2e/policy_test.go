package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpwrapd/tcpwrapd/internal/dovecot24lab"
	"github.com/tcpwrapd/tcpwrapd/internal/dovecotlab"
	"github.com/tcpwrapd/tcpwrapd/internal/postfixlab"
	"github.com/tcpwrapd/tcpwrapd/pkg/accessclient"
	"github.com/tcpwrapd/tcpwrapd/pkg/accessd"
)

// passed is a listener handed to tcpwrapd by socket activation under a
// FileDescriptorName.
type passed struct {
	name string
	f    *os.File
	addr string // 127.0.0.1:PORT or the socket path
}

// listenPassed creates a listener on network/addr (port 0: any) for
// tcpwrapd to take over.
func listenPassed(t *testing.T, name, network, addr string) passed {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := ln.(*net.UnixListener); ok {
		u.SetUnlinkOnClose(false)
	}
	f, err := ln.(interface{ File() (*os.File, error) }).File()
	a := ln.Addr().String()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return passed{name: name, f: f, addr: a}
}

// daemon is a running tcpwrapd binary.
type daemon struct {
	p     *dovecotlab.Process
	admin string
}

// startDaemon runs the tcpwrapd binary with the listeners socks passed
// as systemd does (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID set to its own
// pid by the shell that execs it), an admin socket and args, and waits
// until it listens on want listeners.
func startDaemon(t *testing.T, dir string, socks []passed, want int, args ...string) *daemon {
	t.Helper()
	bin := tcpwrapdBinary(t)
	admin := filepath.Join(dir, "admin")
	var names []string
	var files []*os.File
	for _, s := range socks {
		names = append(names, s.name)
		files = append(files, s.f)
	}
	argv := append([]string{bin, "--admin-socket", admin, "--log-level", "debug"}, args...)
	cmd := exec.Command("/bin/sh", append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`}, argv...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LISTEN_FDS=" + strconv.Itoa(len(files)),
		"LISTEN_FDNAMES=" + strings.Join(names, ":")}
	cmd.ExtraFiles = files
	p, err := dovecotlab.StartProcess(t, "tcpwrapd", cmd, filepath.Join(dir, "tcpwrapd.out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tcpwrapd output:\n%s", p.Output())
		}
	})
	d := &daemon{p: p, admin: admin}
	d.waitLog(t, "listening", want)
	d.waitLog(t, "admin socket listening", 1)
	return d
}

// waitLog waits until the daemon's output has n lines containing substr
// (30 s at most; it fails if the daemon exits).
func (d *daemon) waitLog(t *testing.T, substr string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(d.p.Output(), substr) < n {
		if done, err := d.p.Exited(); done {
			t.Fatalf("tcpwrapd exited (%v) before logging %q %d times", err, substr, n)
		}
		if time.Now().After(deadline) {
			t.Fatalf("tcpwrapd did not log %q %d times in 30 s", substr, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stats asks the admin socket for the statistics.
func (d *daemon) stats(t *testing.T) accessd.AdminStats {
	t.Helper()
	c, err := net.DialTimeout("unix", d.admin, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, `{"op":"stats"}`+"\n"); err != nil {
		t.Fatal(err)
	}
	var rep accessd.AdminReply
	if err := json.NewDecoder(c).Decode(&rep); err != nil || !rep.OK || rep.Stats == nil {
		t.Fatalf("admin stats: %+v, %v", rep, err)
	}
	return *rep.Stats
}

// askAccess asks a Dovecot access socket about a connection from src, as
// imap-login does.
func askAccess(t *testing.T, path, src string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, done, err := accessclient.LocalConn(ctx, netip.MustParseAddr(src), netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	v, err := accessclient.Ask(ctx, path, "imap", conn, 30*time.Second)
	if err != nil {
		t.Fatalf("access socket: %v", err)
	}
	return v.String()
}

// askPolicy posts an auth policy allow request for an IMAP login from
// src and returns the reply body.
func askPolicy(t *testing.T, c *http.Client, addr, apiKey, src string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/?command=allow",
		strings.NewReader(fmt.Sprintf(`{"login":"alice","protocol":"imap","pwhash":"0a1b","remote":%q,"tls":false}`, src)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", apiKey)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("auth policy: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("auth policy: HTTP %d %q, %v", resp.StatusCode, b, err)
	}
	return string(b)
}

// askPostfix sends one Postfix policy block for a client at src over a
// new connection to the socket at path and returns the reply block.
func askPostfix(t *testing.T, path, src string) string {
	t.Helper()
	c, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	block := "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=" + src +
		"\nclient_name=unknown\nreverse_client_name=unknown\npolicy_context=\n\n"
	if _, err := io.WriteString(c, block); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	var out strings.Builder
	for {
		line, err := r.ReadString('\n')
		out.WriteString(line)
		if err != nil {
			t.Fatalf("postfix policy: reply %q: %v", out.String(), err)
		}
		if line == "\n" {
			return out.String()
		}
	}
}

// TestFrontEnds runs the tcpwrapd binary with all three front ends over
// one set of rules: the Dovecot access socket, the auth policy and a
// Postfix policy listener passed by socket activation (FileDescriptorName
// access, authpolicy, postfix), and a second Postfix listener created by
// --postfix-listen with its own daemon name. Each answers per hosts.deny;
// after hosts.deny is rewritten and SIGHUP sent, the reload (logged with
// its generation, shown by the admin socket) changes all of them.
func TestFrontEnds(t *testing.T) {
	dir, err := os.MkdirTemp("", "fe") // short: unix socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	allow, deny := filepath.Join(dir, "hosts.allow"), filepath.Join(dir, "hosts.deny")
	writeRules := func(text string) {
		t.Helper()
		tmp := deny + ".tmp"
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, deny); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(allow, nil, 0o644)
	writeRules("imap: 127.0.0.2\nsmtpd: 127.0.0.2\n")
	access := listenPassed(t, "access", "unix", filepath.Join(dir, "access"))
	policy := listenPassed(t, "authpolicy", "tcp", "127.0.0.1:0")
	pf := listenPassed(t, "postfix", "unix", filepath.Join(dir, "postfix"))
	sub := filepath.Join(dir, "submission")
	const apiKey = "e2e-key"
	d := startDaemon(t, dir, []passed{access, policy, pf}, 4,
		"--allow-file", allow, "--deny-file", deny, "--reload-interval", "0",
		"--policy-api-header", apiKey, "--postfix-listen", sub+",mode=0600,daemon=submission,reject=521 5.7.1")
	if fi, err := os.Stat(sub); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("--postfix-listen socket: %v, %v; want mode 0600", fi, err)
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	ask := func() map[string]string {
		got := map[string]string{}
		for _, src := range []string{"127.0.0.1", "127.0.0.2"} {
			got["access "+src] = askAccess(t, access.addr, src)
			got["authpolicy "+src] = askPolicy(t, hc, policy.addr, apiKey, src)
			got["postfix "+src] = askPostfix(t, pf.addr, src)
			got["submission "+src] = askPostfix(t, sub, src)
		}
		return got
	}
	want := map[string]string{
		"access 127.0.0.1": "allowed", "access 127.0.0.2": "refused",
		"authpolicy 127.0.0.1": `{"status":0}`, "authpolicy 127.0.0.2": `{"status":-1,"msg":"Access denied."}`,
		"postfix 127.0.0.1": "action=DUNNO\n\n", "postfix 127.0.0.2": "action=REJECT Access denied\n\n",
		"submission 127.0.0.1": "action=DUNNO\n\n", "submission 127.0.0.2": "action=DUNNO\n\n",
	}
	if diff := cmp.Diff(want, ask()); diff != "" {
		t.Errorf("generation 1 (-want +got):\n%s", diff)
	}

	writeRules("imap: 127.0.0.1\nsmtpd submission: 127.0.0.1\n")
	d.p.Signal(syscall.SIGHUP)
	d.waitLog(t, "generation=2", 1)
	if g := d.stats(t).Rules.Generation; g != 2 {
		t.Errorf("admin socket: generation %d after the reload, want 2", g)
	}
	want = map[string]string{
		"access 127.0.0.1": "refused", "access 127.0.0.2": "allowed",
		"authpolicy 127.0.0.1": `{"status":-1,"msg":"Access denied."}`, "authpolicy 127.0.0.2": `{"status":0}`,
		"postfix 127.0.0.1": "action=REJECT Access denied\n\n", "postfix 127.0.0.2": "action=DUNNO\n\n",
		"submission 127.0.0.1": "action=521 5.7.1 Access denied\n\n", "submission 127.0.0.2": "action=DUNNO\n\n",
	}
	if diff := cmp.Diff(want, ask()); diff != "" {
		t.Errorf("generation 2 (-want +got):\n%s", diff)
	}

	// The admin socket counts each front end: 4 checks each for access
	// and authpolicy, 8 for the two Postfix listeners.
	st := d.stats(t)
	got := map[string][2]uint64{}
	for name, f := range st.FrontEnds {
		got[name] = [2]uint64{f.Checks, f.Refused}
	}
	if diff := cmp.Diff(map[string][2]uint64{"access": {4, 2}, "authpolicy": {4, 2}, "postfix": {8, 3}}, got); diff != "" {
		t.Errorf("per-front-end checks and refusals (-want +got):\n%s", diff)
	}
	if st.Checks != 16 {
		t.Errorf("checks %d, want 16", st.Checks)
	}
	if err := d.p.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if out := d.p.Output(); !strings.Contains(out, "msg=stopped") {
		t.Errorf("tcpwrapd did not stop cleanly:\n%s", out)
	}
}

// policyDeny is the hosts.deny of the real-peer tests: 127.0.0.2 may
// not log in to IMAP nor send mail, with banner texts.
const policyDeny = "imap: 127.0.0.2 : banners %[1]s\nsmtpd: 127.0.0.2 : banners %[1]s\n"

// startPolicyDaemon starts tcpwrapd with one passed listener named name
// (loopback TCP) and the lab rules; it returns the listener's address.
func startPolicyDaemon(t *testing.T, name string, args ...string) (*daemon, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "pe")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	banners := filepath.Join(dir, "banners")
	os.Mkdir(banners, 0o755)
	os.WriteFile(filepath.Join(banners, "imap"), []byte("No IMAP for %a here\n"), 0o644)
	os.WriteFile(filepath.Join(banners, "smtpd"), []byte("No mail from %a here\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "hosts.allow"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "hosts.deny"), []byte(fmt.Sprintf(policyDeny, banners)), 0o644)
	ln := listenPassed(t, name, "tcp", "127.0.0.1:0")
	d := startDaemon(t, dir, []passed{ln}, 1, append([]string{"--allow-file", filepath.Join(dir, "hosts.allow"),
		"--deny-file", filepath.Join(dir, "hosts.deny")}, args...)...)
	return d, ln.addr
}

// TestPolicyDovecot23: a real Dovecot 2.3 with auth_policy_server_url at
// the tcpwrapd binary's auth policy listener: the denied client's IMAP
// login fails with the banner as [ALERT], the allowed one logs in, and
// POP3 (another daemon) from the denied client is let in.
func TestPolicyDovecot23(t *testing.T) {
	dovecotlab.SkipIfUnavailable(t)
	d, addr := startPolicyDaemon(t, accessd.FrontEndAuthPolicy, "--policy-api-header", "X-API-Key: e2e-key")
	dc := dovecotlab.Start(t, dovecotlab.Config{NoAccessCheck: true, Extra: `
auth_policy_server_url = http://` + addr + `/
auth_policy_server_api_header = X-API-Key: e2e-key
auth_policy_hash_nonce = e2e-nonce
auth_policy_reject_on_fail = yes
`})
	ctx := context.Background()
	for _, c := range []struct{ proto, src, want string }{
		{"imap", "127.0.0.1", "a OK"},
		{"imap", "127.0.0.2", "a NO [ALERT] No IMAP for 127.0.0.2 here"},
		{"pop3", "127.0.0.2", "+OK"},
	} {
		got, err := dovecot24lab.Login(ctx, c.proto, c.src, dc.Addr(c.proto), "alice", "secret")
		if err != nil || !strings.HasPrefix(got, c.want) {
			t.Errorf("%s login from %s: %q, %v; want %q...", c.proto, c.src, got, err, c.want)
		}
	}
	if f := d.stats(t).FrontEnds[accessd.FrontEndAuthPolicy]; f.Refused < 1 || f.Granted < 2 {
		t.Errorf("authpolicy counters %+v: want at least 1 refusal and 2 grants", f)
	}
}

// TestPolicyPostfix: a real Postfix 3.7 with check_policy_service at the
// tcpwrapd binary's Postfix listener: the denied client gets 554 with the
// banner text at RCPT TO, the allowed one 250.
func TestPolicyPostfix(t *testing.T) {
	postfixlab.SkipIfUnavailable(t)
	_, addr := startPolicyDaemon(t, accessd.FrontEndPostfix)
	pf := postfixlab.Start(t, postfixlab.Config{PolicyService: "inet:" + addr})
	for _, c := range []struct{ src, want string }{
		{"127.0.0.2", "554 5.7.1 <unknown[127.0.0.2]>: Client host rejected: No mail from 127.0.0.2 here"},
		{"127.0.0.1", "250 "},
	} {
		got, err := smtpRcpt(pf.Addr, c.src)
		if err != nil || !strings.HasPrefix(got, c.want) {
			t.Errorf("RCPT TO from %s: %q, %v; want %q...", c.src, got, err, c.want)
		}
	}
}

// smtpRcpt runs an SMTP dialogue from src up to RCPT TO and returns the
// reply to it.
func smtpRcpt(addr, src string) (string, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	reply := func() (string, error) {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return line, err
			}
			if line = strings.TrimRight(line, "\r\n"); len(line) < 4 || line[3] != '-' {
				return line, nil
			}
		}
	}
	if l, err := reply(); err != nil || !strings.HasPrefix(l, "220") {
		return l, fmt.Errorf("greeting: %v", err)
	}
	var l string
	for _, cmd := range []string{"EHLO client.test", "MAIL FROM:<a@client.test>", "RCPT TO:<b@" + postfixlab.Domain + ">"} {
		if _, err := io.WriteString(c, cmd+"\r\n"); err != nil {
			return "", err
		}
		if l, err = reply(); err != nil {
			return l, err
		}
		if !strings.HasPrefix(l, "250") {
			break
		}
	}
	io.WriteString(c, "QUIT\r\n")
	return l, nil
}
