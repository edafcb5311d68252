// Package deploy holds no code, only the tests of the deployment files
// beside it: the Prometheus alert rules (prometheus/alerts.yml) and the
// Grafana dashboard (grafana/).
//
// # Tests
//
// The rules are parsed with Prometheus's own rule parser and every alert is
// evaluated with its PromQL engine over synthetic series; the dashboard's
// queries are parsed too. scripts/test runs them with the other modules, or
// by hand:
//
//	cd deploy && go test ./...
//
// # Why a module of its own
//
// The Prometheus server module brings a large dependency graph; as a module
// of its own, deploy keeps it out of every other module's go.mod.
package deploy
