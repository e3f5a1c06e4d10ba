package compat

import (
	"strings"
	"testing"
)

func TestValidStreamName(t *testing.T) {
	for name, want := range map[string]bool{
		"call-42": true, "Agent_7.desk": true, strings.Repeat("a", maxNameLen): true,
		"": false, strings.Repeat("a", maxNameLen+1): false, "a/b": false, "a b": false, "a?b": false,
		"a~play-1": false, "é": false, "a\x00": false, "{stream}": false,
	} {
		if got := ValidStreamName(name); got != want {
			t.Errorf("ValidStreamName(%q) = %v, want %v", name, got, want)
		}
	}
}
