package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/testutil"
)

// writeSelfSigned writes a certificate for 127.0.0.1 and its key as PEM.
func writeSelfSigned(t *testing.T, dir string) (certPath, keyPath string) {
	return writeSelfSignedAs(t, dir, "sluice test")
}

// writeSelfSignedAs writes a certificate with the given common name.
func writeSelfSignedAs(t *testing.T, dir, name string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

func TestTLSTermination(t *testing.T) {
	rec := &recorder{}
	cert, key := writeSelfSigned(t, t.TempDir())
	g := startGateway(t, strings.Replace(onePool([]string{testutil.Backend(t, rec.handle)}, ""),
		`server: {listen: "127.0.0.1:0"}`,
		`server: {listen: "127.0.0.1:0", security_headers: true, tls: {cert: "`+cert+`", key: "`+key+`"}}`, 1))

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the test's own self-signed certificate
	}}
	resp, err := client.Get("https://" + g.ClientAddr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" || resp.TLS == nil {
		t.Fatalf("over TLS: %d %q (tls %v)", resp.StatusCode, body, resp.TLS != nil)
	}
	// security_headers: HSTS is sent over TLS (and only there, see
	// TestCORSPreflight).
	if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
		t.Errorf("Strict-Transport-Security = %q over TLS with security_headers, want max-age=31536000", got)
	}
	if h, _ := rec.last(); h.Get("X-Forwarded-Proto") != "https" {
		t.Fatalf("X-Forwarded-Proto = %q behind TLS, want https", h.Get("X-Forwarded-Proto"))
	}
	// Plain HTTP to the TLS port is not served as HTTP.
	if resp, err := httpClient.Get("http://" + g.ClientAddr() + "/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP was proxied on the TLS listener")
		}
	}
}

// servedName is the common name of the certificate the gateway presents.
func servedName(t *testing.T, addr string, cfg *tls.Config) (string, error) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

// A renewed certificate is served after a reload (SIGHUP, POST
// /admin/reload, or a config change), without a restart; a broken one is
// refused and the old one stays.
func TestTLSCertificateReloads(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeSelfSignedAs(t, dir, "first")
	cfg := strings.Replace(onePool([]string{testutil.Backend(t, (&recorder{}).handle)}, ""),
		`server: {listen: "127.0.0.1:0"}`,
		`server: {listen: "127.0.0.1:0", tls: {cert: "`+cert+`", key: "`+key+`"}}`, 1)
	g := startGateway(t, cfg)
	insecure := &tls.Config{InsecureSkipVerify: true} // the test's own certificates
	if name, err := servedName(t, g.ClientAddr(), insecure); err != nil || name != "first" {
		t.Fatalf("served %q (%v), want first", name, err)
	}
	writeSelfSignedAs(t, dir, "renewed")
	if _, err := g.Reload("signal"); err != nil {
		t.Fatalf("reload with a renewed certificate: %v", err)
	}
	if name, _ := servedName(t, g.ClientAddr(), insecure); name != "renewed" {
		t.Fatalf("after the reload the gateway serves %q, want renewed", name)
	}
	if err := os.WriteFile(key, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Reload("signal"); err == nil || g.LastError() == nil {
		t.Fatal("a broken key was accepted")
	}
	if name, _ := servedName(t, g.ClientAddr(), insecure); name != "renewed" {
		t.Fatalf("after a broken key the gateway serves %q, want the renewed one still", name)
	}
	// TLS 1.1 and below are refused.
	old := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}
	if _, err := servedName(t, g.ClientAddr(), old); err == nil {
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
}

// redirect_http answers plain HTTP with a redirect to the same URL over
// https, as an nginx port-80 server with "return 301 https://..." does.
func TestPlainHTTPRedirectsToHTTPS(t *testing.T) {
	cert, key := writeSelfSigned(t, t.TempDir())
	g := startGateway(t, strings.Replace(onePool([]string{testutil.Backend(t, (&recorder{}).handle)}, ""),
		`server: {listen: "127.0.0.1:0"}`,
		`server: {listen: "127.0.0.1:0", redirect_http: "127.0.0.1:0", tls: {cert: "`+cert+`", key: "`+key+`"}}`, 1))
	_, port, _ := net.SplitHostPort(g.ClientAddr())
	noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		method string
		status int
	}{{"GET", 301}, {"HEAD", 301}, {"POST", 308}} {
		req, _ := http.NewRequest(tc.method, "http://"+g.RedirectAddr()+"/v1/predict?x=1", strings.NewReader("{}"))
		req.Host = "models.example:80"
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := "https://models.example:" + port + "/v1/predict?x=1"
		if resp.StatusCode != tc.status || resp.Header.Get("Location") != want {
			t.Errorf("%s: %d Location %q, want %d %q", tc.method, resp.StatusCode, resp.Header.Get("Location"), tc.status, want)
		}
	}
	req, _ := http.NewRequest("GET", "http://"+g.RedirectAddr()+"/", nil)
	req.Host = "evil.example/path"
	if resp, err := noFollow.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("a Host with a slash: %d Location %q, want 400", resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}
