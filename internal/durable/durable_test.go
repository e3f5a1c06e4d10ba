package durable

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileReplacesWithoutLeftovers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "job.json")
	for _, content := range []string{"first", "second, longer content"} {
		if err := WriteFile(path, []byte(content)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read %q (%v), want %q", got, err, content)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("%d files in the directory, want only the target (no temp files)", len(entries))
	}
	if err := WriteFile(filepath.Join(dir, "missing", "x"), nil); err == nil {
		t.Fatal("writing into a missing directory succeeded")
	}
}

func TestLoadJSONSetsBadFilesAside(t *testing.T) {
	dir := t.TempDir()
	type rec struct{ ID string }
	for name, content := range map[string]string{
		"a.job":         `{"ID":"a"}`,
		"b.job":         `{"ID":""}`, // fails the check
		"c.job":         `{not json`,
		".d.job.tmp123": `{"ID":"d"}`, // an interrupted write
		"e.other":       `{"ID":"e"}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	items, bad, err := LoadJSON(dir, ".job", func(r *rec) error {
		if r.ID == "" {
			return os.ErrInvalid
		}
		return nil
	})
	if err != nil || len(items) != 1 || items[0].ID != "a" || len(bad) != 2 {
		t.Fatalf("items=%v bad=%v err=%v", items, bad, err)
	}
	for _, name := range []string{"b.job.corrupt", "c.job.corrupt", "e.other"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".d.job.tmp123")); !os.IsNotExist(err) {
		t.Error("the temp file of an interrupted write was kept")
	}
}
