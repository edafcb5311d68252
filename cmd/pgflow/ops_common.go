package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow"
)

// Exit codes of the operator commands, beside main.go's.
const (
	// exitAborted: a destructive command was not confirmed (answered no, or
	// stdin is not a terminal and --yes was not given). Nothing changed.
	exitAborted = 4
	// exitPartial: the command did part of the work; some selected messages
	// were skipped (see the output for which and why).
	exitPartial = 5
)

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }
func (e exitError) ExitCode() int { return e.code }

// stdinIsTerminal reports whether the command reads from a terminal; tests
// replace it.
var stdinIsTerminal = func(cmd *cobra.Command) bool {
	f, ok := cmd.InOrStdin().(*os.File)
	return ok && isTerminal(f.Fd())
}

// confirm asks before a destructive action. With --yes it proceeds; on a
// terminal it asks; otherwise it refuses.
func confirm(cmd *cobra.Command, yes bool, question string) error {
	if yes {
		return nil
	}
	if !stdinIsTerminal(cmd) {
		return exitError{exitAborted, fmt.Errorf("not confirmed: %s (stdin is not a terminal; pass --yes)", strings.TrimSuffix(question, "?"))}
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s [y/N] ", question)
	line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return exitError{exitAborted, errors.New("aborted; nothing changed")}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

func (t *table) row(cells ...string) {
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// fmtTime prints a time in UTC to the second, "-" for none.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

// fmtAge prints an age coarsely (truncated): 42s, 10m, 3h05m, 2d04h.
func fmtAge(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	default:
		return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// clip shortens s to n runes on one line.
func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// parseWhen reads --since/--until: an RFC 3339 time, a date (YYYY-MM-DD),
// or a duration meaning that long ago ("90m", "2h").
func parseWhen(flag, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := parseDuration(v); err == nil {
		return time.Now().Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, usagef("--%s %q: want an RFC 3339 time, a date or a duration ago such as 2h", flag, v)
}

// parseDuration is time.ParseDuration plus a leading whole number of days:
// "7d", "1d12h", "36h".
func parseDuration(v string) (time.Duration, error) {
	days, rest, ok := strings.Cut(v, "d")
	if !ok {
		return time.ParseDuration(v)
	}
	n, err := strconv.Atoi(days)
	if err != nil || n < 0 || n > 100*365 {
		return 0, fmt.Errorf("bad number of days in %q", v)
	}
	d := time.Duration(n) * 24 * time.Hour
	if rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil || r < 0 {
			return 0, fmt.Errorf("bad duration %q", v)
		}
		d += r
	}
	return d, nil
}

// fmtLifetime shows a retention or expiry setting, "-" when off.
func fmtLifetime(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// parseIDs reads message ids from arguments.
func parseIDs(args []string) ([]int64, error) {
	ids := make([]int64, 0, len(args))
	for _, a := range args {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil || id <= 0 {
			return nil, usagef("%q is not a message id", a)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// filterFlags are the DLQ and pending filters shared by several commands.
type filterFlags struct {
	queue    string
	since    string
	until    string
	errText  string
	priority string // "" for none; a string so that 0 can be asked for
	all      bool
}

func (f *filterFlags) register(cmd *cobra.Command, withQueue, withAll bool) {
	fl := cmd.Flags()
	if withQueue {
		fl.StringVarP(&f.queue, "queue", "q", "", "only this source queue")
	}
	fl.StringVar(&f.since, "since", "", "dead-lettered at or after (RFC 3339, date, or duration ago: 2h)")
	fl.StringVar(&f.until, "until", "", "dead-lettered before (same forms as --since)")
	fl.StringVar(&f.errText, "error", "", "last error contains this text (case-insensitive)")
	fl.StringVar(&f.priority, "priority", "", "only this priority")
	if withAll {
		fl.BoolVar(&f.all, "all", false, "every message (with the other filters, if any)")
	}
}

func parsePriority(s string) (*int, error) {
	if s == "" {
		return nil, nil
	}
	p, err := strconv.Atoi(s)
	if err != nil {
		return nil, usagef("--priority %q is not an integer", s)
	}
	return &p, nil
}

func (f *filterFlags) dlqFilter(ids []int64) (pgflow.DLQFilter, error) {
	out := pgflow.DLQFilter{IDs: ids, Queue: f.queue, ErrorContains: f.errText, All: f.all}
	var err error
	if out.Since, err = parseWhen("since", f.since); err != nil {
		return out, err
	}
	if out.Until, err = parseWhen("until", f.until); err != nil {
		return out, err
	}
	if out.Priority, err = parsePriority(f.priority); err != nil {
		return out, err
	}
	return out, nil
}

// describe renders a filter for confirmation questions.
func describe(f pgflow.DLQFilter) string {
	var parts []string
	if len(f.IDs) > 0 {
		parts = append(parts, fmt.Sprintf("ids %v", f.IDs))
	}
	if f.Queue != "" {
		parts = append(parts, "queue "+f.Queue)
	}
	if !f.Since.IsZero() {
		parts = append(parts, "since "+fmtTime(f.Since))
	}
	if !f.Until.IsZero() {
		parts = append(parts, "until "+fmtTime(f.Until))
	}
	if f.ErrorContains != "" {
		parts = append(parts, fmt.Sprintf("error contains %q", f.ErrorContains))
	}
	if f.Priority != nil {
		parts = append(parts, fmt.Sprintf("priority %d", *f.Priority))
	}
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, ", ")
}

// byQueue renders per-queue counts: "a: 2, b: 1".
func byQueue(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// withClient runs fn with a client that is closed afterwards.
func withClient(cmd *cobra.Command, fn func(c *pgflow.Client) error) error {
	c, err := openClient(cmd.Context())
	if err != nil {
		return err
	}
	defer c.Close(cmd.Context()) //nolint:errcheck
	return fn(c)
}

// usageArgs wraps a cobra argument check so a wrong argument count exits
// with exitUsage.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func init() {
	// Unknown or malformed flags are usage errors too.
	rootCmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
}

// errorLine is how main prints an error: one "pgflow:" prefix.
func errorLine(err error) string {
	return "pgflow: " + strings.TrimPrefix(err.Error(), "pgflow: ")
}

// count renders "1 message", "3 messages".
func count(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
