package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("database_url: postgres://u:secret@h/db\nconsumers:\n  c:\n    queue_name: q\n    handler: handle_a\n"), 0o600)
	os.WriteFile(bad, []byte("database_url: postgres://h/db\nconsumers:\n  c:\n    queue_name: q\n    handler: handle_b\n"), 0o600)

	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		rootCmd.SetOut(&out)
		rootCmd.SetArgs(args)
		err := rootCmd.Execute()
		globals.json = false
		configFlags.handlers = nil
		return out.String(), err
	}
	out, err := run("config", "check", good, "--handlers", "handle_a")
	if err != nil || !strings.Contains(out, "consumer  c     q      1        -            -            -         handle_a") {
		t.Fatalf("good file: %v\n%s", err, out)
	}
	out, err = run("config", "check", good, "--json")
	if err != nil || strings.Contains(out, "secret") || !strings.Contains(out, `"QueueName":"q"`) {
		t.Fatalf("json: %v\n%s", err, out)
	}
	_, err = run("config", "check", bad, "--handlers", "handle_a")
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), `line 5: consumers.c.handler: handler "handle_b" is not registered (registered: handle_a)`) {
		t.Fatalf("bad file: %v (exit %d)", err, exitCode(err))
	}
}
