// Package nginximport translates an nginx configuration into a gateway
// config (gateway import-nginx).
//
// It works in three steps, each finished before the next starts:
//
//	parse      the file and every file it includes become one tree of
//	           directives, each with its file and line (parse.go,
//	           include.go). The tokenizer follows nginx's own
//	           (ngx_conf_file.c: ngx_conf_read_token), so a file nginx
//	           accepts reads the same here: # comments at the start of a
//	           word, single and double quotes with backslash escapes, words
//	           ended by whitespace, ';' or '{' ("${var}" excepted).
//	translate  the tree is walked the way nginx reads it: http, the server
//	           that proxies, its locations, with the inheritance of
//	           directives from outer blocks (translate.go and one file per
//	           concern: upstreams, locations, split_clients, mirror,
//	           limit_req, proxy_cache). Every directive ends up either
//	           translated, accepted as structure (events, user, pid...), or
//	           in the list of untranslated directives with the reason.
//	emit       the result is written as YAML in a fixed order, with
//	           comments naming the nginx lines each block comes from
//	           (emit.go).
//
// The translation aims at the same behaviour, not the same text: where the
// gateway's default differs from nginx's and the difference would fail
// requests nginx served (nginx waits 60s for a worker, the gateway 30s),
// nginx's default is written out; where the two cannot be made to agree,
// the directive is listed with the reason.
package nginximport
