package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/admin"
	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/console"
	"github.com/sluice-gw/sluice/internal/proxy"
	"github.com/sluice-gw/sluice/internal/rollout"
)

// Reload reads the config file and, if it changed and is valid, compiles
// it and swaps it in. An invalid file changes nothing: the error is logged,
// counted and kept for /admin/config, and the old snapshot keeps serving.
// trigger names what asked ("watch", "signal", "admin") for the log.
func (g *Gateway) Reload(trigger string) (uint64, error) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()

	if trigger == "signal" && g.audit != nil {
		// SIGHUP after logrotate moved the audit log: start a new file.
		if err := g.audit.Reopen(); err != nil {
			g.log.Error("audit log not reopened; still writing the old file", "err", err)
		}
	}
	current := g.proxy.Snapshot()
	data, err := os.ReadFile(g.path)
	if err != nil {
		return current.Generation, g.reject(trigger, "", fmt.Errorf("read config: %w", err))
	}
	sum := config.Sum(data)
	if sum == current.SHA256 {
		// Saved without change, or put back as it was after a bad edit;
		// a renewed certificate is picked up all the same.
		if err := g.reloadCertificate(current.Config.Server.TLS, trigger); err != nil {
			return current.Generation, g.reject(trigger, sum, err)
		}
		g.setLastError(nil, "")
		if trigger != "watch" {
			g.log.Info("config unchanged; nothing to apply", "trigger", trigger, "generation", current.Generation)
		}
		return current.Generation, nil
	}
	if trigger == "watch" && sum == g.lastErrSum {
		// The same bad file again: it was reported already.
		return current.Generation, errors.New(strings.Join(g.LastError().Errors, "\n"))
	}
	cfg, err := config.Parse(data)
	if err != nil {
		return current.Generation, g.reject(trigger, sum, err)
	}
	if changed := config.ListenerChanges(current.Config, cfg); len(changed) > 0 {
		return current.Generation, g.reject(trigger, sum, fmt.Errorf(
			"%s changed: listener settings are bound at start, restart the gateway to change them (nothing was applied)",
			strings.Join(changed, ", ")))
	}
	if err := openableRecords(cfg); err != nil {
		return current.Generation, g.reject(trigger, sum, err)
	}
	if err := checkAuthFiles(cfg); err != nil {
		return current.Generation, g.reject(trigger, sum, err)
	}
	if err := rollout.CheckDir(cfg.StateDir); err != nil {
		return current.Generation, g.reject(trigger, sum, err)
	}
	if err := g.reloadCertificate(cfg.Server.TLS, trigger); err != nil {
		return current.Generation, g.reject(trigger, sum, err)
	}
	g.apply(&config.Loaded{Config: cfg, Source: data, SHA256: sum})
	g.log.Info("config applied", "trigger", trigger, "generation", g.generation, "sha256", sum[:12])
	return g.generation, nil
}

// apply brings the spawned workers in line with a validated config, then
// compiles it and swaps it in. The previous snapshot releases its backends
// once its last request has finished. Called with reloadMu held.
func (g *Gateway) apply(loaded *config.Loaded) {
	g.generation++
	g.useRedis(loaded.Config.Redis)
	if loaded.Config.Redis == nil {
		g.rollouts.SetCoordinator(rollout.NewLocal(loaded.Config.StateDir))
		warnVolatileRollouts(g.log, loaded.Config)
	}
	g.workers.Reconcile(loaded.Config)
	oldAudit := g.useAudit(loaded.Config.Server.Audit)
	next := proxy.Compile(loaded, g.generation, g.deps())
	forgetUnchecked(next)
	if prev := g.proxy.Swap(next); prev != nil {
		prev.Retire()
		g.previous.Store(&console.AppliedConfig{Generation: prev.Generation, LoadedAt: prev.LoadedAt,
			SHA256: prev.SHA256, Source: prev.Source})
		if oldAudit != nil {
			go func() {
				<-prev.Idle()
				oldAudit.Close()
			}()
		}
		g.purgeChangedPools(prev.Config, next.Config)
	}
	g.healthChecks(next)
	g.setLastError(nil, "")
	g.metrics.ConfigApplied(g.generation, float64(time.Now().UnixNano())/1e9)
}

// reject records a config that could not be applied.
func (g *Gateway) reject(trigger, sum string, err error) error {
	var lines []string
	var problems config.Problems
	if errors.As(err, &problems) {
		for _, p := range problems {
			lines = append(lines, p.Error())
		}
	} else {
		lines = []string{err.Error()}
	}
	g.setLastError(&admin.LoadError{At: time.Now().UTC(), SHA256: sum, Errors: lines}, sum)
	g.metrics.ConfigRejected()
	g.log.Error("config rejected; the previous config keeps serving", "trigger", trigger,
		"file", g.path, "errors", strings.Join(lines, "; "))
	return err
}

func (g *Gateway) setLastError(e *admin.LoadError, sum string) {
	g.lastErrMu.Lock()
	defer g.lastErrMu.Unlock()
	g.lastErr, g.lastErrSum = e, sum
}

// LastError is the last rejected config, or nil when the last load worked.
func (g *Gateway) LastError() *admin.LoadError {
	g.lastErrMu.RLock()
	defer g.lastErrMu.RUnlock()
	return g.lastErr
}

// warnVolatileRollouts says that canary progress will not outlive a
// restart when the config keeps it nowhere.
func warnVolatileRollouts(log *slog.Logger, cfg *config.Config) {
	if cfg.StateDir != "" {
		return
	}
	for _, r := range cfg.Routes {
		if r.Canary != nil {
			log.Warn("canary routes without state_dir or redis: rollout progress is lost on restart and starts again at the first step",
				"route", r.Name)
			return
		}
	}
}
