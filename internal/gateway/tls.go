package gateway

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"

	"github.com/sluice-gw/sluice/internal/config"
)

// certStore holds the client listener's certificate, replaced by reloads
// while connections keep being accepted: the TLS config asks it for the
// certificate at each handshake.
type certStore struct {
	mu       sync.Mutex // serialises load
	cert     atomic.Pointer[tls.Certificate]
	certPEM  []byte
	keyPEM   []byte
	certPath string
}

// load reads the certificate and key files and, if they parse and differ
// from what is served, serves them from the next handshake on. It reports
// whether anything changed; on an error the old certificate stays.
func (c *certStore) load(t *config.TLS) (changed bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	certPEM, err := os.ReadFile(t.Cert)
	if err != nil {
		return false, fmt.Errorf("server.tls.cert: %w", err)
	}
	keyPEM, err := os.ReadFile(t.Key)
	if err != nil {
		return false, fmt.Errorf("server.tls.key: %w", err)
	}
	if c.cert.Load() != nil && bytes.Equal(certPEM, c.certPEM) && bytes.Equal(keyPEM, c.keyPEM) {
		return false, nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("server.tls: %s and %s: %w", t.Cert, t.Key, err)
	}
	c.cert.Store(&pair)
	c.certPEM, c.keyPEM, c.certPath = certPEM, keyPEM, t.Cert
	return true, nil
}

// tlsConfig is the client listener's TLS: 1.2 and up, and for 1.2 only
// ECDHE key exchange with AEAD ciphers (Mozilla's "intermediate"
// profile; 1.3's suites are all AEAD and not configurable).
func (c *certStore) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cert.Load(), nil
		},
	}
}

// reloadCertificate reads the certificate again for a reload; a file that
// cannot be loaded fails the reload, and the old certificate stays.
func (g *Gateway) reloadCertificate(t *config.TLS, trigger string) error {
	if g.certs == nil || t == nil {
		return nil
	}
	changed, err := g.certs.load(t)
	if err != nil {
		return err
	}
	if changed {
		g.log.Info("tls certificate reloaded", "trigger", trigger, "cert", t.Cert)
	}
	return nil
}

// redirectServer answers every request with a redirect to the same URL
// over https on the client listener's port.
func redirectServer(httpsListen string, s config.Server, log slogPrinter) *fasthttp.Server {
	_, port, _ := net.SplitHostPort(httpsListen)
	suffix := ""
	if port != "443" {
		suffix = ":" + port
	}
	return clientServer(s, func(ctx *fasthttp.RequestCtx) {
		host := string(ctx.Host())
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		status := fasthttp.StatusMovedPermanently
		if !ctx.IsGet() && !ctx.IsHead() {
			status = fasthttp.StatusPermanentRedirect // keeps the method and body (RFC 9110 15.4.9)
		}
		if host == "" || !validHost(host) {
			ctx.Error(`{"error":{"code":"bad_request","message":"a redirect to https needs a valid Host header"}}`, fasthttp.StatusBadRequest)
			return
		}
		ctx.Response.Header.Set("Location", "https://"+host+suffix+string(ctx.RequestURI()))
		ctx.Response.Header.Set("Content-Length", strconv.Itoa(0))
		ctx.SetStatusCode(status)
	}, log)
}

// validHost reports whether h may go into a Location: letters, digits,
// '.', '-', and the brackets and colons of an IPv6 literal.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '[' || c == ']' || c == ':') {
			return false
		}
	}
	return true
}
