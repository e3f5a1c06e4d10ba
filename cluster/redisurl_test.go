package cluster

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRedisURL(t *testing.T) {
	std, _, err := redisOptions("redis://user:pw@10.0.0.5:6380/2?dial_timeout=3s&pool_size=20")
	if err != nil {
		t.Fatal(err)
	}
	if std.Addr != "10.0.0.5:6380" || std.DB != 2 || std.Username != "user" || std.Password != "pw" ||
		std.DialTimeout != 3*time.Second || std.PoolSize != 20 || std.TLSConfig != nil {
		t.Fatalf("redis:// parsed as %+v", std)
	}
	if std, _, err := redisOptions("rediss://redis.internal:6379"); err != nil || std.TLSConfig == nil {
		t.Fatalf("rediss:// without TLS: %v", err)
	}
	if std, _, err := redisOptions("unix:///run/redis/redis.sock?db=3"); err != nil || std.Network != "unix" || std.Addr != "/run/redis/redis.sock" || std.DB != 3 {
		t.Fatalf("unix:// parsed as %+v, %v", std, err)
	}

	_, fo, err := redisOptions("redis+sentinel://sentinel-user:sentinel-pw@s1:26379/1?master_name=mymaster&addr=s2:26379&addr=s3:26379&password=master-pw")
	if err != nil {
		t.Fatal(err)
	}
	if fo.MasterName != "mymaster" || !slices.Equal(fo.SentinelAddrs, []string{"s1:26379", "s2:26379", "s3:26379"}) ||
		fo.SentinelUsername != "sentinel-user" || fo.SentinelPassword != "sentinel-pw" || fo.Password != "master-pw" || fo.DB != 1 || fo.TLSConfig != nil {
		t.Fatalf("redis+sentinel:// parsed as %+v", fo)
	}
	if _, fo, err := redisOptions("rediss+sentinel://s1:26379?master_name=m"); err != nil || fo.TLSConfig == nil {
		t.Fatalf("rediss+sentinel:// without TLS: %v", err)
	}

	bad := []struct{ url, want string }{
		{"http://redis:6379", "scheme"},
		{"redis+sentinel://s1:26379", "master_name is required"},
		{"redis://:s3cret@h:1?dial_timeout=s3cret", "redis URL"},
		{"redis://:s3cret@h:1?no_such_option=1", "redis URL"},
		{"redis://:s3cret@h:1/notadb", "redis URL"},
		{"redis+sentinel://:s3cret@h:1?master_name=m&password=s3cret&bogus=s3cret", "sentinel URL"},
		{"redis://:s3cret@[::1", "malformed"},
	}
	for _, b := range bad {
		_, _, err := redisOptions(b.url)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: err %v, want %q", b.url, err, b.want)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error shows the password: %v", b.url, err)
		}
	}
}
