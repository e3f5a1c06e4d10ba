// Package kubernetes_test checks the Kubernetes manifests beside it: they
// parse, and they hold the invariants the cluster depends on (kubectl is not
// needed to run this).
package kubernetes_test

import (
	"bytes"
	"errors"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

type object struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Ports []struct {
			Name string `yaml:"name"`
		} `yaml:"ports"`
		Template struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type podSpec struct {
	HostNetwork                   bool   `yaml:"hostNetwork"`
	DNSPolicy                     string `yaml:"dnsPolicy"`
	TerminationGracePeriodSeconds int    `yaml:"terminationGracePeriodSeconds"`
	Affinity                      struct {
		PodAntiAffinity struct {
			Required []struct {
				TopologyKey string `yaml:"topologyKey"`
			} `yaml:"requiredDuringSchedulingIgnoredDuringExecution"`
		} `yaml:"podAntiAffinity"`
	} `yaml:"affinity"`
	Containers []struct {
		Args []string `yaml:"args"`
		Env  []struct {
			Name      string `yaml:"name"`
			Value     string `yaml:"value"`
			ValueFrom struct {
				FieldRef struct {
					FieldPath string `yaml:"fieldPath"`
				} `yaml:"fieldRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
		Ports          []port  `yaml:"ports"`
		ReadinessProbe probe   `yaml:"readinessProbe"`
		LivenessProbe  probe   `yaml:"livenessProbe"`
		VolumeMounts   []mount `yaml:"volumeMounts"`
	} `yaml:"containers"`
}

type port struct {
	ContainerPort int    `yaml:"containerPort"`
	Protocol      string `yaml:"protocol"`
}

type mount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
	} `yaml:"httpGet"`
}

func load(t *testing.T, file string) []object {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []object
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out = append(out, o)
	}
}

func find(t *testing.T, objs []object, kind, name string) object {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && (name == "" || o.Metadata.Name == name) {
			return o
		}
	}
	t.Fatalf("no %s %s", kind, name)
	return object{}
}

func TestKustomization(t *testing.T) {
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	for _, r := range k.Resources {
		if _, err := os.Stat(r); err != nil {
			t.Errorf("resource %s: %v", r, err)
		}
	}
	if slices.Contains(k.Resources, "recover-job.yaml") {
		t.Error("the recover Job would run at every apply")
	}
}

func TestStatefulSet(t *testing.T) {
	objs := load(t, "rtmrec.yaml")
	sts := find(t, objs, "StatefulSet", "rtmrec")
	pod := sts.Spec.Template.Spec
	if !pod.HostNetwork || pod.DNSPolicy != "ClusterFirstWithHostNet" {
		t.Errorf("media on the host's network with cluster DNS: hostNetwork %v, dnsPolicy %q", pod.HostNetwork, pod.DNSPolicy)
	}
	if r := pod.Affinity.PodAntiAffinity.Required; len(r) != 1 || r[0].TopologyKey != "kubernetes.io/hostname" {
		t.Errorf("one pod per host is required: %+v", r)
	}
	c := pod.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		if e.ValueFrom.FieldRef.FieldPath != "" {
			env[e.Name] = "fieldRef:" + e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["RTMREC_NODE_ID"] != "fieldRef:metadata.name" || env["RTMREC_PUBLIC_IP"] != "fieldRef:status.hostIP" {
		t.Errorf("node id and public address from the downward API: %v", env)
	}
	drain, err1 := time.ParseDuration(env["RTMREC_DRAIN_TIMEOUT"])
	shutdown, err2 := time.ParseDuration(env["RTMREC_SHUTDOWN_TIMEOUT"])
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	if grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second; grace <= drain+shutdown {
		t.Errorf("grace period %v does not cover the drain %v and the shutdown %v", grace, drain, shutdown)
	}
	ice, _ := strconv.Atoi(env["RTMREC_ICE_UDP_PORT"])
	if !slices.Contains(c.Ports, port{ContainerPort: ice, Protocol: "UDP"}) {
		t.Errorf("the ICE port %d/udp is not declared", ice)
	}
	if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("probes: readiness %q, liveness %q", c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatal("a volume per pod is required")
	}
	vol := sts.Spec.VolumeClaimTemplates[0].Metadata.Name
	if !slices.Contains(c.VolumeMounts, mount{Name: vol, MountPath: env["RTMREC_DATA_DIR"]}) {
		t.Errorf("the per-pod volume %q is not the data directory %q", vol, env["RTMREC_DATA_DIR"])
	}
}

func TestRedisURLPointsAtRedis(t *testing.T) {
	secret := find(t, load(t, "secret.yaml"), "Secret", "rtmrec")
	u, err := url.Parse(secret.StringData["RTMREC_REDIS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	svc := find(t, load(t, "redis.yaml"), "Service", "")
	if u.Hostname() != svc.Metadata.Name {
		t.Errorf("RTMREC_REDIS_URL names %q, the Redis Service is %q", u.Hostname(), svc.Metadata.Name)
	}
}

func TestRecoverJob(t *testing.T) {
	job := find(t, load(t, "recover-job.yaml"), "Job", "")
	c := job.Spec.Template.Spec.Containers[0]
	if len(c.Args) != 3 || c.Args[0] != "recover" || c.Args[1] != "-data-dir" || len(c.VolumeMounts) != 1 || c.Args[2] != c.VolumeMounts[0].MountPath {
		t.Errorf("the job must run recover on its mounted volume: args %v, mounts %+v", c.Args, c.VolumeMounts)
	}
}
