package conf

import "fmt"

// Node is one setting ("key = value") or section ("type [name] { ... }")
// of a dovecot.conf tree, with the position it was written at. The tree
// holds what was written, in order, !include files in place; it knows no
// setting names: binding the tree to a schema, and every error about
// names or values, is the schema's (loginsvc's is pkg/logind/config).
type Node struct {
	Pos Pos
	// Section: the node is a section; Key is its type (service,
	// inet_listener, protocol, ...), Name its name ("" if none), and
	// Children what it holds. Otherwise Key is the setting's name,
	// Value its decoded value (quotes and escapes removed, a "<file"
	// read, $variables expanded) and Raw the value as written.
	Section  bool
	Key      string
	Name     string
	Value    string
	Raw      string
	Children []*Node

	seq int // discovery order, for ErrorList.Sort
}

// Errorf returns an error at n's position, sorted with the parser's own
// errors by ErrorList.Sort as if the parser had reported it at n.
func (n *Node) Errorf(format string, args ...any) *Error {
	return &Error{Pos: n.Pos, Msg: fmt.Sprintf(format, args...), seq: n.seq}
}
