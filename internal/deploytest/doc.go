// Package deploytest checks the files shipped under deploy/ and the
// Dockerfile against the code, so that they cannot drift from it:
//
//   - the Dockerfile, the nginx-compat compose stack and the Kubernetes
//     manifests name binaries, ports, config paths, probe endpoints and
//     model files that exist, and their gateway configs pass validation;
//   - deploy/nginx-compat/run-local.sh brings the compose-equivalent stack
//     up as local processes and answers over HTTPS;
//   - every metric and label that the Grafana dashboard (deploy/grafana)
//     and the Prometheus alerting rules (deploy/prometheus) query is
//     exported by a real gateway, the rules pass promtool, and a real
//     Prometheus scraping an in-process gateway evaluates them.
//
// The package holds tests only.
package deploytest
