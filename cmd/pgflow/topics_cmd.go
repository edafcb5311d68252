package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow"
)

var topicsCmd = &cobra.Command{
	Use:   "topics",
	Short: "Fan-out topics: list, subscribe, unsubscribe, publish",
	Long: `A topic is a name that queues subscribe to. Publishing to a topic writes
one message to every subscribed queue in one statement (all or none); each
copy then has its own retries and dead-letter queue. Without a subscriber,
publishing is an error unless --allow-no-subscribers.`,
	Example: `  pgflow topics subscribe safety_profiles singularity.i-1 singularity.i-2
  pgflow topics publish safety_profiles '{"profile":"strict"}'
  pgflow topics list`,
}

var topicsListCmd = &cobra.Command{
	Use:   "list [TOPIC]",
	Short: "List subscriptions, of one topic or of all",
	Long:  `List every subscription (topic, queue, since when), by topic then queue.`,
	Example: `  pgflow topics list
  pgflow topics list safety_profiles --json`,
	Args: usageArgs(cobra.MaximumNArgs(1)),
	RunE: func(cmd *cobra.Command, args []string) error {
		topic := ""
		if len(args) == 1 {
			topic = args[0]
		}
		return withClient(cmd, func(c *pgflow.Client) error {
			subs, err := c.Subscriptions(cmd.Context(), topic)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if globals.json {
				type row struct {
					Topic     string    `json:"topic"`
					Queue     string    `json:"queue"`
					CreatedAt time.Time `json:"created_at"`
				}
				rows := make([]row, 0, len(subs))
				for _, s := range subs {
					rows = append(rows, row{s.Topic, s.Queue, s.CreatedAt})
				}
				return printJSON(out, rows)
			}
			t := newTable(out, "TOPIC", "QUEUE", "SINCE")
			for _, s := range subs {
				t.row(s.Topic, s.Queue, s.CreatedAt.UTC().Format("2006-01-02 15:04:05"))
			}
			return t.flush()
		})
	},
}

var topicsSubscribeCmd = &cobra.Command{
	Use:   "subscribe TOPIC QUEUE...",
	Short: "Subscribe queues to a topic (created if missing)",
	Long: `Subscribe each queue to the topic; queues are created with default
settings if needed. Subscribing again is a no-op.`,
	Example: `  pgflow topics subscribe safety_profiles singularity.i-1`,
	Args:    usageArgs(cobra.MinimumNArgs(2)),
	RunE: func(cmd *cobra.Command, args []string) error {
		return changeSubscriptions(cmd, args[0], args[1:], true)
	},
}

var topicsUnsubscribeCmd = &cobra.Command{
	Use:   "unsubscribe TOPIC QUEUE...",
	Short: "End queues' subscriptions to a topic",
	Long: `End each queue's subscription to the topic. Messages already published
to the queue stay.`,
	Example: `  pgflow topics unsubscribe safety_profiles singularity.i-1`,
	Args:    usageArgs(cobra.MinimumNArgs(2)),
	RunE: func(cmd *cobra.Command, args []string) error {
		return changeSubscriptions(cmd, args[0], args[1:], false)
	},
}

func changeSubscriptions(cmd *cobra.Command, topic string, queues []string, subscribe bool) error {
	return withClient(cmd, func(c *pgflow.Client) error {
		type row struct {
			Topic   string `json:"topic"`
			Queue   string `json:"queue"`
			Changed bool   `json:"changed"`
		}
		var rows []row
		for _, q := range queues {
			var changed bool
			var err error
			if subscribe {
				changed, err = c.Subscribe(cmd.Context(), topic, q)
			} else {
				changed, err = c.Unsubscribe(cmd.Context(), topic, q)
			}
			if err != nil {
				return err
			}
			rows = append(rows, row{topic, q, changed})
		}
		out := cmd.OutOrStdout()
		if globals.json {
			return printJSON(out, rows)
		}
		for _, r := range rows {
			switch {
			case subscribe && r.Changed:
				fmt.Fprintf(out, "subscribed %s to %s\n", r.Queue, r.Topic)
			case subscribe:
				fmt.Fprintf(out, "%s was already subscribed to %s\n", r.Queue, r.Topic)
			case r.Changed:
				fmt.Fprintf(out, "unsubscribed %s from %s\n", r.Queue, r.Topic)
			default:
				fmt.Fprintf(out, "%s was not subscribed to %s\n", r.Queue, r.Topic)
			}
		}
		return nil
	})
}

var topicPublishFlags struct {
	messageFlags
	allowNoSubscribers bool
}

var topicsPublishCmd = &cobra.Command{
	Use:   "publish TOPIC (JSON | -)",
	Short: "Publish one message to every queue subscribed to a topic",
	Long: `Publish one message to every queue subscribed to the topic, all in one
statement, and print each queue with its message's id. The payload must be
JSON; "-" reads it from stdin. A topic without subscribers is an error (exit
code 3) unless --allow-no-subscribers.`,
	Example: `  pgflow topics publish safety_profiles '{"profile":"strict"}' --header source=oncall
  echo '{"profile":"lenient"}' | pgflow topics publish safety_profiles - --priority 10`,
	Args: usageArgs(cobra.ExactArgs(2)),
	RunE: func(cmd *cobra.Command, args []string) error {
		topic := args[0]
		body, opts, err := topicPublishFlags.message(cmd, args[1])
		if err != nil {
			return err
		}
		if topicPublishFlags.allowNoSubscribers {
			opts = append(opts, pgflow.AllowNoSubscribers())
		}
		return withClient(cmd, func(c *pgflow.Client) error {
			sent, err := c.PublishTopic(cmd.Context(), topic, body, opts...)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if globals.json {
				type row struct {
					Queue string `json:"queue"`
					ID    int64  `json:"id"`
				}
				rows := make([]row, 0, len(sent))
				for _, m := range sent {
					rows = append(rows, row{m.Queue, m.ID})
				}
				return printJSON(out, map[string]any{"topic": topic, "messages": rows})
			}
			t := newTable(out, "QUEUE", "ID")
			for _, m := range sent {
				t.row(m.Queue, fmt.Sprint(m.ID))
			}
			return t.flush()
		})
	},
}

func init() {
	f := topicsPublishCmd.Flags()
	f.StringVar(&topicPublishFlags.priority, "priority", "", "priority, higher first (default: each queue's)")
	f.DurationVar(&topicPublishFlags.delay, "delay", 0, "deliver after this long (e.g. 30s, 5m)")
	f.StringArrayVarP(&topicPublishFlags.headers, "header", "H", nil, "header KEY=VALUE (repeatable)")
	f.BoolVar(&topicPublishFlags.allowNoSubscribers, "allow-no-subscribers", false, "succeed, writing nothing, when no queue subscribes")
	topicsCmd.AddCommand(topicsListCmd, topicsSubscribeCmd, topicsUnsubscribeCmd, topicsPublishCmd)
	rootCmd.AddCommand(topicsCmd)
}
