package pgflow

import "fmt"

// Setting is an optional setting: its zero value means "not set", and Set
// holds a value, zero included. QueueConfig uses it so that 0 retries can be
// asked for and told apart from "keep what is stored".
type Setting[T any] struct {
	v  T
	ok bool
}

// Set returns a Setting holding v.
func Set[T any](v T) Setting[T] { return Setting[T]{v: v, ok: true} }

// Get returns the value and whether it was set.
func (s Setting[T]) Get() (T, bool) { return s.v, s.ok }

// IsSet reports whether the setting was set.
func (s Setting[T]) IsSet() bool { return s.ok }

// String returns the value, or "unset".
func (s Setting[T]) String() string {
	if !s.ok {
		return "unset"
	}
	return fmt.Sprint(s.v)
}
