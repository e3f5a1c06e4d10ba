package limits

import (
	"fmt"
	"net/http"
)

// checkDisk refuses when the data directory has less free space than the
// configured watermark: a recording that runs the disk full corrupts itself
// and every other recording being written.
func (l *Limiter) checkDisk() error {
	if l.cfg.MinFreeDiskBytes == 0 {
		return nil
	}
	free, err := l.freeDisk(l.cfg.DiskDir)
	if err != nil {
		return fmt.Errorf("limits: free space in %s: %w", l.cfg.DiskDir, err)
	}
	if free < l.cfg.MinFreeDiskBytes {
		return l.refuse(LimitDisk, http.StatusServiceUnavailable, 0)
	}
	return nil
}
