// Package conf reads the syntax of dovecot.conf (Dovecot 2.3) into a
// tree of settings and sections, each with its position:
//
//	key = value            # comment (a '#' after white space, outside quotes)
//	key = "quoted \"value\""
//	key = <file            # the file's contents, read by the parser (root)
//	key = $other_setting   # a top-level setting's current value (Parser.Variables)
//	!include conf.d/*.conf # relative to the including file; !include_try
//	type name {            # a section: service imap-login { ... }
//	  key = value
//	}
//
// It knows no setting names: a schema binds the tree (loginsvc's is
// pkg/logind/config) and reports what it finds wrong at each node
// (Node.Errorf). Errors are collected, not just the first, and each is
// printed as FILE:LINE: MESSAGE, like doveconf's.
package conf
