package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestConfigFlagsAndEnvironment(t *testing.T) {
	env := map[string]string{
		"RTMREC_DATA_DIR":                "/from/env",
		"RTMREC_LISTEN":                  "127.0.0.1:9999",
		"RTMREC_CONNECT_TIMEOUT":         "3s",
		"RTMREC_WEBHOOK_SECRET":          "a,b",
		"RTMREC_ALLOW_PRIVATE_URLS":      "true",
		"RTMREC_TRUSTED_PROXIES":         "10.0.0.0/8, 192.0.2.7",
		"RTMREC_S3_ALLOW":                "recordings/{tenant}/,archive",
		"RTMREC_MAX_SESSIONS_PER_TENANT": "7",
		"RTMREC_REDIS_URL":               "redis+sentinel://s1:26379?master_name=m",
		"RTMREC_NODE_ID":                 "rtmrec-2",
		"RTMREC_DRAIN_TIMEOUT":           "15m",
	}
	getenv := func(k string) string { return env[k] }
	c, err := parseConfig([]string{"-listen", "127.0.0.1:7000", "-webhook-secret", "flag"}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:7000" {
		t.Errorf("listen = %s: the flag must win over the environment", c.Listen)
	}
	if c.DataDir != "/from/env" || c.ConnectTimeout != 3*time.Second || !c.AllowPrivateURLs {
		t.Errorf("environment not applied: %+v", c)
	}
	if strings.Join(c.TrustedProxies, " ") != "10.0.0.0/8 192.0.2.7" || strings.Join(c.S3Allow, " ") != "recordings/{tenant}/ archive" || c.MaxSessionsPerTenant != 7 {
		t.Errorf("lists from the environment: proxies %q, s3 %q, sessions per tenant %d", c.TrustedProxies, c.S3Allow, c.MaxSessionsPerTenant)
	}
	if c.RedisURL == "" || c.NodeID != "rtmrec-2" || c.DrainTimeout != 15*time.Minute {
		t.Errorf("cluster settings from the environment: %q %q %v", c.RedisURL, c.NodeID, c.DrainTimeout)
	}
	if strings.Join(c.WebhookSecrets, ",") != "flag" {
		t.Errorf("webhook secrets = %v: a repeatable flag replaces the environment's list", c.WebhookSecrets)
	}
	d, err := parseConfig(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if d.Listen != "127.0.0.1:8080" || d.DataDir != "./data" || d.AllowPrivateURLs {
		t.Errorf("defaults = %+v", d)
	}
	if host, _ := os.Hostname(); d.NodeID != host || d.RedisURL != "" || d.DrainTimeout != 0 {
		t.Errorf("cluster defaults: node id %q (host %q), redis %q, drain %v", d.NodeID, host, d.RedisURL, d.DrainTimeout)
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // part of the error; empty: valid
	}{
		{"loopback without auth", []string{"-listen", "127.0.0.1:1"}, ""},
		{"localhost without auth", []string{"-listen", "localhost:1"}, ""},
		{"ipv6 loopback without auth", []string{"-listen", "[::1]:1"}, ""},
		{"all interfaces without auth", []string{"-listen", ":8080"}, "authentication is required"},
		{"public address without auth", []string{"-listen", "0.0.0.0:8080"}, "-insecure-no-auth"},
		{"explicitly insecure", []string{"-listen", "0.0.0.0:8080", "-insecure-no-auth"}, ""},
		{"with a secret", []string{"-listen", "0.0.0.0:8080", "-auth-hs256-secret", "x"}, ""},
		{"cert without key", []string{"-tls-cert", "c.pem"}, "go together"},
		{"bad port range", []string{"-ice-port-min", "6000", "-ice-port-max", "5000"}, "range"},
		{"pprof without an admin listener", []string{"-pprof"}, "-pprof needs -admin-listen"},
		{"pprof on the admin listener", []string{"-pprof", "-admin-listen", "127.0.0.1:0"}, ""},
		{"bad log level", []string{"-log-level", "loud"}, "log-level"},
		{"three webhook secrets", []string{"-webhook-secret", "a", "-webhook-secret", "b", "-webhook-secret", "c"}, "at most two"},
		{"stray argument", []string{"serve"}, "unexpected"},
		{"dev implies private urls", []string{"-dev"}, ""},
		{"compat upload template", []string{"-compat-upload-url", "s3://calls/{tenant}/{stream}/{recording_id}.{ext}", "-compat-webhook-url", "https://hooks.example.com/rtm"}, ""},
		{"compat upload to a relative path", []string{"-compat-upload-url", "/srv/{stream}.{ext}"}, "absolute"},
		{"compat upload with an unknown placeholder", []string{"-compat-upload-url", "https://u.example.com/{session}.{ext}"}, "placeholder"},
		{"compat webhook to s3", []string{"-compat-webhook-url", "s3://bucket/hooks"}, "compat-webhook-url"},
		{"dev on all interfaces", []string{"-dev", "-listen", "0.0.0.0:8080", "-auth-hs256-secret", "x"}, "-dev only runs on a loopback -listen"},
		{"dev on no host", []string{"-dev", "-listen", ":8080", "-insecure-no-auth"}, "-dev only runs on a loopback"},
		{"dev on ipv6 loopback", []string{"-dev", "-listen", "[::1]:0"}, ""},
		{"trusted proxies", []string{"-trusted-proxies", "10.0.0.0/8", "-trusted-proxies", "192.0.2.7,2001:db8::/32"}, ""},
		{"trusted proxy by name", []string{"-trusted-proxies", "lb.internal"}, "-trusted-proxies"},
		{"Forwarded header", []string{"-trusted-proxies", "10.0.0.0/8", "-client-ip-header", "forwarded"}, ""},
		{"unknown client ip header", []string{"-client-ip-header", "X-Real-IP"}, "X-Real-IP"},
		{"s3 allow-list", []string{"-s3-allow", "recordings/{tenant}/", "-s3-allow", "archive"}, ""},
		{"s3 allow rule climbing out", []string{"-s3-allow", "recordings/../x"}, "-s3-allow"},
		{"s3 allow rule with an unknown placeholder", []string{"-s3-allow", "recordings/{tenant_id}"}, "-s3-allow"},
		{"cluster node", []string{"-redis-url", "redis://r:6379", "-node-id", "rtmrec-0", "-soft-capacity", "400", "-drain-timeout", "15m"}, ""},
		{"drain without a cluster", []string{"-drain-timeout", "30s"}, ""},
		{"soft capacity without a cluster", []string{"-soft-capacity", "10"}, "needs -redis-url"},
		{"node id with a colon", []string{"-redis-url", "redis://r:6379", "-node-id", "a:b"}, "-node-id"},
		{"empty node id", []string{"-redis-url", "redis://r:6379", "-node-id", ""}, "-node-id"},
		{"negative drain", []string{"-drain-timeout", "-1s"}, "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, func(string) string { return "" })
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tt.name == "dev implies private urls" && !c.AllowPrivateURLs {
					t.Fatal("-dev did not allow private URLs")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestParseICEServers(t *testing.T) {
	got, err := parseICEServers([]string{"stun:stun.example.com:3478", "turn:user:p@ss@turn.example.com:3478?transport=tcp"})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].URLs[0] != "stun:stun.example.com:3478" || got[0].Username != "" {
		t.Errorf("stun = %+v", got[0])
	}
	if got[1].URLs[0] != "turn:turn.example.com:3478?transport=tcp" || got[1].Username != "user" || got[1].Credential != "p@ss" {
		t.Errorf("turn = %+v", got[1])
	}
	if _, err := parseICEServers([]string{"http://x"}); err == nil {
		t.Error("accepted an http URL as ICE server")
	}
}
