//go:build !linux && !darwin && !freebsd

package limits

import "errors"

// freeDiskBytes is not implemented here; a MinFreeDiskBytes watermark then
// makes every recording fail, which is safer than ignoring it.
func freeDiskBytes(string) (uint64, error) {
	return 0, errors.ErrUnsupported
}
