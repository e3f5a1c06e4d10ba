package main

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/rtmrec/rtmrec/cluster"
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

// TestKubernetesSettingsConfigure checks the StatefulSet's environment and
// the Secret it reads against the config parser, with the downward API's
// values filled in as Kubernetes would: a pod joins its cluster with its
// name as node id.
func TestKubernetesSettingsConfigure(t *testing.T) {
	env := map[string]string{}
	for _, file := range []string{"rtmrec.yaml", "secret.yaml"} {
		b, err := os.ReadFile("../../deploy/kubernetes/" + file)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var obj struct {
				Kind       string            `yaml:"kind"`
				StringData map[string]string `yaml:"stringData"`
				Spec       struct {
					Template struct {
						Spec struct {
							Containers []struct {
								Env []struct {
									Name      string `yaml:"name"`
									Value     string `yaml:"value"`
									ValueFrom struct {
										FieldRef struct {
											FieldPath string `yaml:"fieldPath"`
										} `yaml:"fieldRef"`
									} `yaml:"valueFrom"`
								} `yaml:"env"`
							} `yaml:"containers"`
						} `yaml:"spec"`
					} `yaml:"template"`
				} `yaml:"spec"`
			}
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			maps.Copy(env, obj.StringData)
			if obj.Kind != "StatefulSet" {
				continue
			}
			downward := map[string]string{"metadata.name": "rtmrec-0", "status.hostIP": "192.0.2.10"}
			for _, e := range obj.Spec.Template.Spec.Containers[0].Env {
				env[e.Name] = e.Value
				if f := e.ValueFrom.FieldRef.FieldPath; f != "" {
					env[e.Name] = downward[f]
				}
			}
		}
	}
	c, err := parseConfig(nil, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the StatefulSet's settings do not start rtmrec: %v", err)
	}
	if c.RedisURL == "" || c.NodeID != "rtmrec-0" || c.SoftCapacity == 0 || c.DrainTimeout == 0 || c.MaxSessions <= c.SoftCapacity {
		t.Fatalf("cluster settings: redis %q, node %q, soft capacity %d (max sessions %d), drain %v",
			c.RedisURL, c.NodeID, c.SoftCapacity, c.MaxSessions, c.DrainTimeout)
	}
	rdb, err := cluster.NewRedisClient(c.RedisURL)
	if err != nil {
		t.Fatalf("RTMREC_REDIS_URL: %v", err)
	}
	_ = rdb.Close()
}
