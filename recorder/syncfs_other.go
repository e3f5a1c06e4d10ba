//go:build !linux

package recorder

import (
	"errors"
	"os"
)

// haveSyncfs: elsewhere each recording fsyncs its own file.
const haveSyncfs = false

func syncfs(*os.File) error { return errors.New("syncfs: not supported") }
