package deploytest

// The deployment files, kept consistent with the code: the Dockerfile builds
// the commands that exist and copies files that exist, its HEALTHCHECK runs
// a subcommand the gateway accepts, and the ports, paths and addresses that
// the Dockerfile, the docker-compose stack and the Kubernetes manifests name
// agree with the gateway configs they ship, which config.Parse accepts.
// Nothing here needs Docker or a cluster: the files are parsed and compared.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluice-gw/sluice/internal/config"
	"github.com/sluice-gw/sluice/internal/gateway"
	"github.com/sluice-gw/sluice/internal/testutil"
)

// deployRepoRoot is the repository root: two levels up from this package.
func deployRepoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	return root
}

func deployRead(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployRepoRoot(t), filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// deployEnvRE is the config's ${NAME} / ${NAME:-default} syntax.
var deployEnvRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)

// deployDefaults expands ${NAME:-default} to its default, as the gateway
// does with NAME unset.
func deployDefaults(s string) string {
	return deployEnvRE.ReplaceAllString(s, "$2")
}

// deployParseConfig parses a gateway config with every variable it names
// unset, except those in env, the way config.Load would in a fresh
// environment.
func deployParseConfig(t *testing.T, what string, data []byte, env map[string]string) *config.Config {
	t.Helper()
	for _, m := range deployEnvRE.FindAllSubmatch(data, -1) {
		t.Setenv(string(m[1]), "") // empty counts as unset: the default applies
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := config.Parse(data)
	if err != nil {
		t.Fatalf("%s does not pass config.Parse:\n%v", what, err)
	}
	return cfg
}

// deployPort is the port of a host:port address.
func deployPort(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

// deployListenPorts are the ports a config binds: client, redirect, admin.
func deployListenPorts(t *testing.T, cfg *config.Config) (client []int, admin int) {
	t.Helper()
	client = []int{deployPort(t, cfg.Server.Listen)}
	if cfg.Server.RedirectHTTP != "" {
		client = append(client, deployPort(t, cfg.Server.RedirectHTTP))
	}
	slices.Sort(client)
	return client, deployPort(t, cfg.Admin.Listen)
}

// deployBackends lists every pool backend address of a config, sorted.
func deployBackends(cfg *config.Config) []string {
	var out []string
	for _, p := range cfg.Pools {
		for _, b := range p.Backends {
			out = append(out, b.Addr)
		}
	}
	slices.Sort(out)
	return out
}

// deployFlag is the value after flag in args ("" when absent).
func deployFlag(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// --- Dockerfile ---

type dockerInstr struct {
	line int
	cmd  string // upper case
	args string
}

// dockerfile is what the tests need of the Dockerfile: every instruction,
// and the final stage's files, user, workdir, ports and commands.
type dockerfile struct {
	all        []dockerInstr
	final      []dockerInstr
	buildOut   map[string]string // file the build stage's go build writes -> package dir
	files      map[string]string // image path -> repo path ("" for build outputs)
	user       string
	workdir    string
	expose     []int
	entrypoint []string
	cmd        []string
	health     []string // HEALTHCHECK CMD, exec form
}

// deployParseDockerfile reads instructions line by line: comments dropped,
// backslash continuations joined. Enough for the file we ship, not for
// every Dockerfile (no heredocs, no escape directive).
func deployParseDockerfile(t *testing.T) *dockerfile {
	t.Helper()
	root := deployRepoRoot(t)
	var instrs []dockerInstr
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(deployRead(t, "Dockerfile")), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		cont := strings.HasSuffix(trimmed, `\`)
		cur.WriteString(strings.TrimSuffix(trimmed, `\`))
		cur.WriteByte(' ')
		if cont {
			continue
		}
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		instrs = append(instrs, dockerInstr{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatalf("Dockerfile:%d: a continuation runs off the end of the file", start)
	}

	df := &dockerfile{all: instrs, buildOut: map[string]string{}, files: map[string]string{}}
	for i, in := range instrs {
		if in.cmd == "FROM" {
			df.final = instrs[i:]
		}
	}
	goBuild := regexp.MustCompile(`go build .*-o (\S+)`)
	for _, in := range instrs {
		if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
			continue
		}
		out := goBuild.FindStringSubmatch(in.args)
		if out == nil {
			t.Fatalf("Dockerfile:%d: go build without -o", in.line)
		}
		for _, f := range strings.Fields(in.args) {
			if strings.HasPrefix(f, "./cmd/") {
				if strings.HasSuffix(out[1], "/") {
					df.buildOut[out[1]+path.Base(f)] = f
				} else {
					df.buildOut[out[1]] = f
				}
			}
		}
	}
	jsonArgs := func(in dockerInstr, s string) []string {
		var out []string
		if err := json.Unmarshal([]byte(s), &out); err != nil {
			t.Fatalf("Dockerfile:%d: %s must be in exec form (a JSON array): %v", in.line, in.cmd, err)
		}
		return out
	}
	for _, in := range df.final {
		switch in.cmd {
		case "USER":
			df.user = in.args
		case "WORKDIR":
			df.workdir = in.args
		case "EXPOSE":
			for _, f := range strings.Fields(in.args) {
				n, err := strconv.Atoi(strings.TrimSuffix(f, "/tcp"))
				if err != nil {
					t.Fatalf("Dockerfile:%d: EXPOSE %q", in.line, f)
				}
				df.expose = append(df.expose, n)
			}
		case "ENTRYPOINT":
			df.entrypoint = jsonArgs(in, in.args)
		case "CMD":
			df.cmd = jsonArgs(in, in.args)
		case "HEALTHCHECK":
			_, after, ok := strings.Cut(" "+in.args, " CMD ")
			if !ok {
				t.Fatalf("Dockerfile:%d: HEALTHCHECK without CMD", in.line)
			}
			df.health = jsonArgs(in, strings.TrimSpace(after))
		case "COPY":
			df.copy(t, root, in)
		}
	}
	slices.Sort(df.expose)
	return df
}

// copy records the image files a final-stage COPY creates.
func (df *dockerfile) copy(t *testing.T, root string, in dockerInstr) {
	t.Helper()
	fields := strings.Fields(in.args)
	from := ""
	for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
		if v, ok := strings.CutPrefix(fields[0], "--from="); ok {
			from = v
		}
		fields = fields[1:]
	}
	if len(fields) < 2 {
		t.Fatalf("Dockerfile:%d: COPY needs a source and a destination", in.line)
	}
	srcs, dest := fields[:len(fields)-1], fields[len(fields)-1]
	if len(srcs) > 1 && !strings.HasSuffix(dest, "/") {
		t.Fatalf("Dockerfile:%d: COPY of several sources needs a destination ending in /", in.line)
	}
	target := func(src string) string {
		if strings.HasSuffix(dest, "/") {
			return dest + path.Base(src)
		}
		return dest
	}
	for _, src := range srcs {
		if from != "" {
			if _, ok := df.buildOut[src]; !ok {
				t.Errorf("Dockerfile:%d: COPY --from=%s %s: no go build writes it (built: %v)", in.line, from, src, slices.Sorted(maps.Keys(df.buildOut)))
			}
			df.files[target(src)] = ""
			continue
		}
		matches, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(src)))
		if err != nil || len(matches) == 0 {
			t.Errorf("Dockerfile:%d: COPY %s: no such file in the repository", in.line, src)
			continue
		}
		for _, m := range matches {
			rel, _ := filepath.Rel(root, m)
			df.files[target(filepath.ToSlash(rel))] = filepath.ToSlash(rel)
		}
	}
}

// imagePath resolves a path inside the image against its WORKDIR.
func (df *dockerfile) imagePath(p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	return path.Join(df.workdir, p)
}

// deployBuildGateway builds cmd/gateway into a temporary directory.
func deployBuildGateway(t *testing.T) string {
	t.Helper()
	return filepath.Join(testutil.Build(t, "gateway"), "gateway")
}

func TestDeployDockerfile(t *testing.T) {
	root := deployRepoRoot(t)
	df := deployParseDockerfile(t)

	t.Run("builds the commands", func(t *testing.T) {
		var build string
		for _, in := range df.all {
			if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
				build = in.args
			}
		}
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "-X main.version=", "./cmd/gateway", "./cmd/modelworker"} {
			if !strings.Contains(build, want) {
				t.Errorf("the go build step lacks %q: %s", want, build)
			}
		}
		for out, pkg := range df.buildOut {
			if _, err := os.Stat(filepath.Join(root, pkg, "main.go")); err != nil {
				t.Errorf("go build -o %s %s: no main package there: %v", out, pkg, err)
			}
		}
		// Each -X main.NAME names a variable the gateway declares.
		src := string(deployRead(t, "cmd/gateway/main.go"))
		for _, m := range regexp.MustCompile(`-X main\.(\w+)=`).FindAllStringSubmatch(build, -1) {
			if !regexp.MustCompile(`(?m)^\s*(var\s+)?` + m[1] + `\s*=\s*"`).MatchString(src) {
				t.Errorf("-X main.%s: cmd/gateway/main.go declares no such variable", m[1])
			}
		}
		for _, in := range df.all {
			if in.cmd == "FROM" && strings.HasPrefix(in.args, "golang:") && !strings.Contains(in.args, "bookworm") {
				t.Errorf("Dockerfile:%d: the builder should be golang on bookworm: FROM %s", in.line, in.args)
			}
		}
	})

	t.Run("final stage", func(t *testing.T) {
		from := df.final[0].args
		if !strings.HasPrefix(from, "gcr.io/distroless/static") {
			t.Errorf("final stage FROM %s, want gcr.io/distroless/static-debian12:nonroot", from)
		}
		if df.user == "" || df.user == "root" || df.user == "0" || strings.HasPrefix(df.user, "0:") {
			t.Errorf("USER %q: the image must run as a non-root user", df.user)
		}
		if df.workdir != "/srv/sluice" {
			t.Errorf("WORKDIR %q, want /srv/sluice", df.workdir)
		}
		for _, bin := range []string{"/usr/local/bin/gateway", "/usr/local/bin/modelworker"} {
			if _, ok := df.files[bin]; !ok {
				t.Errorf("the image has no %s (files: %v)", bin, slices.Sorted(maps.Keys(df.files)))
			}
		}
		models, _ := filepath.Glob(filepath.Join(root, "models", "*.json"))
		if len(models) == 0 {
			t.Fatal("no models/*.json in the repository")
		}
		for _, m := range models {
			if _, ok := df.files[df.imagePath("models/"+filepath.Base(m))]; !ok {
				t.Errorf("models/%s is not copied to %s", filepath.Base(m), df.imagePath("models/"))
			}
		}
		if !slices.Equal(df.entrypoint, []string{"/usr/local/bin/gateway"}) {
			t.Errorf("ENTRYPOINT %q, want [/usr/local/bin/gateway]", df.entrypoint)
		}
		if len(df.cmd) == 0 || df.cmd[0] != "run" || deployFlag(df.cmd, "-config") == "" {
			t.Errorf("CMD %q, want run -config FILE", df.cmd)
		}
	})

	// The default config: copied from the repository, valid, and what
	// EXPOSE and the spawned workers agree with.
	confPath := deployFlag(df.cmd, "-config")
	repoConf, ok := df.files[confPath]
	if !ok || repoConf == "" {
		t.Fatalf("CMD names %s, which no COPY from the repository creates", confPath)
	}
	confData := deployRead(t, repoConf)
	cfg := deployParseConfig(t, repoConf, confData, nil)

	t.Run("default config", func(t *testing.T) {
		client, admin := deployListenPorts(t, cfg)
		want := slices.Sorted(slices.Values(append(client, admin)))
		if !slices.Equal(df.expose, want) {
			t.Errorf("EXPOSE %v, but %s listens on %v (client and admin)", df.expose, repoConf, want)
		}
		for name, p := range cfg.Pools {
			if p.Spawn == nil {
				continue
			}
			if _, ok := df.files[df.imagePath(p.Spawn.Command[0])]; !ok {
				t.Errorf("pool %s spawns %s, which the image does not have", name, p.Spawn.Command[0])
			}
			if m := deployFlag(p.Spawn.Command, "-model"); m != "" {
				if _, ok := df.files[df.imagePath(m)]; !ok {
					t.Errorf("pool %s spawns a worker on %s, which the image does not have", name, df.imagePath(m))
				}
			}
		}
	})

	t.Run("dockerignore", func(t *testing.T) {
		ignored := deployDockerignore(t)
		keep := []string{"go.mod", "go.sum", "cmd/gateway/main.go", "cmd/modelworker/main.go", "internal/config/types.go"}
		for _, repo := range df.files {
			if repo != "" {
				keep = append(keep, repo)
			}
		}
		for _, p := range keep {
			if ignored(p) {
				t.Errorf(".dockerignore leaves %s out of the build context, but the build needs it", p)
			}
		}
		for _, p := range []string{"deploy/nginx-compat/ssl/server.key", ".git/HEAD", "bin/gateway"} {
			if !ignored(p) {
				t.Errorf(".dockerignore lets %s into the build context", p)
			}
		}
	})

	t.Run("healthcheck", func(t *testing.T) {
		if len(df.health) < 2 || !slices.Equal(df.health[:1], df.entrypoint) || df.health[1] != "healthcheck" {
			t.Fatalf("HEALTHCHECK CMD %q, want the entrypoint %q with healthcheck and its flags", df.health, df.entrypoint)
		}
		if got := deployFlag(df.health, "-config"); got != confPath {
			t.Errorf("HEALTHCHECK reads -config %q, the gateway runs with %q", got, confPath)
		}
		bin := deployBuildGateway(t)
		out, _ := exec.Command(bin, "help").CombinedOutput()
		if !strings.Contains(string(out), "gateway healthcheck") {
			t.Errorf("gateway help does not list healthcheck:\n%s", out)
		}
		// The HEALTHCHECK's own arguments, the config path pointing at the
		// repository's copy: the gateway accepts them and, with nothing
		// listening on the admin address, says not ready (exit 1, not 2).
		args := slices.Clone(df.health[2:])
		for i := range args {
			if args[i] == confPath {
				args[i] = filepath.Join(root, repoConf)
			}
		}
		cmd := exec.Command(bin, append([]string{"healthcheck"}, args...)...)
		cmd.Env = append(os.Environ(), "SLUICE_ADMIN_LISTEN="+testutil.ClosedAddr(t))
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "not ready") {
			t.Errorf("gateway healthcheck %q against a closed port: %v, want exit status 1 and \"not ready\":\n%s", args, err, out)
		}
	})
}

// deployDockerignore returns whether .dockerignore keeps a repository path
// out of the build context: the last pattern matching the path or one of
// its parent directories decides, "!" patterns letting it back in.
func deployDockerignore(t *testing.T) func(string) bool {
	t.Helper()
	type pattern struct {
		glob   string
		negate bool
	}
	var patterns []pattern
	for _, line := range strings.Split(string(deployRead(t, ".dockerignore")), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p := pattern{}
		if rest, ok := strings.CutPrefix(line, "!"); ok {
			p.negate, line = true, rest
		}
		if strings.Contains(line, "**") {
			t.Fatalf(".dockerignore: %q: this check does not handle **", line)
		}
		p.glob = path.Clean(strings.TrimPrefix(line, "/"))
		patterns = append(patterns, p)
	}
	return func(file string) bool {
		ignored := false
		for _, p := range patterns {
			for dir := file; dir != "." && dir != "/"; dir = path.Dir(dir) {
				if ok, _ := path.Match(p.glob, dir); ok {
					ignored = !p.negate
					break
				}
			}
		}
		return ignored
	}
}

// --- docker-compose ---

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Build       string            `yaml:"build"`
	Image       string            `yaml:"image"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Command     []string          `yaml:"command"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Environment map[string]string `yaml:"environment"`
	Sysctls     map[string]string `yaml:"sysctls"`
	Restart     string            `yaml:"restart"`
	Profiles    []string          `yaml:"profiles"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

// hostPath maps a path inside the service's container to the repository
// file a bind mount puts there ("" when no mount covers it), and says
// whether that mount is of a directory.
func (s composeService) hostPath(composeDir, p string) (host string, dirMount bool) {
	best := ""
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || !strings.HasPrefix(parts[0], ".") {
			continue // named volumes
		}
		target := path.Clean(parts[1])
		if (p == target || strings.HasPrefix(p, target+"/")) && len(target) > len(best) {
			best = target
			host = filepath.Join(composeDir, filepath.FromSlash(parts[0]), filepath.FromSlash(strings.TrimPrefix(p, target)))
			fi, err := os.Stat(filepath.Join(composeDir, filepath.FromSlash(parts[0])))
			dirMount = err == nil && fi.IsDir()
		}
	}
	return host, dirMount
}

// containerPorts are the container sides of the published ports, sorted,
// and the host sides.
func (s composeService) publishedPorts(t *testing.T) (container, host []int) {
	t.Helper()
	for _, p := range s.Ports {
		parts := strings.Split(strings.TrimSuffix(p, "/tcp"), ":")
		if len(parts) < 2 {
			t.Fatalf("port %q: want HOST:CONTAINER", p)
		}
		h, err1 := strconv.Atoi(parts[len(parts)-2])
		c, err2 := strconv.Atoi(parts[len(parts)-1])
		if err1 != nil || err2 != nil {
			t.Fatalf("port %q: want HOST:CONTAINER", p)
		}
		container, host = append(container, c), append(host, h)
	}
	slices.Sort(container)
	slices.Sort(host)
	return container, host
}

func TestDeployCompose(t *testing.T) {
	root := deployRepoRoot(t)
	dir := filepath.Join(root, "deploy", "nginx-compat")
	df := deployParseDockerfile(t)
	var compose composeFile
	if err := yaml.Unmarshal(deployRead(t, "deploy/nginx-compat/docker-compose.yml"), &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	gw, ok := compose.Services["gateway"]
	if !ok {
		t.Fatal("docker-compose.yml has no gateway service")
	}
	if _, err := os.Stat(filepath.Join(dir, gw.Build, "Dockerfile")); gw.Build == "" || err != nil {
		t.Errorf("gateway build: %q holds no Dockerfile", gw.Build)
	}
	if gw.Restart != "unless-stopped" {
		t.Errorf("gateway restart: %q, want unless-stopped as nginx had", gw.Restart)
	}

	// The config the gateway runs: the image's CMD unless the service
	// overrides it, reached through a directory mount (so that saving the
	// file reloads the gateway).
	args := df.cmd
	if len(gw.Command) > 0 {
		args = gw.Command
	}
	confPath := deployFlag(args, "-config")
	host, dirMount := gw.hostPath(dir, confPath)
	if want := filepath.Join(dir, "gateway.yaml"); host != want {
		t.Fatalf("the gateway runs -config %s, which the mounts make %q, want %s", confPath, host, want)
	}
	if !dirMount {
		t.Errorf("%s is mounted as a file: mount its directory, or edits saved by rename never reach the gateway", confPath)
	}

	// TLS: the certificate paths of gateway.yaml, as the container sees
	// them, are the ssl directory mounted from ./ssl.
	confData := deployRead(t, "deploy/nginx-compat/gateway.yaml")
	var raw struct {
		Server struct {
			TLS struct{ Cert, Key string } `yaml:"tls"`
		} `yaml:"server"`
	}
	if err := yaml.Unmarshal(confData, &raw); err != nil {
		t.Fatal(err)
	}
	tlsDir := ""
	for _, p := range []string{raw.Server.TLS.Cert, raw.Server.TLS.Key} {
		p = deployDefaults(p)
		if tlsDir == "" {
			tlsDir = path.Dir(p)
		}
		host, _ := gw.hostPath(dir, p)
		if host == "" {
			t.Errorf("gateway.yaml reads %s, which no volume of the gateway service provides", p)
			continue
		}
		if _, err := os.Stat(host); err != nil {
			t.Errorf("gateway.yaml reads %s, mounted from %s: %v", p, host, err)
		}
	}
	if tlsDir == "" || tlsDir == "." {
		t.Fatal("gateway.yaml has no tls block")
	}
	if !slices.Contains(gw.Volumes, "./ssl:"+tlsDir+":ro") {
		t.Errorf("no ./ssl:%s:ro mount (nginx had ./ssl:/etc/nginx/ssl:ro): %q", tlsDir, gw.Volumes)
	}

	// gateway.yaml as the container reads it: the compose environment, the
	// defaults for the rest, and the certificate found through the mount.
	env := map[string]string{}
	for k, v := range gw.Environment {
		env[k] = deployDefaults(v)
	}
	tlsHost, _ := gw.hostPath(dir, tlsDir)
	env["SLUICE_TLS_DIR"] = tlsHost
	cfg := deployParseConfig(t, "deploy/nginx-compat/gateway.yaml", confData, env)

	t.Run("ports", func(t *testing.T) {
		client, admin := deployListenPorts(t, cfg)
		container, published := gw.publishedPorts(t)
		if !slices.Equal(container, client) {
			t.Errorf("the gateway publishes container ports %v, gateway.yaml listens on %v", container, client)
		}
		if slices.Contains(container, admin) {
			t.Errorf("the admin port %d is published on the host", admin)
		}
		// What stays from nginx: the ports clients use.
		nginxPorts := []int{}
		for _, m := range regexp.MustCompile(`(?m)^\s*listen\s+(\d+)`).FindAllStringSubmatch(string(deployRead(t, "deploy/nginx-compat/nginx.conf")), -1) {
			n, _ := strconv.Atoi(m[1])
			nginxPorts = append(nginxPorts, n)
		}
		slices.Sort(nginxPorts)
		if !slices.Equal(published, nginxPorts) {
			t.Errorf("the gateway publishes host ports %v, nginx listened on %v", published, nginxPorts)
		}
		// A non-root process binds a port below 1024 only with the sysctl.
		if client[0] < 1024 {
			start, err := strconv.Atoi(gw.Sysctls["net.ipv4.ip_unprivileged_port_start"])
			if err != nil || start > client[0] {
				t.Errorf("the gateway (non-root) listens on %d but net.ipv4.ip_unprivileged_port_start is %q", client[0], gw.Sysctls["net.ipv4.ip_unprivileged_port_start"])
			}
		}
	})

	t.Run("healthcheck", func(t *testing.T) {
		test := gw.Healthcheck.Test
		if len(test) < 3 || test[0] != "CMD" || !slices.Equal(test[1:2], df.entrypoint) || test[2] != "healthcheck" {
			t.Fatalf("gateway healthcheck %q, want CMD, the entrypoint %q, healthcheck and its flags", test, df.entrypoint)
		}
		if got := deployFlag(test, "-config"); got != confPath {
			t.Errorf("the healthcheck reads -config %q, the gateway runs with %q", got, confPath)
		}
	})

	t.Run("workers", func(t *testing.T) {
		var workers []string
		for name, s := range compose.Services {
			if len(s.Entrypoint) == 0 || path.Base(s.Entrypoint[0]) != "modelworker" {
				continue
			}
			if _, ok := df.files[s.Entrypoint[0]]; !ok {
				t.Errorf("service %s runs %s, which the image does not have", name, s.Entrypoint[0])
			}
			if s.Image != gw.Image {
				t.Errorf("service %s runs image %q, the gateway %q: workers run from the same image", name, s.Image, gw.Image)
			}
			model := deployFlag(s.Command, "-model")
			if _, ok := df.files[df.imagePath(model)]; model == "" || !ok {
				t.Errorf("service %s serves -model %q, which the image does not have", name, model)
			}
			workers = append(workers, net.JoinHostPort(name, strconv.Itoa(deployPort(t, deployFlag(s.Command, "-listen")))))
		}
		slices.Sort(workers)
		if backends := deployBackends(cfg); !slices.Equal(workers, backends) {
			t.Errorf("the compose workers listen on %v, gateway.yaml's backends are %v", workers, backends)
		}
		// nginx.conf's upstreams are the same workers.
		var upstreams []string
		for _, m := range regexp.MustCompile(`(?m)^\s*server\s+([\w.-]+:\d+)\s*;`).FindAllStringSubmatch(string(deployRead(t, "deploy/nginx-compat/nginx.conf")), -1) {
			upstreams = append(upstreams, m[1])
		}
		slices.Sort(upstreams)
		if !slices.Equal(upstreams, workers) {
			t.Errorf("nginx.conf's upstream servers are %v, the compose workers %v", upstreams, workers)
		}
	})

	t.Run("redis", func(t *testing.T) {
		if cfg.Redis == nil {
			t.Fatal("gateway.yaml has no redis block")
		}
		host, _, _ := net.SplitHostPort(cfg.Redis.Addr)
		s, ok := compose.Services[host]
		if !ok || !strings.HasPrefix(s.Image, "redis:") || deployPort(t, cfg.Redis.Addr) != 6379 {
			t.Errorf("gateway.yaml's redis %s is not the compose redis service", cfg.Redis.Addr)
		}
	})

	t.Run("observability profile", func(t *testing.T) {
		for _, name := range []string{"prometheus", "grafana"} {
			if s, ok := compose.Services[name]; !ok || !slices.Contains(s.Profiles, "observability") {
				t.Errorf("no %s service in the observability profile", name)
			}
		}
	})
}

// TestDeployComposeLocalEnv: gateway.yaml also passes with the variables
// run-local.sh exports, and they move every address it names to loopback.
func TestDeployComposeLocalEnv(t *testing.T) {
	root := deployRepoRoot(t)
	script := string(deployRead(t, "deploy/nginx-compat/run-local.sh"))
	confData := deployRead(t, "deploy/nginx-compat/gateway.yaml")
	// export NAME=VALUE, with the script's port variables made distinct
	// numbers and $PWD/$DIR the repository's paths.
	env := map[string]string{}
	port := 20000
	portVar := regexp.MustCompile(`\$\{?RUN_LOCAL_\w+_PORT\}?`)
	for _, m := range regexp.MustCompile(`(?m)^export (\w+)=(\S+)$`).FindAllStringSubmatch(script, -1) {
		v := portVar.ReplaceAllStringFunc(m[2], func(string) string { port++; return strconv.Itoa(port) })
		v = strings.NewReplacer("$PWD", root, "$DIR", "deploy/nginx-compat").Replace(v)
		if strings.Contains(v, "$") {
			t.Fatalf("run-local.sh: export %s=%s: this test does not know what %q holds", m[1], m[2], v)
		}
		env[m[1]] = v
	}
	for _, m := range deployEnvRE.FindAllStringSubmatch(string(confData), -1) {
		if _, ok := env[m[1]]; !ok && m[2] != "" {
			t.Errorf("run-local.sh does not set %s: gateway.yaml would use its compose default %q", m[1], m[2])
		}
	}
	cfg := deployParseConfig(t, "deploy/nginx-compat/gateway.yaml with run-local.sh's variables", confData, env)
	addrs := append(deployBackends(cfg), cfg.Server.Listen, cfg.Server.RedirectHTTP, cfg.Admin.Listen)
	if cfg.Redis != nil {
		addrs = append(addrs, cfg.Redis.Addr)
	}
	for _, a := range addrs {
		if !strings.HasPrefix(a, "127.0.0.1:") {
			t.Errorf("with run-local.sh's variables an address is still %q", a)
		}
	}
}

// --- Kubernetes ---

type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec yaml.Node         `yaml:"spec"`
	file string
}

type k8sDeployment struct {
	Replicas int `yaml:"replicas"`
	Template struct {
		Metadata struct {
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec struct {
			SecurityContext struct {
				RunAsNonRoot *bool `yaml:"runAsNonRoot"`
				Sysctls      []struct {
					Name  string `yaml:"name"`
					Value string `yaml:"value"`
				} `yaml:"sysctls"`
			} `yaml:"securityContext"`
			Containers []k8sContainer `yaml:"containers"`
			Volumes    []struct {
				Name      string `yaml:"name"`
				ConfigMap *struct {
					Name  string `yaml:"name"`
					Items []any  `yaml:"items"`
				} `yaml:"configMap"`
				Secret *struct {
					SecretName string `yaml:"secretName"`
				} `yaml:"secret"`
			} `yaml:"volumes"`
		} `yaml:"spec"`
	} `yaml:"template"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"` // a number or a port name
	} `yaml:"httpGet"`
}

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe  *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe   *k8sProbe `yaml:"livenessProbe"`
	SecurityContext struct {
		ReadOnlyRootFilesystem *bool `yaml:"readOnlyRootFilesystem"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

// port resolves a probe's or a Service's port (number or name) to a
// container port (0 when it names none).
func (c k8sContainer) port(p string) int {
	for _, cp := range c.Ports {
		if cp.Name == p || strconv.Itoa(cp.ContainerPort) == p {
			return cp.ContainerPort
		}
	}
	return 0
}

type k8sService struct {
	Type     string            `yaml:"type"`
	Selector map[string]string `yaml:"selector"`
	Ports    []k8sServicePort  `yaml:"ports"`
}

type k8sServicePort struct {
	Name       string `yaml:"name"`
	Port       int    `yaml:"port"`
	TargetPort string `yaml:"targetPort"` // a number or a port name
}

// deployK8sObjects reads every document of deploy/kubernetes/*.yaml.
func deployK8sObjects(t *testing.T) []k8sObject {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(deployRepoRoot(t), "deploy", "kubernetes", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no deploy/kubernetes/*.yaml")
	}
	var objs []k8sObject
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var o k8sObject
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s, document %d: %v", filepath.Base(f), i+1, err)
			}
			if o.Kind == "" || o.Metadata.Name == "" {
				t.Fatalf("%s, document %d: no kind or metadata.name", filepath.Base(f), i+1)
			}
			o.file = filepath.Base(f)
			objs = append(objs, o)
		}
	}
	return objs
}

func deploySpec[T any](t *testing.T, o k8sObject) T {
	t.Helper()
	var spec T
	if err := o.Spec.Decode(&spec); err != nil {
		t.Fatalf("%s %s %s: spec: %v", o.file, o.Kind, o.Metadata.Name, err)
	}
	return spec
}

// deploySelects reports whether a Service selector picks pods with labels.
func deploySelects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestDeployKubernetes(t *testing.T) {
	objs := deployK8sObjects(t)
	df := deployParseDockerfile(t)
	var configMaps = map[string]k8sObject{}
	var deployments = map[string]k8sDeployment{}
	var services = map[string]k8sService{}
	for _, o := range objs {
		switch o.Kind {
		case "ConfigMap":
			configMaps[o.Metadata.Name] = o
		case "Deployment":
			deployments[o.Metadata.Name] = deploySpec[k8sDeployment](t, o)
		case "Service":
			services[o.Metadata.Name] = deploySpec[k8sService](t, o)
		}
	}

	// The gateway: the Deployment whose container runs with -config.
	var gwName string
	var gw k8sDeployment
	var gwc k8sContainer
	for name, d := range deployments {
		for _, c := range d.Template.Spec.Containers {
			if deployFlag(c.Args, "-config") != "" {
				gwName, gw, gwc = name, d, c
			}
		}
	}
	if gwName == "" {
		t.Fatal("no Deployment runs the gateway (a container with -config in its args)")
	}
	if gw.Replicas != 3 {
		t.Errorf("Deployment %s: %d replicas, want 3", gwName, gw.Replicas)
	}
	if len(gwc.Command) > 0 && !slices.Equal(gwc.Command, df.entrypoint) {
		t.Errorf("the gateway container runs %q, the image's entrypoint is %q", gwc.Command, df.entrypoint)
	}

	// The ConfigMap, mounted as the directory of -config.
	confPath := deployFlag(gwc.Args, "-config")
	var cm k8sObject
	mounted := false
	for _, m := range gwc.VolumeMounts {
		if m.MountPath != path.Dir(confPath) {
			continue
		}
		for _, v := range gw.Template.Spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			mounted = true
			cm = configMaps[v.ConfigMap.Name]
			if m.SubPath != "" || len(v.ConfigMap.Items) > 0 {
				t.Errorf("the ConfigMap %s is mounted with subPath or items: mount it whole, or edits never reach the gateway", v.ConfigMap.Name)
			}
		}
	}
	if !mounted || cm.Metadata.Name == "" {
		t.Fatalf("no ConfigMap is mounted as %s, the directory of -config %s", path.Dir(confPath), confPath)
	}
	if cm.Metadata.Name != "sluice-config" {
		t.Errorf("the config is ConfigMap %s, want sluice-config", cm.Metadata.Name)
	}
	confData, ok := cm.Data[path.Base(confPath)]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s", cm.Metadata.Name, path.Base(confPath))
	}

	// Parse it with the certificate files where the Secret would put them.
	var raw struct {
		Server struct {
			TLS struct{ Cert, Key string } `yaml:"tls"`
		} `yaml:"server"`
	}
	if err := yaml.Unmarshal([]byte(confData), &raw); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	if raw.Server.TLS.Cert != "" {
		certDir := path.Dir(deployDefaults(raw.Server.TLS.Cert))
		secretMounted := false
		for _, m := range gwc.VolumeMounts {
			for _, v := range gw.Template.Spec.Volumes {
				if v.Name == m.Name && v.Secret != nil && m.MountPath == certDir {
					secretMounted = true
				}
			}
		}
		if !secretMounted {
			t.Errorf("the certificate is read from %s, where no Secret is mounted", certDir)
		}
		tmp := t.TempDir()
		for src, dst := range map[string]string{"server.crt": path.Base(deployDefaults(raw.Server.TLS.Cert)), "server.key": path.Base(deployDefaults(raw.Server.TLS.Key))} {
			testutil.WriteFile(t, tmp, dst, string(deployRead(t, "deploy/nginx-compat/ssl/"+src)))
		}
		env["SLUICE_TLS_DIR"] = tmp
	}
	cfg := deployParseConfig(t, "ConfigMap "+cm.Metadata.Name, []byte(confData), env)
	client, admin := deployListenPorts(t, cfg)

	t.Run("gateway ports and probes", func(t *testing.T) {
		var ports []int
		for _, p := range gwc.Ports {
			ports = append(ports, p.ContainerPort)
		}
		slices.Sort(ports)
		if want := slices.Sorted(slices.Values(append(slices.Clone(client), admin))); !slices.Equal(ports, want) {
			t.Errorf("containerPorts %v, the config listens on %v", ports, want)
		}
		for _, p := range []struct {
			name  string
			probe *k8sProbe
			path  string
		}{{"readinessProbe", gwc.ReadinessProbe, "/readyz"}, {"livenessProbe", gwc.LivenessProbe, "/healthz"}} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("no %s httpGet", p.name)
				continue
			}
			if p.probe.HTTPGet.Path != p.path || gwc.port(p.probe.HTTPGet.Port) != admin {
				t.Errorf("%s gets %s on port %s, want %s on the admin port %d", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port, p.path, admin)
			}
		}
		deployProbePathsServed(t, gwc.ReadinessProbe.HTTPGet.Path, gwc.LivenessProbe.HTTPGet.Path)
	})

	t.Run("security", func(t *testing.T) {
		sc := gw.Template.Spec.SecurityContext
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Error("the gateway pod does not set runAsNonRoot: true")
		}
		if ro := gwc.SecurityContext.ReadOnlyRootFilesystem; ro == nil || !*ro {
			t.Error("the gateway container does not set readOnlyRootFilesystem: true")
		}
		if client[0] < 1024 {
			ok := false
			for _, s := range sc.Sysctls {
				if n, err := strconv.Atoi(s.Value); s.Name == "net.ipv4.ip_unprivileged_port_start" && err == nil && n <= client[0] {
					ok = true
				}
			}
			if !ok {
				t.Errorf("the non-root gateway listens on %d without the net.ipv4.ip_unprivileged_port_start sysctl", client[0])
			}
		}
		for _, rl := range cfg.Routes {
			for _, e := range rl.RateLimit {
				if e.Scope == config.ScopeGlobal && e.Replicas != gw.Replicas {
					t.Errorf("route %s: rate_limit replicas %d, the Deployment runs %d", rl.Name, e.Replicas, gw.Replicas)
				}
			}
		}
	})

	t.Run("services", func(t *testing.T) {
		labels := gw.Template.Metadata.Labels
		var clientPorts []int
		adminServed := false
		for name, s := range services {
			if !deploySelects(s.Selector, labels) {
				continue
			}
			for _, p := range s.Ports {
				target := gwc.port(p.TargetPort)
				switch {
				case target == 0:
					t.Errorf("Service %s: targetPort %s is no port of the gateway container", name, p.TargetPort)
				case target == admin && s.Type != "" && s.Type != "ClusterIP":
					t.Errorf("Service %s (%s) exposes the admin port", name, s.Type)
				case target == admin:
					adminServed = true
				default:
					clientPorts = append(clientPorts, target)
					if p.Port != target {
						t.Errorf("Service %s: port %d goes to %d: the redirect names the listener's port, so clients must use the same one", name, p.Port, target)
					}
				}
			}
		}
		slices.Sort(clientPorts)
		if !slices.Equal(clientPorts, client) {
			t.Errorf("Services reach client ports %v, the gateway listens on %v", clientPorts, client)
		}
		if !adminServed {
			t.Error("no ClusterIP Service reaches the admin port")
		}
	})

	t.Run("workers", func(t *testing.T) {
		for _, addr := range deployBackends(cfg) {
			host, _, _ := net.SplitHostPort(addr)
			port := deployPort(t, addr)
			s, ok := services[host]
			if !ok {
				t.Errorf("backend %s: no Service %s", addr, host)
				continue
			}
			found := false
			for _, p := range s.Ports {
				if p.Port != port {
					continue
				}
				for dname, d := range deployments {
					if !deploySelects(s.Selector, d.Template.Metadata.Labels) {
						continue
					}
					for _, c := range d.Template.Spec.Containers {
						found = true
						if len(c.Command) == 0 || c.Command[0] != "/usr/local/bin/modelworker" {
							t.Errorf("Deployment %s behind backend %s runs %q, not modelworker", dname, addr, c.Command)
							continue
						}
						if c.Image != gwc.Image {
							t.Errorf("Deployment %s runs image %q, the gateway %q", dname, c.Image, gwc.Image)
						}
						if listen := deployFlag(c.Args, "-listen"); deployPort(t, listen) != c.port(p.TargetPort) {
							t.Errorf("Deployment %s listens on %s, Service %s sends to %s", dname, listen, host, p.TargetPort)
						}
						model := deployFlag(c.Args, "-model")
						if _, ok := df.files[df.imagePath(model)]; !ok {
							t.Errorf("Deployment %s serves -model %q, which the image does not have", dname, model)
						}
					}
				}
			}
			if !found {
				t.Errorf("backend %s: Service %s has no port %d in front of a worker Deployment", addr, host, port)
			}
		}
		if cfg.Redis != nil {
			host, _, _ := net.SplitHostPort(cfg.Redis.Addr)
			port := deployPort(t, cfg.Redis.Addr)
			s, ok := services[host]
			if !ok || !slices.ContainsFunc(s.Ports, func(p k8sServicePort) bool { return p.Port == port }) {
				t.Errorf("redis %s: no such Service", cfg.Redis.Addr)
			}
		}
	})
}

// deployProbePathsServed starts a gateway with a ready route and asks its
// admin listener for each path: 200 each, so the probes hit what the admin
// API serves.
func deployProbePathsServed(t *testing.T, paths ...string) {
	t.Helper()
	backend := testutil.Named(t, "worker")
	conf := testutil.WriteFile(t, t.TempDir(), "gateway.yaml", fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
pools:
  p: {backends: [%q]}
routes:
  - {name: r, pool: p}
`, backend))
	g, err := gateway.New(conf, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	})
	client := &http.Client{Timeout: 5 * time.Second}
	for _, p := range paths {
		resp, err := client.Get("http://" + g.AdminAddr() + p)
		if err != nil {
			t.Errorf("GET %s on the admin listener: %v", p, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s on the admin listener of a ready gateway: %s %s", p, resp.Status, body)
		}
	}
}
