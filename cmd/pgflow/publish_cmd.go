package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow"
)

// messageFlags are the options publish and topics publish share.
type messageFlags struct {
	priority string
	delay    time.Duration
	headers  []string
}

var publishFlags struct {
	messageFlags
	dedupKey string
}

// message reads a command's payload (arg, or stdin for "-"), checks that it
// is JSON, and turns f into publish options.
func (f *messageFlags) message(cmd *cobra.Command, arg string) (json.RawMessage, []pgflow.PublishOption, error) {
	body := []byte(arg)
	if arg == "-" {
		b, err := io.ReadAll(cmd.InOrStdin())
		if err != nil {
			return nil, nil, fmt.Errorf("read stdin: %w", err)
		}
		body = []byte(strings.TrimSpace(string(b)))
	}
	if !json.Valid(body) {
		return nil, nil, usagef("payload is not valid JSON: %s", clip(string(body), 80))
	}
	var opts []pgflow.PublishOption
	prio, err := parsePriority(f.priority)
	if err != nil {
		return nil, nil, err
	}
	if prio != nil {
		opts = append(opts, pgflow.WithPriority(*prio))
	}
	if f.delay != 0 {
		opts = append(opts, pgflow.WithDelay(f.delay))
	}
	for _, h := range f.headers {
		k, v, ok := strings.Cut(h, "=")
		if !ok || k == "" {
			return nil, nil, usagef("--header %q: want KEY=VALUE", h)
		}
		opts = append(opts, pgflow.WithHeader(k, v))
	}
	return body, opts, nil
}

var publishCmd = &cobra.Command{
	Use:   "publish QUEUE (JSON | -)",
	Short: "Publish one message (JSON payload as an argument, or - for stdin)",
	Long: `Publish one message to a queue and print its id. The payload must be
JSON; "-" reads it from stdin. The queue is created with default settings if
it does not exist. With --dedup-key, publishing while a message with the
same key is queued or in flight prints the existing message's id.`,
	Example: `  pgflow publish proposals_for_consensus_queue '{"proposal_id":"p-42"}'
  echo '{"instance":"i-1"}' | pgflow publish metrics_to_guardian_queue -
  pgflow publish rollback_triggers_queue '{"to":"v41"}' --priority 10 --header source=oncall
  pgflow publish consensus_results_queue '{"id":7}' --delay 30s --dedup-key result-7`,
	Args: usageArgs(cobra.ExactArgs(2)),
	RunE: func(cmd *cobra.Command, args []string) error {
		queue := args[0]
		body, opts, err := publishFlags.message(cmd, args[1])
		if err != nil {
			return err
		}
		if publishFlags.dedupKey != "" {
			opts = append(opts, pgflow.WithDedupKey(publishFlags.dedupKey))
		}
		return withClient(cmd, func(c *pgflow.Client) error {
			id, err := c.Publish(cmd.Context(), queue, body, opts...)
			if err != nil {
				return err
			}
			if globals.json {
				return printJSON(cmd.OutOrStdout(), map[string]any{"id": id, "queue": queue})
			}
			fmt.Fprintln(cmd.OutOrStdout(), id)
			return nil
		})
	},
}

func init() {
	f := publishCmd.Flags()
	f.StringVar(&publishFlags.priority, "priority", "", "priority, higher first (default: the queue's)")
	f.DurationVar(&publishFlags.delay, "delay", 0, "deliver after this long (e.g. 30s, 5m)")
	f.StringVar(&publishFlags.dedupKey, "dedup-key", "", "deduplication key")
	f.StringArrayVarP(&publishFlags.headers, "header", "H", nil, "header KEY=VALUE (repeatable)")
	rootCmd.AddCommand(publishCmd)
}
