package rtm

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestVocabulary(t *testing.T) {
	word := regexp.MustCompile(`^[a-z]+(_[a-z]+)+$`)
	seen := map[string]bool{}
	for _, f := range Failures {
		if !word.MatchString(string(f)) || seen[string(f)] {
			t.Errorf("failure %q is not a distinct snake_case word", f)
		}
		seen[string(f)] = true
		got, ok := FailureOf(f.Reason("HTTP 403 Forbidden"))
		if !ok || got != f {
			t.Errorf("FailureOf(%q) = %q, %v", f.Reason("x"), got, ok)
		}
	}
	for _, bad := range []string{"", "upload_refused", "upload_refusedHTTP 403", "network: timed out", "HTTP 403: upload_refused"} {
		if f, ok := FailureOf(bad); ok {
			t.Errorf("FailureOf(%q) = %q", bad, f)
		}
	}
	for _, c := range Codes {
		if !regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`).MatchString(string(c)) || seen[string(c)] {
			t.Errorf("code %q is not a distinct snake_case word", c)
		}
		seen[string(c)] = true
	}
	for _, c := range Causes {
		if !regexp.MustCompile(`^TERM_BY_[A-Z_]+$`).MatchString(string(c)) || seen[string(c)] {
			t.Errorf("cause %q", c)
		}
		seen[string(c)] = true
	}
}

// TestVocabularyIsComplete: every Code, Cause and Failure constant of the
// package is in its list, so docs built from the lists miss none.
func TestVocabularyIsComplete(t *testing.T) {
	pkgs, err := parser.ParseDir(token.NewFileSet(), ".", func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, c := range Codes {
		listed["Code:"+string(c)] = true
	}
	for _, c := range Causes {
		listed["Cause:"+string(c)] = true
	}
	for _, f := range Failures {
		listed["Failure:"+string(f)] = true
	}
	n := 0
	for _, f := range pkgs["rtm"].Files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, s := range gd.Specs {
				vs := s.(*ast.ValueSpec)
				typ, ok := vs.Type.(*ast.Ident)
				if !ok || (typ.Name != "Code" && typ.Name != "Cause" && typ.Name != "Failure") {
					continue
				}
				for _, v := range vs.Values {
					lit := v.(*ast.BasicLit)
					val, _ := strconv.Unquote(lit.Value)
					n++
					if !listed[typ.Name+":"+val] {
						t.Errorf("%s %q is missing from its list", typ.Name, val)
					}
				}
			}
		}
	}
	if n != len(listed) {
		t.Errorf("%d constants declared, %d listed", n, len(listed))
	}
}
