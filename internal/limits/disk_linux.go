package limits

import "syscall"

// freeDiskBytes is the space in dir's file system available to an
// unprivileged process (f_bavail, excluding root's reserve).
func freeDiskBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	// statfs(2): block counts are in units of f_frsize where the kernel
	// sets it; older kernels leave it 0 and mean f_bsize.
	unit := uint64(st.Frsize)
	if unit == 0 {
		unit = uint64(st.Bsize)
	}
	return st.Bavail * unit, nil
}
