package pgflowtest

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Process is the test binary run again as a separate OS process, selecting
// one helper test with -test.run: a consumer that can be killed, or one
// with its own tracer. It speaks to the parent by printing lines.
type Process struct {
	Cmd   *exec.Cmd
	t     testing.TB
	lines chan string
}

// StartProcess runs the test named test (which should skip unless its
// environment is set) in a new process with env added. The process is
// killed when t ends.
func StartProcess(t testing.TB, test string, env ...string) *Process {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Process{Cmd: cmd, t: t, lines: make(chan string, 16)}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	go func() { // ends when the process's stdout closes
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	return p
}

// Next waits for the next line starting with prefix and returns the rest of
// it. A line starting with "ERROR", the process exiting, or a minute without
// such a line fails the test.
func (p *Process) Next(prefix string) string {
	p.t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("process exited before printing %q", prefix)
			}
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				return rest
			}
			if strings.HasPrefix(line, "ERROR") {
				p.t.Fatal(line)
			}
		case <-timeout:
			p.t.Fatalf("process never printed %q", prefix)
		}
	}
}
