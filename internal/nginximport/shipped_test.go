package nginximport

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
)

// The nginx.conf of the docker-compose stack the gateway replaces.
const shippedNginxConf = "../../deploy/nginx-compat/nginx.conf"

// TestShippedNginxConfImports imports the stack's nginx.conf and checks
// the result is a config the gateway takes, with the stack's behaviour:
// TLS with the port-80 redirect, the 90/10 split by X-User-Id, and the
// per-key limit on every location that proxies.
func TestShippedNginxConfImports(t *testing.T) {
	if _, err := os.Stat(shippedNginxConf); err != nil {
		t.Skipf("%s is not there (yet): %v", shippedNginxConf, err)
	}
	res, err := File(shippedNginxConf)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range res.Notes {
		t.Logf("untranslated: %s", n)
	}
	// nginx read its certificate where docker-compose mounted ./ssl,
	// /etc/nginx/ssl; point the config at the same files in the checkout.
	yaml := strings.ReplaceAll(string(res.YAML), "/etc/nginx/ssl/", filepath.Join(filepath.Dir(shippedNginxConf), "ssl")+"/")
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("the translation does not pass config.Parse:\n%v\n%s", err, yaml)
	}
	if cfg.Server.TLS == nil || cfg.Server.RedirectHTTP == "" {
		t.Errorf("server %+v: want tls and redirect_http", cfg.Server)
	}
	var split *config.Split
	for _, r := range cfg.Routes {
		if r.Split != nil {
			split = r.Split
		}
		if len(r.RateLimit) == 0 {
			t.Errorf("route %s has no rate_limit; every proxying location of the stack limits by API key", r.Name)
		}
	}
	if split == nil || split.Sticky != "header:X-User-Id" || len(split.Variants) != 2 ||
		split.Variants[0].Weight != 90 || split.Variants[1].Weight != 10 {
		t.Errorf("split %+v: want 90/10 sticky on header:X-User-Id", split)
	}
	for _, n := range res.Notes {
		if strings.HasPrefix(n.Directive, "proxy_pass") || (strings.HasPrefix(n.Directive, "location") && !strings.HasPrefix(n.Directive, "location =")) {
			t.Errorf("a proxying location is not translated: %s", n)
		}
	}
}
