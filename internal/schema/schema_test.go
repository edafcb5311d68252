package schema

import "testing"

func TestValidateAndQuote(t *testing.T) {
	for _, ok := range []string{"public", "pgflow", "_x1", "tenant_42"} {
		if err := Validate(ok); err != nil {
			t.Errorf("Validate(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Public", "1abc", "a-b", `a"b`, "a b", string(make([]byte, 64))} {
		if err := Validate(bad); err == nil {
			t.Errorf("Validate(%q) accepted", bad)
		}
	}
	if got := Render("SELECT 1 FROM {{schema}}.t, {{schema}}.u", "pg"); got != `SELECT 1 FROM "pg".t, "pg".u` {
		t.Fatalf("Render = %s", got)
	}
}
