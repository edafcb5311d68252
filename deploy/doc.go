// Package deploy holds no code: it is a separate Go module so that the test
// validating deploy/prometheus/alerts.yml with Prometheus's own rule parser
// and PromQL engine does not add the Prometheus server module (and its
// large dependency graph) to the main pgflow module.
//
//	cd deploy && go test ./...
package deploy
