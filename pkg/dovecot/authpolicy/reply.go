package authpolicy

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules"
)

// Reply is the answer to an allow request, as Dovecot reads it: Status < 0
// rejects the login (Msg reaches the client), 0 continues, N > 0 makes
// Dovecot wait N seconds before it asks the passdb.
type Reply struct {
	Status int    `json:"status"`
	Msg    string `json:"msg,omitempty"`
}

// AppendJSON appends the reply's JSON body (`{"status":N}` or
// `{"status":N,"msg":"..."}`) to b.
func (r Reply) AppendJSON(b []byte) []byte {
	b = append(b, `{"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	if r.Msg != "" {
		b = append(b, `,"msg":`...)
		m, _ := json.Marshal(r.Msg) // a string always marshals
		b = append(b, m...)
	}
	return append(b, '}')
}

// DefaultDenyMessage is the msg of a denial whose rule has no banners
// option (or whose banner file is missing or empty) when
// Server.DenyMessage is empty.
const DefaultDenyMessage = "Access denied."

// StatusVariable is the variable of the tarpit extension: a granting rule
// with the option `setenv TCPWRAPD_POLICY_STATUS N` (N a whole number of
// seconds, 1 or more) is answered {"status":N}. See StatusOption.
const StatusVariable = "TCPWRAPD_POLICY_STATUS"

// DefaultMaxStatus caps a tarpit status when Server.MaxStatus is zero.
const DefaultMaxStatus = 30

// StatusOption reports whether opt is the tarpit extension, an option
// `setenv TCPWRAPD_POLICY_STATUS N`, and returns N. It is an ordinary
// libwrap setenv option, so the same hosts.allow stays valid for tcpd,
// tcpdchk and every other libwrap program (which merely set the
// variable). N must be a decimal integer from 1 to 2147483647; any other
// value gives ok=true and an error, and the rule's verdict stands
// without a tarpit. lint can call it on every option of every rule
// (hostsrules.ParseOptions) to flag bad values; check-host can call
// Status on a Decision to show the reply.
func StatusOption(opt hostsrules.Option) (n int, ok bool, err error) {
	if opt.Name != "setenv" {
		return 0, false, nil
	}
	v := opt.Expanded
	if v == "" {
		v = opt.Value
	}
	f := strings.Fields(v)
	if len(f) == 0 || f[0] != StatusVariable {
		return 0, false, nil
	}
	if len(f) != 2 {
		return 0, true, fmt.Errorf("setenv %s: want one whole number of seconds, got %q", StatusVariable, strings.Join(f[1:], " "))
	}
	n64, err := strconv.ParseInt(f[1], 10, 32)
	if err != nil || n64 < 1 {
		return 0, true, fmt.Errorf("setenv %s: want a whole number of seconds from 1, got %q", StatusVariable, f[1])
	}
	return int(n64), true, nil
}

// Status returns the status the policy front end answers for d, before
// any cap: -1 when d denies; for a grant, the N of the last valid tarpit
// option among d.Options (see StatusOption), else 0. err reports an
// invalid tarpit option (the status is then that of the options before
// it, or 0). It is safe for concurrent use.
func Status(d hostsrules.Decision) (status int, err error) {
	if d.Verdict != hostsrules.Granted {
		return -1, nil
	}
	for _, o := range d.Options {
		n, ok, oerr := StatusOption(o)
		switch {
		case oerr != nil:
			err = oerr
		case ok:
			status = n
		}
	}
	return status, err
}
