// Package gateway wires the parts into a running gateway: it loads the
// config, compiles and swaps snapshots, owns the client and admin
// listeners, watches the config file and drains on shutdown. cmd/gateway
// is flags and signals around it; tests run it in-process.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/admin"
	"github.com/sluice-gw/sluice/internal/audit"
	"github.com/sluice-gw/sluice/internal/auth"
	"github.com/sluice-gw/sluice/internal/backend"
	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/console"
	"github.com/sluice-gw/sluice/internal/experiments"
	"github.com/sluice-gw/sluice/internal/health"
	"github.com/sluice-gw/sluice/internal/limits"
	"github.com/sluice-gw/sluice/internal/metrics"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/redisconn"
	"github.com/sluice-gw/sluice/internal/rollout"
	"github.com/sluice-gw/sluice/internal/shadow"
	"github.com/sluice-gw/sluice/internal/spawn"
)

// watchDebounce is how long the watcher waits after the last event before
// reading the file: long enough for an editor's write-then-rename or a
// truncate-then-write to finish, short enough to apply well within a second.
const watchDebounce = 100 * time.Millisecond

// Gateway is one running gateway.
type Gateway struct {
	path     string
	log      *slog.Logger
	metrics  *metrics.Metrics
	registry *backend.Registry
	proxy    *proxy.Proxy
	workers  *spawn.Supervisor
	exps     *experiments.Registry
	shadows  *shadow.Registry
	rollouts *rollout.Registry
	health   *health.Checker
	probed   atomic.Pointer[map[health.Target]probed] // where each health target's probes land
	initial  *config.Loaded
	// membership is signalled when a spawned pool's replicas change, so
	// the snapshot is compiled again with the new addresses.
	membership chan struct{}

	reloadMu    sync.Mutex
	generation  uint64
	lastErr     *admin.LoadError
	lastErrSum  string
	lastErrMu   sync.RWMutex
	server      *fasthttp.Server
	adminServer *http.Server
	clientLn    net.Listener
	adminLn     net.Listener
	// certs is the client listener's certificate (nil without tls);
	// redirect and redirectLn the plain-HTTP redirect listener (nil
	// without redirect_http).
	certs        *certStore
	redirect     *fasthttp.Server
	redirectLn   net.Listener
	serveErr     chan error
	stopWatching context.CancelFunc

	// redis is the client of the config's redis block (nil without one),
	// replaced when a reload changes the block. Guarded by reloadMu.
	redis    *redis.Client
	redisCfg *config.Redis
	// hotRedis is the same server's client for requests on their way
	// (global rate limits, the shared cache), with a pool sized for a
	// round trip per request; hot tracks its health.
	hotRedis *redis.Client
	hot      *redisconn.Conn
	limits   *limits.Registry
	caches   *cache.Registry
	// stopPusher ends the experiments' pusher; pusherDone closes when it has.
	stopPusher context.CancelFunc
	pusherDone chan struct{}
	// auth keeps the keys and JWT files, watched; audit is the audit log
	// of the snapshot serving now (nil without one). Guarded by reloadMu.
	auth  *auth.Store
	audit *audit.Log

	// console is the operator console at /ui/; stopConsole ends its
	// traffic sampler and consoleDone closes when it has.
	console     *console.Console
	stopConsole context.CancelFunc
	consoleDone chan struct{}
	// previous is the config applied before the one serving now (nil
	// until a reload applies one), for the console's diff.
	previous atomic.Pointer[console.AppliedConfig]
}

// New loads and validates the config at path. It starts nothing; call Start.
func New(path string, log *slog.Logger) (*Gateway, error) {
	loaded, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if err := openableRecords(loaded.Config); err != nil {
		return nil, err
	}
	if err := checkAuthFiles(loaded.Config); err != nil {
		return nil, err
	}
	if err := rollout.CheckDir(loaded.Config.StateDir); err != nil {
		return nil, err
	}
	g := &Gateway{
		path:       path,
		log:        log,
		metrics:    metrics.New(),
		registry:   backend.NewRegistry(),
		exps:       experiments.NewRegistry(),
		shadows:    shadow.NewRegistry(),
		rollouts:   rollout.NewRegistry(log),
		hot:        &redisconn.Conn{},
		initial:    loaded,
		membership: make(chan struct{}, 1),
		serveErr:   make(chan error, 2),
	}
	g.proxy = proxy.New(g.metrics, log)
	g.health = health.New(g.probeReport)
	g.metrics.WatchBackends(g.backendStates)
	g.limits = limits.NewRegistry(g.hot)
	g.caches = cache.NewRegistry(g.hot)
	g.metrics.WatchCaches(g.cacheStates)
	g.hot.SetLogger(log)
	g.metrics.WatchRateLimitRedis(func() metrics.RedisState {
		s := g.hot.State()
		return metrics.RedisState{Configured: s.Configured, Up: s.Up, Errors: s.Errors}
	})
	phases := make([]string, len(rollout.Phases))
	for i, p := range rollout.Phases {
		phases[i] = string(p)
	}
	g.metrics.WatchRollouts(phases, g.rolloutStates)
	g.rollouts.OnEvent(func(ev rollout.Event) { g.metrics.RolloutTransition(ev.Route, ev.Kind) })
	g.workers = spawn.New(log, os.Stderr, g.registry, g.metrics.SpawnRestart, g.membershipChanged)
	g.auth = auth.NewStore(log, g.metrics.AuthFileLoaded)
	g.console = console.New(g, g.metrics.Registry)
	return g, nil
}

// Start binds both listeners, starts the spawned workers, then serves and
// watches the config file. Binding comes first, so a gateway that cannot
// listen starts no worker.
func (g *Gateway) Start() error {
	cfg := g.initial.Config
	s := cfg.Server
	g.server = clientServer(s, g.proxy.Handle, slogPrinter{g.log})
	g.server.HeaderReceived = g.proxy.HeaderReceived
	g.server.ErrorHandler = g.proxy.ErrorHandler
	var err error
	if g.clientLn, err = net.Listen("tcp", s.Listen); err != nil {
		return fmt.Errorf("listen %s: %w", s.Listen, err)
	}
	if s.TLS != nil {
		g.certs = &certStore{}
		if _, err := g.certs.load(s.TLS); err != nil {
			g.clientLn.Close()
			return err
		}
		g.clientLn = tls.NewListener(g.clientLn, g.certs.tlsConfig())
	}
	if s.RedirectHTTP != "" {
		if g.redirectLn, err = net.Listen("tcp", s.RedirectHTTP); err != nil {
			g.clientLn.Close()
			return fmt.Errorf("listen %s: %w", s.RedirectHTTP, err)
		}
		g.redirect = redirectServer(g.clientLn.Addr().String(), s, slogPrinter{g.log})
	}
	if g.adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
		g.clientLn.Close()
		if g.redirectLn != nil {
			g.redirectLn.Close()
		}
		return fmt.Errorf("listen %s: %w", cfg.Admin.Listen, err)
	}
	g.adminServer = &http.Server{
		Handler: admin.Handler(g, g.metrics.Handler(), admin.Options{
			Pprof:   cfg.Admin.Pprof,
			Token:   func() string { return g.proxy.Snapshot().Config.Admin.Token },
			Console: g.console,
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	g.reloadMu.Lock()
	g.apply(g.initial)
	g.reloadMu.Unlock()

	go func() { g.serveErr <- g.server.Serve(g.clientLn) }()
	if g.redirect != nil {
		go func() { g.serveErr <- g.redirect.Serve(g.redirectLn) }()
	}
	go func() {
		if err := g.adminServer.Serve(g.adminLn); !errors.Is(err, http.ErrServerClosed) {
			g.serveErr <- err
		}
	}()

	consoleCtx, stopConsole := context.WithCancel(context.Background())
	g.stopConsole, g.consoleDone = stopConsole, make(chan struct{})
	go func() {
		defer close(g.consoleDone)
		g.console.Run(consoleCtx)
	}()

	pushCtx, stopPusher := context.WithCancel(context.Background())
	g.stopPusher, g.pusherDone = stopPusher, make(chan struct{})
	go func() {
		defer close(g.pusherDone)
		g.exps.RunPusher(pushCtx, experiments.PushInterval)
	}()

	ctx, cancel := context.WithCancel(context.Background())
	g.stopWatching = cancel
	go g.followMembership(ctx)
	go g.rollouts.Run(ctx, rollout.Round)
	if w, err := config.NewWatcher(g.path, watchDebounce, g.log); err != nil {
		g.log.Error("config file not watched; SIGHUP and POST /admin/reload still reload", "err", err)
	} else {
		go w.Run(ctx, func() { _, _ = g.Reload("watch") })
	}
	g.log.Info("gateway serving", "listen", g.clientLn.Addr().String(), "admin", g.adminLn.Addr().String(),
		"generation", g.proxy.Snapshot().Generation, "routes", len(cfg.Routes), "pools", len(cfg.Pools))
	return nil
}

// RedirectAddr is the bound plain-HTTP redirect address ("" without one).
func (g *Gateway) RedirectAddr() string {
	if g.redirectLn == nil {
		return ""
	}
	return g.redirectLn.Addr().String()
}

// clientServer is a fasthttp server with the client listener's limits and
// timeouts (server.*), answering with handler.
func clientServer(s config.Server, handler fasthttp.RequestHandler, log slogPrinter) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:               handler,
		Name:                  "",
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		ReadTimeout:           s.ReadTimeout.D(),
		WriteTimeout:          s.WriteTimeout.D(),
		IdleTimeout:           s.IdleTimeout.D(),
		ReadBufferSize:        int(s.MaxHeaderBytes),
		MaxRequestBodySize:    int(s.MaxBody),
		CloseOnShutdown:       true,
		// Bodies are forwarded as they came; multipart forms are not parsed.
		DisablePreParseMultipartForm: true,
		Logger:                       log,
	}
}

// ClientAddr is the bound client address (useful with port 0).
func (g *Gateway) ClientAddr() string { return g.clientLn.Addr().String() }

// AdminAddr is the bound admin address.
func (g *Gateway) AdminAddr() string { return g.adminLn.Addr().String() }

// Errors delivers a listener that stopped serving on its own.
func (g *Gateway) Errors() <-chan error { return g.serveErr }

// Snapshot is the snapshot serving now.
func (g *Gateway) Snapshot() *proxy.Snapshot { return g.proxy.Snapshot() }

// Shutdown drains: it stops accepting, lets in-flight requests finish
// (their responses carry Connection: close) for up to server.drain_timeout
// or until ctx ends, closes idle keep-alive connections and stops the admin
// listener last, so that health checks see the drain. It returns the drain
// error, if the timeout passed with requests still running.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.stopWatching()
	g.stopConsole()
	<-g.consoleDone
	drain := g.proxy.Snapshot().Config.Server.DrainTimeout.D()
	ctx, cancel := context.WithTimeout(ctx, drain)
	defer cancel()
	g.log.Info("draining", "timeout", drain.String())
	if g.redirect != nil {
		_ = g.redirect.ShutdownWithContext(ctx)
	}
	err := g.server.ShutdownWithContext(ctx)
	if err != nil {
		err = fmt.Errorf("drain: %w", err)
	}
	// Mirrors still comparing hold the snapshot; let them finish within
	// the same drain time, so their pairs are counted and recorded.
	snap := g.proxy.Snapshot()
	snap.Retire()
	select {
	case <-snap.Idle():
	case <-ctx.Done():
		g.log.Warn("shadow mirrors still running at the end of the drain")
	}
	if cerr := g.shadows.Close(); cerr != nil {
		g.log.Error("closing shadow record files", "err", cerr)
	}
	g.health.Close()
	// Workers stop after the clients are drained: nothing runs on them now.
	workersCtx, workersCancel := context.WithTimeout(context.Background(), g.maxStopTimeout()+5*time.Second)
	defer workersCancel()
	if werr := g.workers.Stop(workersCtx); werr != nil {
		g.log.Error("spawned workers did not all stop", "err", werr)
	}
	adminCtx, adminCancel := context.WithTimeout(context.Background(), time.Second)
	defer adminCancel()
	_ = g.adminServer.Shutdown(adminCtx)
	g.stopExperimentsPusher()
	g.auth.Close()
	if g.audit != nil {
		g.audit.Close()
	}
	return err
}

// stopExperimentsPusher ends the pusher, pushes what the last requests
// recorded (bounded by redis.timeout), and closes the Redis client.
func (g *Gateway) stopExperimentsPusher() {
	g.stopPusher()
	<-g.pusherDone
	if err := g.exps.Push(context.Background()); err != nil {
		g.log.Warn("last push of experiment numbers failed; this process's unpushed numbers are lost", "err", err)
	}
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	g.useRedis(nil)
}

// useRedis connects to the redis block's server when it changed (nil: no
// Redis), hands the experiments the new client, and closes the old one.
// Connecting is lazy: a Redis that is down does not fail a reload. Called
// with reloadMu held.
func (g *Gateway) useRedis(cfg *config.Redis) {
	if equalRedis(cfg, g.redisCfg) {
		return
	}
	old, oldHot := g.redis, g.hotRedis
	g.redis, g.hotRedis, g.redisCfg = nil, nil, cfg
	var cluster *experiments.Cluster
	var timeout time.Duration
	if cfg != nil {
		timeout = cfg.Timeout.D()
		opts := experiments.ClientOptions(cfg.Addr, cfg.Password, cfg.DB, timeout)
		g.redis = redis.NewClient(opts)
		cluster = experiments.NewCluster(g.redis, timeout, g.log)
		// A request waits for its connection no longer than for the
		// answer.
		hotOpts := *opts
		hotOpts.PoolSize = hotRedisPool
		hotOpts.PoolTimeout = timeout
		g.hotRedis = redis.NewClient(&hotOpts)
		g.log.Info("experiments, global rate limits and the shared cache use redis", "addr", cfg.Addr, "db", cfg.DB)
	}
	g.exps.SetCluster(cluster)
	g.hot.Use(g.hotRedis, timeout)
	if g.redis != nil {
		g.rollouts.SetCoordinator(rollout.NewShared(g.redis, g.rollouts.Replica(), timeout))
	}
	for _, c := range []*redis.Client{old, oldHot} {
		if c != nil {
			_ = c.Close()
		}
	}
}

// hotRedisPool bounds the connections requests hold to Redis: a round trip
// per request in flight, which Redis answers in microseconds.
const hotRedisPool = 64

func equalRedis(a, b *config.Redis) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Experiments is the A/B state of the split routes.
func (g *Gateway) Experiments() *experiments.Registry { return g.exps }

// Shadows is the comparison state of the shadowed routes.
func (g *Gateway) Shadows() *shadow.Registry { return g.shadows }

// Rollouts is the progressive delivery state of the canary routes.
func (g *Gateway) Rollouts() *rollout.Registry { return g.rollouts }

// PreviousConfig is the config applied before the one serving now; nil
// when none was since the gateway started.
func (g *Gateway) PreviousConfig() *console.AppliedConfig { return g.previous.Load() }

// rolloutStates is the rollouts for the gauges.
func (g *Gateway) rolloutStates() []metrics.RolloutState {
	var out []metrics.RolloutState
	for _, s := range g.rollouts.Statuses() {
		out = append(out, metrics.RolloutState{Route: s.Route, State: string(s.Phase), Step: s.Step, Percent: s.Percent})
	}
	return out
}

// openableRecords checks that every shadow record file can be opened for
// appending, so that a config naming one that cannot is refused whole
// instead of serving without its record.
func openableRecords(cfg *config.Config) error {
	for _, r := range cfg.Routes {
		if r.Shadow == nil || r.Shadow.Record == nil {
			continue
		}
		f, err := os.OpenFile(r.Shadow.Record.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("routes %s: shadow.record.file: %w", r.Name, err)
		}
		f.Close()
	}
	return nil
}

// checkAuthFiles reads and parses every keys and JWT key file the routes
// use, and opens the audit log, so that a config naming one that is
// missing or broken is refused whole instead of refusing every request.
func checkAuthFiles(cfg *config.Config) error {
	seen := map[*config.Auth]bool{}
	for _, r := range cfg.Routes {
		a := cfg.AuthFor(r)
		if a == nil || seen[a] {
			continue
		}
		seen[a] = true
		if err := auth.Check(a); err != nil {
			return fmt.Errorf("routes %s: auth.%w", r.Name, err)
		}
	}
	if a := cfg.Server.Audit; a != nil && a.File != audit.Stdout {
		f, err := os.OpenFile(a.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("server.audit.file: %w", err)
		}
		f.Close()
	}
	return nil
}

// deps are the long-lived parts a snapshot is compiled against.
func (g *Gateway) deps() proxy.Deps {
	return proxy.Deps{Registry: g.registry, Metrics: g.metrics, Members: g.workers.Backends, Experiments: g.exps, Shadows: g.shadows,
		Limits: g.limits, Cache: g.caches, Rollouts: g.rollouts, Auth: g.auth, Audit: g.audit}
}

// useAudit opens the audit log a config asks for, keeping the open one
// when nothing about it changed. It returns the log to close once the
// previous snapshot is idle (nil when none). Called with reloadMu held.
func (g *Gateway) useAudit(cfg *config.Audit) (retired *audit.Log) {
	cur := g.audit
	if cur != nil && cfg != nil && cur.Target == cfg.File && cur.Sample() == cfg.SampleAllowed {
		return nil
	}
	g.audit = nil
	if cfg != nil {
		l, err := audit.Open(cfg.File, cfg.SampleAllowed, g.metrics.AuditDropped)
		if err != nil { // checked before applying; the disk may have changed since
			g.log.Error("audit log not written", "err", err)
		}
		g.audit = l
	}
	return cur
}

// Auth is the keys and JWT files the routes' auth reads.
func (g *Gateway) Auth() *auth.Store { return g.auth }

// maxStopTimeout is the longest stop_timeout of any spawned pool.
func (g *Gateway) maxStopTimeout() time.Duration {
	var longest time.Duration
	for _, p := range g.proxy.Snapshot().Config.Pools {
		if p.Spawn != nil {
			longest = max(longest, p.Spawn.StopTimeout.D())
		}
	}
	return longest
}

// membershipChanged asks for a recompile; many asks while one is pending
// make one recompile.
func (g *Gateway) membershipChanged() {
	select {
	case g.membership <- struct{}{}:
	default:
	}
}

// followMembership compiles the serving config again, same generation,
// whenever a spawned pool's replicas change.
func (g *Gateway) followMembership(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.membership:
		}
		g.reloadMu.Lock()
		cur := g.proxy.Snapshot()
		next := proxy.Compile(&config.Loaded{Config: cur.Config, Source: cur.Source, SHA256: cur.SHA256},
			cur.Generation, g.deps())
		g.proxy.Swap(next).Retire()
		g.healthChecks(next)
		g.reloadMu.Unlock()
	}
}

// slogPrinter routes fasthttp's own log lines into the structured log.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, args ...any) {
	p.log.Debug(fmt.Sprintf(format, args...), "source", "fasthttp")
}

// Caches are the routes' response caches.
func (g *Gateway) Caches() *cache.Registry { return g.caches }

// Redis is the connection requests use, and its health.
func (g *Gateway) Redis() *redisconn.Conn { return g.hot }
