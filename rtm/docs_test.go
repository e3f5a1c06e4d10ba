package rtm

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// constantsOf returns the string constants of this package whose type is
// one of types (found in the source, so a new constant cannot be missed).
func constantsOf(t *testing.T, types ...string) map[string]string {
	t.Helper()
	want := map[string]bool{}
	for _, ty := range types {
		want[ty] = true
	}
	pkgs, err := parser.ParseDir(token.NewFileSet(), ".", func(fi os.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range pkgs {
		for _, f := range p.Files {
			for _, d := range f.Decls {
				g, ok := d.(*ast.GenDecl)
				if !ok || g.Tok != token.CONST {
					continue
				}
				for _, s := range g.Specs {
					vs := s.(*ast.ValueSpec)
					id, ok := vs.Type.(*ast.Ident)
					if !ok || !want[id.Name] || len(vs.Values) != len(vs.Names) {
						continue
					}
					for i, v := range vs.Values {
						if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
							out[vs.Names[i].Name], _ = strconv.Unquote(lit.Value)
						}
					}
				}
			}
		}
	}
	return out
}

// TestDocsNameTheVocabulary: docs/protocol.md names every message type,
// state, termination cause and error code, and docs/recordings.md every
// failure a FAILED reason starts with, so the docs cannot drift from rtm.
func TestDocsNameTheVocabulary(t *testing.T) {
	for _, tt := range []struct {
		doc   string
		types []string
		least int
	}{
		{"../docs/protocol.md", []string{"Type", "State", "Cause", "Code", "RecordingState"}, 40},
		{"../docs/recordings.md", []string{"Failure"}, 6},
	} {
		b, err := os.ReadFile(tt.doc)
		if err != nil {
			t.Fatal(err)
		}
		consts := constantsOf(t, tt.types...)
		if len(consts) < tt.least {
			t.Fatalf("only %d constants of %v found", len(consts), tt.types)
		}
		for name, v := range consts {
			if !strings.Contains(string(b), "`"+v+"`") && !strings.Contains(string(b), "`"+v+" ") {
				t.Errorf("%s does not name %s (%q)", tt.doc, name, v)
			}
		}
	}
}
