package main

import (
	"flag"
	"os"
	"strings"
	"testing"
)

// TestConfigurationDocsListEveryFlag: docs/configuration.md names every
// flag of `rtmrec -h` with its environment variable, so the two cannot
// drift apart.
func TestConfigurationDocsListEveryFlag(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	n := 0
	(&config{}).flags().VisitAll(func(f *flag.Flag) {
		n++
		env := "RTMREC_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if !strings.Contains(text, "`-"+f.Name+"`") || !strings.Contains(text, "`"+env+"`") {
			t.Errorf("docs/configuration.md does not list -%s (%s)", f.Name, env)
		}
	})
	if n < 40 {
		t.Fatalf("only %d flags found", n)
	}
}
