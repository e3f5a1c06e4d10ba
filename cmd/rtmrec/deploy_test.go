package main

import (
	"maps"
	"os"
	"strings"
	"testing"
)

// deployEnv reads KEY=value settings from the deploy files: the ENV lines
// of the Dockerfile, the Environment= lines of the systemd unit (with %S,
// the state root, expanded), or a whole environment file.
func deployEnv(t *testing.T, file, prefix string) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/" + file)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	env := map[string]string{}
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		for kv := range strings.FieldsSeq(rest) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("%s: %q is not KEY=value", file, kv)
			}
			if strings.HasPrefix(v, `"`) || strings.HasPrefix(v, "'") {
				t.Fatalf("%s: %s is quoted; docker --env-file would keep the quotes", file, k)
			}
			env[k] = strings.ReplaceAll(v, "%S", "/var/lib")
		}
	}
	return env
}

// TestDeployFilesConfigure starts from what the image and the unit set,
// adds the environment example both are documented with, and checks that
// rtmrec accepts the result; without the example's secret it must refuse
// for the reason the documentation gives.
func TestDeployFilesConfigure(t *testing.T) {
	example := deployEnv(t, "rtmrec.env.example", "")
	for name, base := range map[string]map[string]string{
		"docker":  deployEnv(t, "Dockerfile", "ENV "),
		"systemd": deployEnv(t, "rtmrec.service", "Environment="),
	} {
		t.Run(name, func(t *testing.T) {
			env := maps.Clone(base)
			maps.Copy(env, example) // the env file wins, in both
			c, err := parseConfig(nil, func(k string) string { return env[k] })
			if err != nil {
				t.Fatalf("the documented settings do not start rtmrec: %v", err)
			}
			if c.DataDir != "/var/lib/rtmrec" || c.ICEUDPPort != 50000 || len(c.PublicIPs) == 0 || !c.authConfigured() {
				t.Fatalf("config = data %s, udp %d, public ip %v, auth %v", c.DataDir, c.ICEUDPPort, c.PublicIPs, c.authConfigured())
			}
			delete(env, "RTMREC_AUTH_HS256_SECRET")
			if _, err := parseConfig(nil, func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "authentication is required") {
				t.Fatalf("without a secret: %v, want the authentication message", err)
			}
		})
	}
}
