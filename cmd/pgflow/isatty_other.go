//go:build !linux && !darwin && !freebsd && !netbsd && !openbsd

package main

import "os"

// isTerminal falls back to a character-device check.
func isTerminal(fd uintptr) bool {
	st, err := os.NewFile(fd, "stdin").Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
