package authpolicy

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// parseFlat decodes the common body, a flat JSON object whose values are
// plain strings (no escapes) and booleans, into r without encoding/json,
// and reports whether it could. It accepts a strict subset of what
// json.Unmarshal accepts and gives the same Request for it (the
// differential fuzz test FuzzParseFlat holds it to that); on anything
// else (nesting, escapes, numbers, null, a value of the wrong type, a key
// that only matches a field case-insensitively) it returns false and r
// must be discarded: ParseRequest then asks json.Unmarshal.
//
// src, when not "", holds the same bytes as b: the string values are then
// slices of it (no allocation per value); otherwise each is a copy.
func parseFlat(b []byte, src string, r *Request) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipSpace(b, i+1) == len(b)
	}
	for {
		ks, ke, j, ok := flatString(b, i)
		if !ok {
			return false
		}
		key := b[ks:ke]
		if i = skipSpace(b, j); i >= len(b) || b[i] != ':' {
			return false
		}
		if i = skipSpace(b, i+1); i >= len(b) {
			return false
		}
		switch {
		case b[i] == '"':
			vs, ve, j, ok := flatString(b, i)
			if !ok {
				return false
			}
			var val string
			if src != "" {
				val = src[vs:ve]
			} else {
				val = string(b[vs:ve])
			}
			if !r.setFlatString(key, val) {
				return false
			}
			i = j
		case bytes.HasPrefix(b[i:], []byte("true")):
			if !r.setFlatBool(key, true) {
				return false
			}
			i += 4
		case bytes.HasPrefix(b[i:], []byte("false")):
			if !r.setFlatBool(key, false) {
				return false
			}
			i += 5
		default:
			return false
		}
		if i = skipSpace(b, i); i >= len(b) {
			return false
		}
		switch b[i] {
		case '}':
			return skipSpace(b, i+1) == len(b)
		case ',':
			i = skipSpace(b, i+1)
		default:
			return false
		}
	}
}

// skipSpace returns the index of the first byte at or after i that is
// not JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// flatString returns where the contents of the JSON string at b[i] are,
// b[start:end], and the index after it, if it has no escape and no
// control character and is valid UTF-8 (json.Unmarshal would replace
// invalid bytes).
func flatString(b []byte, i int) (start, end, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, 0, 0, false
	}
	ascii := true
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return i + 1, j, j + 1, ascii || utf8.Valid(b[i+1:j])
		case c == '\\' || c < 0x20:
			return 0, 0, 0, false
		case c >= 0x80:
			ascii = false
		}
	}
	return 0, 0, 0, false
}

// flatKeys are the JSON keys of Request's fields.
var flatKeys = []string{"protocol", "remote", "remote_port", "local", "local_port", "login", "pwhash",
	"session_id", "device_id", "fail_type", "tls", "success", "policy_reject"}

// unknownKey reports whether key names no field of Request, not even
// case-insensitively as json.Unmarshal matches them (non-ASCII keys are
// not judged: false).
func unknownKey(key []byte) bool {
	for _, c := range key {
		if c >= 0x80 {
			return false
		}
	}
	for _, k := range flatKeys {
		if len(k) == len(key) && strings.EqualFold(k, string(key)) {
			return false
		}
	}
	return true
}

// setFlatString sets the string field named key; false for a boolean
// field or a key that needs json.Unmarshal's judgement.
func (r *Request) setFlatString(key []byte, val string) bool {
	var f *string
	switch string(key) {
	case "protocol":
		f = &r.Protocol
	case "remote":
		f = &r.Remote
	case "remote_port":
		f = &r.RemotePort
	case "local":
		f = &r.Local
	case "local_port":
		f = &r.LocalPort
	case "login":
		f = &r.Login
	case "pwhash":
		r.Pwhash = Secret(val)
		return true
	case "session_id":
		f = &r.SessionID
	case "device_id":
		f = &r.DeviceID
	case "fail_type":
		f = &r.FailType
	default:
		return unknownKey(key)
	}
	*f = val
	return true
}

// setFlatBool sets the boolean field named key; false for a string field
// or a key that needs json.Unmarshal's judgement.
func (r *Request) setFlatBool(key []byte, v bool) bool {
	switch string(key) {
	case "tls":
		r.TLS = v
	case "success":
		b := v // a copy: v itself stays on the stack for tls
		r.Success = &b
	case "policy_reject":
		b := v
		r.PolicyReject = &b
	default:
		return unknownKey(key)
	}
	return true
}
