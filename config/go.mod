module github.com/pgflow-go/pgflow/config

go 1.26.0

require (
	github.com/jackc/pgx/v5 v5.13.0
	github.com/pgflow-go/pgflow v0.0.0-00010101000000-000000000000
	go.yaml.in/yaml/v3 v3.0.6
)

require (
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	golang.org/x/sync v0.22.0 // indirect
	golang.org/x/text v0.41.0 // indirect
)

// Build against the pgflow modules of this repository, as go.work does;
// go mod tidy and GOWORK=off (scripts/test) need these lines. A release
// requires tagged versions instead: go install ...@version refuses replace.
replace github.com/pgflow-go/pgflow => ..
