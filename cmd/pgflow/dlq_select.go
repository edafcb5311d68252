package main

import (
	"fmt"

	"github.com/pgflow-go/pgflow"
)

// dlqSelection turns "ID… | --queue Q | --all" plus filters into a filter.
func dlqSelection(args []string, ff *filterFlags) (pgflow.DLQFilter, error) {
	ids, err := parseIDs(args)
	if err != nil {
		return pgflow.DLQFilter{}, err
	}
	f, err := ff.dlqFilter(ids)
	if err != nil {
		return f, err
	}
	bulk := ff.queue != "" || ff.all
	switch {
	case len(ids) > 0 && bulk:
		return f, usagef("give message ids or --queue/--all, not both")
	case len(ids) == 0 && !bulk:
		return f, usagef("select messages: ID…, --queue QUEUE or --all")
	}
	return f, nil
}

// notFoundErr reports requested ids that were not in the DLQ.
func notFoundErr(ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	return exitError{exitNotFound, fmt.Errorf("%w: ids %v", pgflow.ErrDLQMessageNotFound, ids)}
}
