//go:build darwin || freebsd

package limits

import "syscall"

// freeDiskBytes is the space in dir's file system available to an
// unprivileged process (f_bavail, excluding root's reserve).
func freeDiskBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
