package session

import (
	"net/url"
	"strings"
)

// ExpandUploadURL fills the placeholders of an operator's upload URL
// template: {tenant} (the token's tenant, "default" without one), {stream}
// (the session id), {recording_id} and {ext} (ogg, webm or mkv). Values are
// path-escaped, so a session id cannot add path segments or a query.
func ExpandUploadURL(tmpl, tenant, stream, recordingID, ext string) string {
	if tenant == "" {
		tenant = "default"
	}
	return strings.NewReplacer(
		"{tenant}", url.PathEscape(tenant),
		"{stream}", url.PathEscape(stream),
		"{recording_id}", url.PathEscape(recordingID),
		"{ext}", url.PathEscape(ext),
	).Replace(tmpl)
}
