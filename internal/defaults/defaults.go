// Package defaults holds the one rule the daemons' settings structs use
// for their zero values: a setting that is not positive means its
// default.
package defaults

// Positive returns v if it is positive, else def: a zero (or negative)
// timeout, limit or size in a settings struct means "the default".
func Positive[T ~int | ~int64 | ~uint32](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
