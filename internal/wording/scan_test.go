package wording

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// errorSources are the places that pass an error's own text to a customer,
// each because the error is written for one; the producers' tests apply
// Check to every error they make.
var errorSources = map[string]string{
	"session/server.go checkURL":     "URLChecker and S3Policy errors (internal/netguard, internal/s3allow tests)",
	"session/token.go refresh":       "the token verifier's errors (auth tests)",
	"compat/conn.go Authenticate":    "the token verifier's errors (auth tests)",
	"cmd/rtmrec/cluster.go OpenLink": "the token verifier's errors, for a token a relay link carries (auth tests)",
	"delivery/journeys.go attempt":   "Config.Allow's errors (cmd/rtmrec allowUpload, internal/s3allow tests)",
}

// TestCustomerTextInTheCode reads the module's code for what it says to
// customers: every rtm.Errorf's format and every FAILED reason's literal
// text pass Check; an error's own text reaches a customer only from the
// sources above; and every FAILED reason is built from a failure of the
// vocabulary (rtm.Failure.Reason), so docs can list them from rtm alone.
func TestCustomerTextInTheCode(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	seen := map[string]bool{}
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", "testdata", "integration":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		reasonVars := failureReasonVars(f)
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			where := rel + " " + fn.Name.Name
			locals := localReasonVars(fn.Body, reasonVars)
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				pos := fset.Position(call.Pos())
				switch {
				case isRTMErrorf(call, f.Name.Name):
					checked++
					if len(call.Args) < 2 {
						return true
					}
					checkFormat(t, pos, call.Args[1])
					for _, a := range call.Args[2:] {
						if carriesError(a) {
							seen[where] = true
							if errorSources[where] == "" {
								t.Errorf("%s: rtm.Errorf passes an error's own text to the client", pos)
							}
						}
					}
				case isFailureReason(call) != "":
					checked++
					for _, a := range call.Args {
						checkFormat(t, pos, a)
						if carriesError(a) {
							seen[where] = true
							if errorSources[where] == "" {
								t.Errorf("%s: a FAILED reason carries an error's own text", pos)
							}
						}
					}
				case isDecideFailed(call):
					checked++
					reason := call.Args[2]
					if id, ok := reason.(*ast.Ident); ok && (reasonVars[id.Name] || locals[id.Name]) {
						return true
					}
					if c, ok := reason.(*ast.CallExpr); ok && isFailureReason(c) != "" {
						return true
					}
					t.Errorf("%s: a FAILED reason not built with an rtm.Failure's Reason", pos)
				}
				return true
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("only %d places checked: the scan is not reading the code", checked)
	}
	for where := range errorSources {
		if !seen[where] {
			t.Errorf("%s is listed as a source of customer-facing errors but passes none: update the list", where)
		}
	}
}

var verb = regexp.MustCompile(`%[-+# 0-9.*]*[a-zA-Z%]`)

// checkFormat applies Check to a string literal (a format's verbs count as
// words), or to the literal format of a fmt.Sprintf.
func checkFormat(t *testing.T, pos token.Position, e ast.Expr) {
	t.Helper()
	if c, ok := e.(*ast.CallExpr); ok {
		if sel, ok := c.Fun.(*ast.SelectorExpr); ok && isIdent(sel.X, "fmt") && sel.Sel.Name == "Sprintf" && len(c.Args) > 0 {
			e = c.Args[0]
		}
	}
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return
	}
	s, err := strconv.Unquote(lit.Value)
	if err != nil {
		t.Errorf("%s: %v", pos, err)
		return
	}
	if err := Check(verb.ReplaceAllString(s, "x")); err != nil {
		t.Errorf("%s: %v", pos, err)
	}
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

func isRTMErrorf(c *ast.CallExpr, pkg string) bool {
	switch f := c.Fun.(type) {
	case *ast.SelectorExpr:
		return isIdent(f.X, "rtm") && f.Sel.Name == "Errorf"
	case *ast.Ident:
		return pkg == "rtm" && f.Name == "Errorf"
	}
	return false
}

// isFailureReason returns the failure of a call rtm.FailureX.Reason(...).
func isFailureReason(c *ast.CallExpr) string {
	sel, ok := c.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Reason" {
		return ""
	}
	f, ok := sel.X.(*ast.SelectorExpr)
	if !ok || !isIdent(f.X, "rtm") || !strings.HasPrefix(f.Sel.Name, "Failure") {
		return ""
	}
	return f.Sel.Name
}

// isDecideFailed matches a journey's j.decide(jr, stateFailed, reason, ...).
func isDecideFailed(c *ast.CallExpr) bool {
	sel, ok := c.Fun.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "decide" && len(c.Args) >= 3 && isIdent(c.Args[1], "stateFailed")
}

// failureReasonVars are the package variables of f set to an
// rtm.FailureX.Reason(...).
func failureReasonVars(f *ast.File) map[string]bool {
	out := map[string]bool{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.VAR {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, v := range vs.Values {
				if c, ok := v.(*ast.CallExpr); ok && isFailureReason(c) != "" {
					out[vs.Names[i].Name] = true
				}
			}
		}
	}
	return out
}

// localReasonVars are the variables of a function body that are only ever
// assigned reason variables or rtm.FailureX.Reason(...).
func localReasonVars(body *ast.BlockStmt, reasonVars map[string]bool) map[string]bool {
	ok := map[string]bool{}
	bad := map[string]bool{}
	ast.Inspect(body, func(n ast.Node) bool {
		as, isAssign := n.(*ast.AssignStmt)
		if !isAssign || len(as.Lhs) != len(as.Rhs) {
			return true
		}
		for i, l := range as.Lhs {
			id, isIdent := l.(*ast.Ident)
			if !isIdent {
				continue
			}
			r := as.Rhs[i]
			c, isCall := r.(*ast.CallExpr)
			rid, isRIdent := r.(*ast.Ident)
			if isCall && isFailureReason(c) != "" || isRIdent && reasonVars[rid.Name] {
				ok[id.Name] = true
			} else {
				bad[id.Name] = true
			}
		}
		return true
	})
	for name := range bad {
		delete(ok, name)
	}
	return ok
}

// carriesError reports whether e is an error or its text: err, someErr,
// x.Error().
func carriesError(e ast.Expr) bool {
	switch v := e.(type) {
	case *ast.Ident:
		return v.Name == "err" || strings.HasSuffix(v.Name, "Err") || strings.HasSuffix(v.Name, "err")
	case *ast.CallExpr:
		sel, ok := v.Fun.(*ast.SelectorExpr)
		return ok && sel.Sel.Name == "Error" && len(v.Args) == 0
	}
	return false
}
