package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// NewRedisClient connects to the Redis named by a -redis-url:
//
//	redis://[user:password@]host:port[/db][?option=value...]
//	rediss://...                        the same over TLS
//	unix://[user:password@]/path/to/redis.sock[?db=N]
//	redis+sentinel://[s-user:s-password@]sentinel:port[/db]?master_name=NAME[&addr=sentinel2:port...][&password=P][&username=U]
//	rediss+sentinel://...               the same, TLS to the sentinels and the master
//
// The first three are go-redis' ParseURL forms. The Sentinel forms are
// go-redis' ParseFailoverURL with a scheme of their own, so that the kind of
// deployment is visible in the URL: the host and every addr= are Sentinels;
// the user info authenticates to the Sentinels, and the username= and
// password= options to the master. master_name is required. Options such
// as dial_timeout=3s or pool_size=20 are accepted by every form.
//
// The client is not contacted here; the Node reports whether it is
// reachable. Errors never contain the URL, which may hold a password.
func NewRedisClient(rawURL string) (redis.UniversalClient, error) {
	opt, failover, err := redisOptions(rawURL)
	if err != nil {
		return nil, err
	}
	if failover != nil {
		return redis.NewFailoverClient(failover), nil
	}
	return redis.NewClient(opt), nil
}

// redisOptions parses a -redis-url: standalone options, or Sentinel ones.
func redisOptions(rawURL string) (*redis.Options, *redis.FailoverOptions, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, errors.New("redis URL is malformed")
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
		opt, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, nil, fmt.Errorf("redis URL: %w", redactErr(err, u))
		}
		return opt, nil, nil
	case "redis+sentinel", "rediss+sentinel":
		u.Scheme = strings.TrimSuffix(u.Scheme, "+sentinel")
		opt, err := redis.ParseFailoverURL(u.String())
		if err != nil {
			return nil, nil, fmt.Errorf("redis sentinel URL: %w", redactErr(err, u))
		}
		if opt.MasterName == "" {
			return nil, nil, errors.New("redis sentinel URL: master_name is required")
		}
		return nil, opt, nil
	default:
		return nil, nil, fmt.Errorf("redis URL scheme %q is not one of redis, rediss, unix, redis+sentinel, rediss+sentinel", u.Scheme)
	}
}

// redactErr keeps the URL's passwords out of a parse error: go-redis
// quotes option values in some of its messages.
func redactErr(err error, u *url.URL) error {
	msg := err.Error()
	var secrets []string
	if p, ok := u.User.Password(); ok {
		secrets = append(secrets, p)
	}
	if p := u.Query().Get("password"); p != "" {
		secrets = append(secrets, p)
	}
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return errors.New(msg)
}

// RedisLogger adapts a slog.Logger to go-redis' logger, for
// redis.SetLogger in main: go-redis otherwise prints its own lines (every
// failed dial while Redis is down) to stderr, outside the structured log.
// They go out at debug level; the Node reports an outage once, as a
// warning.
func RedisLogger(l *slog.Logger) interface {
	Printf(ctx context.Context, format string, v ...any)
} {
	return redisLogger{l.With("component", "go-redis")}
}

type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.DebugContext(ctx, fmt.Sprintf(format, v...))
}
