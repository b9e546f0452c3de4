// Command backend is the stand-in model server used by bench/run.sh.
//
// It answers every request with 200 and a fixed ~120-byte JSON prediction so
// that the benchmark measures the proxy in front of it, not the backend.
// It logs nothing per request on purpose: logging would cost CPU on the same
// cores the proxies are being measured on.
//
// -delay makes it wait that long before each answer: the benchmark runs a
// second, slow instance as a shadow pool that answers ~100x later than the
// primary.
package main

import (
	"flag"
	"log"
	"time"

	"github.com/valyala/fasthttp"
)

// body is built once; every response shares it.
var body = []byte(`{"prediction":"setosa","probabilities":{"setosa":0.97,"versicolor":0.02,"virginica":0.01},"model":"iris","model_version":"1"}`)

func main() {
	listen := flag.String("listen", "127.0.0.1:18081", "address to listen on")
	delay := flag.Duration("delay", 0, "wait this long before each answer (a slow backend)")
	flag.Parse()
	if *delay < 0 {
		log.Fatalf("-delay must not be negative, got %v", *delay)
	}

	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if *delay > 0 {
				time.Sleep(*delay)
			}
			ctx.SetStatusCode(fasthttp.StatusOK)
			ctx.SetContentType("application/json")
			ctx.SetBody(body)
		},
		Name:               "bench-backend",
		DisableKeepalive:   false, // keep-alive on: proxies reuse upstream connections
		IdleTimeout:        60 * time.Second,
		NoDefaultDate:      true,
		MaxRequestBodySize: 1 << 20,
	}
	log.Printf("bench backend listening on %s (delay %v)", *listen, *delay)
	if err := srv.ListenAndServe(*listen); err != nil {
		log.Fatal(err)
	}
}
