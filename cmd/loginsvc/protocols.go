package main

import (
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/imap"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/login"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/managesieve"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/pop3"
	"github.com/tcpwrapd/tcpwrapd/pkg/logind/submission"
)

// protocols are the pre-login protocols loginsvc's login processes
// serve: each service's login process picks its own by name (imap,
// pop3, submission, sieve). A new protocol is a package implementing
// login.Protocol, listed here.
var protocols = []login.Protocol{
	imap.Protocol{},
	pop3.Protocol{},
	submission.Protocol{},
	managesieve.Protocol{},
}
