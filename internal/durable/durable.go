// Package durable writes files so that a crash leaves either the old or the
// new content, never a torn file: the job, event and manifest files that
// let rtmrec lose nothing across a kill -9.
package durable

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// WriteFile replaces path with data: write a temp file in the same
// directory, fsync it, rename it over path, fsync the directory.
func WriteFile(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return errors.Join(err, f.Close())
	}
	if err = f.Sync(); err != nil {
		return errors.Join(err, f.Close())
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir makes a rename or removal in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// LoadJSON reads every file of dir ending in ext as a JSON T, in directory
// order. Temp files an interrupted WriteFile left behind are removed; a file
// that cannot be read, decoded or does not pass check is renamed aside to
// <name>.corrupt (never deleted) and reported in bad.
func LoadJSON[T any](dir, ext string, check func(*T) error) (items []*T, bad []string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		name := e.Name()
		full := filepath.Join(dir, name)
		switch {
		case strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp"):
			_ = os.Remove(full)
		case strings.HasSuffix(name, ext):
			v := new(T)
			data, err := os.ReadFile(full)
			if err == nil {
				err = json.Unmarshal(data, v)
			}
			if err == nil {
				err = check(v)
			}
			if err != nil {
				_ = os.Rename(full, full+".corrupt")
				bad = append(bad, fmt.Sprintf("%s: %v", name, err))
				continue
			}
			items = append(items, v)
		}
	}
	return items, bad, nil
}
