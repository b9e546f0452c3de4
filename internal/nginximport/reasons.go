package nginximport

import (
	"fmt"
	"strings"
)

// Why a directive is not translated, for those the translation does not
// look at. Each says what the gateway does instead, so the operator can
// tell a harmless line from one that needs work.
const (
	whyFiles       = "the gateway serves no files: it only proxies"
	whyBuffers     = "no equivalent: the gateway manages its buffers itself"
	whyLogs        = "the gateway writes no access log: it logs events to stderr (-log-format text|json) and counts every request in /metrics on the admin port"
	whyTLSProfile  = "the gateway's TLS settings are fixed: TLS 1.2 and 1.3, AEAD ciphers only (Mozilla's intermediate profile), its own session handling"
	whyClientCerts = "the gateway does not ask for or verify client certificates"
	whyUpstreamTLS = "the gateway speaks plain HTTP to its backends"
	whyGzip        = "the gateway does not compress answers (a worker may compress its own)"
	whyRespHeaders = "the gateway passes the worker's answer headers on as they are (hop-by-hop ones excepted) and adds none of its own choosing"
	whyKeepalive   = "not translated on purpose: nginx's keepalive N is how many idle connections each worker process keeps for reuse, and it limits nothing; the gateway always keeps connections to backends alive, and its max_conns is a cap on connections per backend, which nginx does not have here: writing N there would make requests wait that nginx would have served"
	whyUpstreamKA  = "the gateway keeps connections to backends alive and closes idle ones itself"
	whyAffinity    = "the gateway has no per-client affinity to a backend (a split's sticky key picks a pool, not a backend): the pool balances round robin"
	whyPlus        = "NGINX Plus: no gateway equivalent"
	whyNoVars      = "the gateway has no variables"
	whyUnused      = "applies to no location this import translated"
)

// reasons are the fixed reasons, by directive name.
var reasons = map[string]string{
	// Files and content.
	"root": whyFiles, "alias": whyFiles, "index": whyFiles, "try_files": whyFiles, "autoindex": whyFiles,
	"sendfile": whyFiles, "sendfile_max_chunk": whyFiles, "tcp_nopush": whyFiles, "aio": whyFiles, "directio": whyFiles,
	"open_file_cache": whyFiles, "open_file_cache_valid": whyFiles, "open_file_cache_errors": whyFiles, "open_file_cache_min_uses": whyFiles,
	"types":                          "the gateway passes the worker's Content-Type on: it serves no files to type",
	"default_type":                   "the gateway passes the worker's Content-Type on: it serves no files to type",
	"types_hash_max_size":            whyFiles,
	"types_hash_bucket_size":         whyFiles,
	"charset":                        "the gateway does not change the answer's charset",
	"expires":                        whyRespHeaders,
	"etag":                           whyFiles,
	"if_modified_since":              whyFiles,
	"tcp_nodelay":                    "Go sets TCP_NODELAY on every connection",
	"server_tokens":                  "no equivalent: the gateway writes no version into its error pages",
	"server_names_hash_bucket_size":  "no equivalent: the gateway needs no hash sizing",
	"server_names_hash_max_size":     "no equivalent: the gateway needs no hash sizing",
	"variables_hash_max_size":        "no equivalent: the gateway needs no hash sizing",
	"map_hash_bucket_size":           "no equivalent: the gateway needs no hash sizing",
	"proxy_headers_hash_max_size":    "no equivalent: the gateway needs no hash sizing",
	"proxy_headers_hash_bucket_size": "no equivalent: the gateway needs no hash sizing",

	// Logs and compression.
	"access_log": whyLogs, "log_format": whyLogs, "open_log_file_cache": whyLogs, "log_not_found": whyLogs,
	"log_subrequest": whyLogs, "rewrite_log": whyLogs,
	"gzip": whyGzip, "gzip_types": whyGzip, "gzip_comp_level": whyGzip, "gzip_min_length": whyGzip, "gzip_proxied": whyGzip,
	"gzip_vary": whyGzip, "gzip_buffers": whyGzip, "gzip_http_version": whyGzip, "gzip_disable": whyGzip, "gzip_static": whyGzip,
	"gunzip": whyGzip, "brotli": whyGzip,

	// Headers.
	"add_header":             whyRespHeaders,
	"add_trailer":            whyRespHeaders,
	"more_set_headers":       whyRespHeaders,
	"proxy_hide_header":      whyRespHeaders,
	"proxy_pass_header":      whyRespHeaders,
	"proxy_ignore_headers":   "the gateway caches by its own rules (see the README's response cache) and passes the worker's headers on",
	"proxy_redirect":         "the gateway does not rewrite the Location and Refresh headers of answers",
	"proxy_cookie_domain":    "the gateway does not rewrite the cookies of answers",
	"proxy_cookie_path":      "the gateway does not rewrite the cookies of answers",
	"proxy_cookie_flags":     "the gateway does not rewrite the cookies of answers",
	"sub_filter":             "the gateway does not rewrite answer bodies",
	"underscores_in_headers": "the gateway passes header names with underscores on",
	"ignore_invalid_headers": "the gateway refuses requests with invalid header names",

	// Proxying details.
	"proxy_http_version":            "the gateway always speaks HTTP/1.1 to backends, with keep-alive",
	"proxy_buffering":               whyBuffers,
	"proxy_buffers":                 whyBuffers,
	"proxy_buffer_size":             whyBuffers,
	"proxy_busy_buffers_size":       whyBuffers,
	"proxy_max_temp_file_size":      whyBuffers,
	"proxy_temp_file_write_size":    whyBuffers,
	"proxy_request_buffering":       whyBuffers,
	"proxy_temp_path":               whyBuffers,
	"client_body_buffer_size":       whyBuffers,
	"client_body_temp_path":         whyBuffers,
	"client_body_in_file_only":      whyBuffers,
	"fastcgi_temp_path":             whyBuffers,
	"uwsgi_temp_path":               whyBuffers,
	"scgi_temp_path":                whyBuffers,
	"output_buffers":                whyBuffers,
	"postpone_output":               whyBuffers,
	"proxy_intercept_errors":        "the gateway passes the worker's error answers on as they are, and writes its own errors as JSON",
	"error_page":                    "the gateway passes the worker's error answers on as they are, and writes its own errors as JSON",
	"proxy_pass_request_body":       "the gateway always sends the request's body upstream",
	"proxy_pass_request_headers":    "the gateway always sends the request's headers upstream",
	"proxy_next_upstream_timeout":   "not translated: the route's timeout bounds the whole request, retries included, which is not what this bounds",
	"proxy_socket_keepalive":        "the gateway sets TCP keep-alive on its connections itself",
	"proxy_bind":                    "the gateway connects from the address the system picks",
	"proxy_method":                  "the gateway sends the client's method",
	"proxy_set_body":                "the gateway sends the client's body",
	"proxy_limit_rate":              "the gateway does not throttle reading answers",
	"proxy_store":                   whyFiles,
	"proxy_cache_key":               "the gateway keys its cache on the route, pool, method, path and query, body and vary values (see the README's response cache)",
	"proxy_cache_use_stale":         "the gateway never serves a stale answer: an entry is served until its ttl, then fetched again",
	"proxy_cache_background_update": "the gateway never serves a stale answer: an entry is served until its ttl, then fetched again",
	"proxy_cache_revalidate":        "the gateway does not revalidate entries: an entry is served until its ttl, then fetched again",
	"proxy_cache_bypass":            "the gateway skips its cache only on the client's Cache-Control: no-cache or no-store",
	"proxy_no_cache":                "the gateway skips its cache only on the client's Cache-Control: no-store or the worker's no-store, private or no-cache",
	"proxy_cache_min_uses":          "the gateway stores an answer on its first miss",
	"proxy_cache_lock_timeout":      "a coalesced request waits no longer than its own timeouts allow",
	"proxy_cache_lock_age":          "a coalesced request waits no longer than its own timeouts allow",
	"proxy_ssl_server_name":         whyUpstreamTLS,
	"proxy_ssl_verify":              whyUpstreamTLS,
	"proxy_ssl_trusted_certificate": whyUpstreamTLS,
	"proxy_ssl_certificate":         whyUpstreamTLS,
	"proxy_ssl_certificate_key":     whyUpstreamTLS,
	"proxy_ssl_protocols":           whyUpstreamTLS,
	"proxy_ssl_ciphers":             whyUpstreamTLS,
	"proxy_ssl_name":                whyUpstreamTLS,
	"proxy_ssl_session_reuse":       whyUpstreamTLS,
	"resolver":                      "the gateway resolves backend names with the system resolver",
	"resolver_timeout":              "the gateway resolves backend names with the system resolver",
	"fastcgi_pass":                  "the gateway proxies HTTP only, not FastCGI",
	"uwsgi_pass":                    "the gateway proxies HTTP only, not uwsgi",
	"scgi_pass":                     "the gateway proxies HTTP only, not SCGI",
	"grpc_pass":                     "the gateway proxies HTTP/1.1, not gRPC",
	"memcached_pass":                "the gateway proxies HTTP only",

	// Client connections.
	"client_header_timeout":        "nginx times each read of the headers; the gateway's server.read_timeout (default 10s) bounds the whole request, headers and body",
	"client_body_timeout":          "nginx times each read of the body; the gateway's server.read_timeout (default 10s) bounds the whole request, headers and body",
	"send_timeout":                 "nginx times each write of the answer; the gateway's server.write_timeout (default 30s) bounds writing the whole answer",
	"client_header_buffer_size":    "the gateway's server.max_header_bytes (default 16KiB) bounds the request line and headers together",
	"large_client_header_buffers":  "the gateway's server.max_header_bytes (default 16KiB) bounds the request line and headers together",
	"keepalive_requests":           "the gateway does not cap the requests of a client connection",
	"keepalive_time":               "the gateway closes a client connection only when idle for server.idle_timeout",
	"lingering_close":              "no equivalent: the gateway closes connections its own way",
	"lingering_time":               "no equivalent: the gateway closes connections its own way",
	"lingering_timeout":            "no equivalent: the gateway closes connections its own way",
	"reset_timedout_connection":    "no equivalent: the gateway closes connections its own way",
	"http2":                        "the gateway serves HTTP/1.1 (clients that offer HTTP/2 fall back to it)",
	"http2_max_concurrent_streams": "the gateway serves HTTP/1.1 (clients that offer HTTP/2 fall back to it)",
	"ssl":                          "\"ssl on\" was removed in nginx 1.25: write listen ... ssl",
	"ssl_protocols":                whyTLSProfile, "ssl_ciphers": whyTLSProfile, "ssl_prefer_server_ciphers": whyTLSProfile,
	"ssl_ecdh_curve": whyTLSProfile, "ssl_session_cache": whyTLSProfile, "ssl_session_timeout": whyTLSProfile,
	"ssl_session_tickets": whyTLSProfile, "ssl_session_ticket_key": whyTLSProfile, "ssl_dhparam": whyTLSProfile,
	"ssl_buffer_size": whyTLSProfile, "ssl_early_data": whyTLSProfile, "ssl_conf_command": whyTLSProfile,
	"ssl_stapling": whyTLSProfile, "ssl_stapling_verify": whyTLSProfile, "ssl_stapling_file": whyTLSProfile, "ssl_stapling_responder": whyTLSProfile,
	"ssl_reject_handshake":   whyTLSProfile,
	"ssl_client_certificate": whyClientCerts, "ssl_verify_client": whyClientCerts, "ssl_verify_depth": whyClientCerts,
	"ssl_trusted_certificate": whyClientCerts, "ssl_crl": whyClientCerts,
	"ssl_password_file": "the gateway reads unencrypted private keys only",

	// Request handling.
	"rewrite":                 "the gateway forwards the path unchanged but for a strip_prefix: only \"rewrite ^/prefix/(.*)$ /$1 break;\" in that prefix's own location translates (to strip_prefix)",
	"return":                  "the gateway only proxies: its own answers are a 404 where no route matches and the health endpoints on the admin port",
	"if":                      "if blocks are not translated, nor anything inside them",
	"set":                     whyNoVars,
	"map":                     whyNoVars,
	"geo":                     whyNoVars,
	"geoip_country":           whyNoVars,
	"limit_except":            "the gateway's match.methods would answer other methods 404, not 403: not translated",
	"allow":                   "the gateway has no IP allow or deny lists",
	"deny":                    "the gateway has no IP allow or deny lists",
	"satisfy":                 "the gateway has no IP allow or deny lists",
	"auth_basic":              "the gateway has no basic authentication",
	"auth_basic_user_file":    "the gateway has no basic authentication",
	"auth_request":            "the gateway does not ask another service to authorise a request",
	"auth_request_set":        "the gateway does not ask another service to authorise a request",
	"limit_conn":              "the gateway's max_in_flight caps a route's requests in total, not per key: not translated",
	"limit_conn_zone":         "the gateway's max_in_flight caps a route's requests in total, not per key: not translated",
	"limit_conn_status":       "the gateway's max_in_flight caps a route's requests in total, not per key: not translated",
	"limit_conn_log_level":    "the gateway's max_in_flight caps a route's requests in total, not per key: not translated",
	"limit_rate":              "the gateway does not throttle answers",
	"limit_rate_after":        "the gateway does not throttle answers",
	"limit_req_log_level":     "the gateway logs no line per refusal; it counts them in sluice_ratelimit_decisions_total",
	"stub_status":             "the gateway's numbers are at /metrics on the admin port",
	"internal":                "only nginx's own subrequests reach this location",
	"absolute_redirect":       "the gateway sends no redirects of its own but redirect_http's",
	"port_in_redirect":        "the gateway sends no redirects of its own but redirect_http's",
	"server_name_in_redirect": "the gateway sends no redirects of its own but redirect_http's",
	"real_ip_header":          whyUnused,
	"real_ip_recursive":       whyUnused,

	// Upstream blocks.
	"keepalive":         whyKeepalive,
	"keepalive_timeout": whyUpstreamKA, // in an upstream; http's and server's are translated
	"zone":              "the gateway keeps each pool's state in its own memory, shared by all its requests",
	"ip_hash":           whyAffinity,
	"hash":              whyAffinity,
	"sticky":            whyPlus,
	"queue":             whyPlus + " (a gateway request that finds every connection busy waits up to the pool timeout)",
	"ntlm":              whyPlus,
	"health_check":      whyPlus + "; the gateway's health block is the same idea: add one to the pool",
	"least_time":        whyPlus,

	// The top level.
	"worker_rlimit_nofile":    "the gateway is one Go process: raise its open files limit where it runs",
	"worker_connections":      "the gateway is one Go process, with no per-worker connection limit",
	"worker_cpu_affinity":     "the gateway is one Go process that uses every CPU",
	"worker_priority":         "the gateway is one Go process",
	"worker_shutdown_timeout": "the gateway's server.drain_timeout (default 15s) bounds a graceful stop",
	"load_module":             "no modules in the gateway",
	"env":                     "the gateway reads ${NAME} from its environment in any config value",
	"daemon":                  "the gateway runs in the foreground; run it under a supervisor",
	"master_process":          "the gateway is one Go process",
	"thread_pool":             "the gateway is one Go process",
	"pcre_jit":                "no regular expressions in the gateway's routing",
	"stream":                  "the gateway proxies HTTP only, not TCP or UDP streams",
	"mail":                    "the gateway proxies HTTP only",
	"include":                 "file not found here: nginx would refuse to start without it, and none of its directives are translated",
}

// translatable are directives the translation reads where they apply;
// one still unhandled at the end applied nowhere that was translated.
var translatable = map[string]bool{
	"proxy_pass": true, "proxy_connect_timeout": true, "proxy_read_timeout": true, "proxy_send_timeout": true,
	"proxy_next_upstream": true, "proxy_next_upstream_tries": true, "client_max_body_size": true,
	"limit_req": true, "limit_req_status": true, "limit_req_dry_run": true, "limit_req_zone": true,
	"proxy_cache": true, "proxy_cache_valid": true, "proxy_cache_lock": true, "proxy_cache_methods": true, "proxy_cache_path": true,
	"mirror": true, "mirror_request_body": true, "ssl_certificate": true, "ssl_certificate_key": true,
	"set_real_ip_from": true, "listen": true, "server_name": true, "split_clients": true, "upstream": true,
	"location": true, "server": true,
}

// reason says why d, written in the block parent (nil at the top), was
// not translated.
func reason(d, parent *Directive) string {
	switch {
	case d.Name == "proxy_set_header":
		return setHeaderReason(d)
	case parent != nil && parent.Name == "upstream" && strings.HasPrefix(d.Name, "keepalive_"):
		return whyUpstreamKA
	case d.Name == "keepalive_timeout":
		return "the gateway's idle_timeout is the listener's: a location's keepalive_timeout is not translated"
	}
	if why, ok := reasons[d.Name]; ok {
		return why
	}
	switch {
	case translatable[d.Name]:
		return whyUnused
	case strings.HasPrefix(d.Name, "ssl_"):
		return whyTLSProfile
	case strings.HasPrefix(d.Name, "proxy_ssl_"):
		return whyUpstreamTLS
	case strings.HasPrefix(d.Name, "gzip_"):
		return whyGzip
	case strings.HasPrefix(d.Name, "fastcgi_"), strings.HasPrefix(d.Name, "uwsgi_"), strings.HasPrefix(d.Name, "scgi_"), strings.HasPrefix(d.Name, "grpc_"):
		return "the gateway proxies HTTP only"
	case strings.HasSuffix(d.Name, "_by_lua_block"), strings.HasSuffix(d.Name, "_by_lua"), strings.HasPrefix(d.Name, "lua_"), strings.HasPrefix(d.Name, "js_"), strings.HasPrefix(d.Name, "perl"):
		return "no scripting in the gateway"
	}
	return fmt.Sprintf("no gateway equivalent for %s", d.Name)
}

// setHeaderReason says what the gateway does about a header nginx sets
// on requests upstream.
func setHeaderReason(d *Directive) string {
	switch strings.ToLower(arg(d, 0)) {
	case "host":
		if v := arg(d, 1); v == "$host" || v == "$http_host" {
			return "the gateway passes the client's Host header on unchanged"
		}
		return "the gateway passes the client's Host header on; it cannot send another"
	case "x-forwarded-for", "x-real-ip", "x-forwarded-proto", "x-forwarded-host":
		return "the gateway sets X-Forwarded-For, X-Real-IP, X-Forwarded-Proto and X-Forwarded-Host itself (believing a client's own only from server.trusted_proxies)"
	case "x-request-id":
		return "the gateway sets X-Request-Id itself (keeping a sane one the client sent)"
	case "connection":
		return "the gateway manages its connections to backends itself (keep-alive always on)"
	case "upgrade":
		return "the gateway does not pass connection upgrades (WebSocket) on"
	}
	return "the gateway does not add or change request headers"
}
