module github.com/pgflow-go/pgflow/cmd/pgflow

go 1.26.0

require (
	github.com/HdrHistogram/hdrhistogram-go v1.4.0
	github.com/jackc/pgx/v5 v5.13.0
	github.com/pgflow-go/pgflow v0.0.0-00010101000000-000000000000
	github.com/pgflow-go/pgflow/config v0.0.0-00010101000000-000000000000
	github.com/pgflow-go/pgflow/console v0.0.0-00010101000000-000000000000
	github.com/pgflow-go/pgflow/promflow v0.0.0-00010101000000-000000000000
	github.com/prometheus/client_golang v1.25.0
	github.com/prometheus/common v0.74.0
	github.com/spf13/cobra v1.10.2
	github.com/spf13/pflag v1.0.9
)

require (
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/pandatix/go-abnf v0.5.5 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

// Build against the pgflow modules of this repository, as go.work does;
// go mod tidy and GOWORK=off (scripts/test) need these lines. A release
// requires tagged versions instead: go install ...@version refuses replace.
replace (
	github.com/pgflow-go/pgflow => ../..
	github.com/pgflow-go/pgflow/config => ../../config
	github.com/pgflow-go/pgflow/console => ../../console
	github.com/pgflow-go/pgflow/promflow => ../../promflow
)
