package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pgflow-go/pgflow/config"
)

var configFlags struct {
	handlers []string
}

var configCmd = &cobra.Command{
	Use:   "config",
	Short: "Work with pgflow.yaml files",
}

var configCheckCmd = &cobra.Command{
	Use:   "check FILE",
	Short: "Validate a pgflow.yaml and show what it declares, without connecting",
	Long: `Loads FILE as a service would (with ${VAR} expansion from the environment)
and reports every problem with its key path and line. With --handlers, consumer
handler names are checked against that list too. Exits 2 on problems.`,
	Example: `  pgflow config check examples/nexus/singularity/pgflow.yaml
  PGFLOW_PROPOSALS_WORKERS=5 pgflow config check pgflow.yaml --handlers handle_a,handle_b`,
	Args: cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		opts := config.Options{}
		if len(configFlags.handlers) > 0 {
			opts.Handlers = config.Handlers{}
			for _, h := range configFlags.handlers {
				opts.Handlers[strings.TrimSpace(h)] = nil
			}
		}
		cfg, err := config.Load(args[0], opts)
		if err != nil {
			return usageError{err}
		}
		out := cmd.OutOrStdout()
		if globals.json {
			shown := *cfg
			if u, err := url.Parse(shown.DatabaseURL); err == nil {
				shown.DatabaseURL = u.Redacted()
			}
			return json.NewEncoder(out).Encode(shown)
		}
		fmt.Fprintf(out, "%s: ok (schema %s)\n\n", args[0], cfg.Schema)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "kind\tname\tqueue\tworkers\tmax_retries\tretry_delay\tpriority\thandler")
		prio := func(p *int) string {
			if p == nil {
				return "-"
			}
			return fmt.Sprint(*p)
		}
		for _, p := range cfg.Producers {
			pc := p.ProducerConfig() // the producer's defaults applied
			fmt.Fprintf(tw, "producer\t%s\t%s\t%d\t%d\t%v\t%s\t-\n", p.Name, p.QueueName, p.Workers, pc.MaxRetries, pc.RetryDelay, prio(p.Priority))
		}
		// A consumer's unset settings are "-": the queue keeps its own.
		for _, c := range cfg.Consumers {
			fmt.Fprintf(tw, "consumer\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", c.Name, c.QueueName, c.Workers, opt(c.MaxRetries), opt(c.RetryDelay), prio(c.Priority), c.Handler)
		}
		return tw.Flush()
	},
}

func opt[T any](v *T) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprint(*v)
}

func init() {
	configCheckCmd.Flags().StringSliceVar(&configFlags.handlers, "handlers", nil, "handler names the service registers (comma-separated)")
	configCmd.AddCommand(configCheckCmd)
	rootCmd.AddCommand(configCmd)
}
