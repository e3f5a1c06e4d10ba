package recorder

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// haveSyncfs: Linux syncs a whole file system in one call (syncfs(2), which
// also reports write-back errors since Linux 5.8).
const haveSyncfs = true

// syncfs makes everything written to the file system holding dir durable.
func syncfs(dir *os.File) error {
	raw, err := dir.SyscallConn()
	if err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.Syncfs(int(fd)) }); err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("syncfs: %w", serr)
	}
	return nil
}
