package config

import "testing"

func TestExpand(t *testing.T) {
	env := map[string]string{"A": "alpha", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, tc := range []struct{ in, want, err string }{
		{in: "plain", want: "plain"},
		{in: "${A}", want: "alpha"},
		{in: "x-${A}-y", want: "x-alpha-y"},
		{in: "${B:-beta}", want: "beta"},
		{in: "${EMPTY:-dflt}", want: "dflt"},
		{in: "${EMPTY}", want: ""},
		{in: "${B:-}", want: ""},
		{in: "${B:-a:-b}", want: "a:-b"},
		{in: "$$A", want: "$A"},
		{in: "pa$word", want: "pa$word"},
		{in: "end$", want: "end$"},
		{in: "${A}${B:-2}", want: "alpha2"},
		{in: "${B}", err: "environment variable B is not set (write ${B:-default} to give a default)"},
		{in: "${A", err: `unclosed ${ in "${A"`},
		{in: "${}", err: "bad variable ${}: want ${NAME} or ${NAME:-default}, NAME of letters, digits and _"},
		{in: "${A-b}", err: "bad variable ${A-b}: want ${NAME} or ${NAME:-default}, NAME of letters, digits and _"},
	} {
		got, err := expand(tc.in, lookup)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("expand(%q): error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("expand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
