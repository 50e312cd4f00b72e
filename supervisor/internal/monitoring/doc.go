// Package monitoring checks the farm's monitoring files in deploy/ against
// the real tools and a real agent: the alert rules with promtool (their
// unit tests, deploy/prometheus/stoker-alerts.test.yml), a real Prometheus
// server scraping a running agent and evaluating the rules on what it
// scraped, and the Grafana dashboard's queries against the metric names
// the agent exposes. It has no code of its own beyond the tests' helpers;
// the tools come from Debian's prometheus package, which
// scripts/setup-env.sh installs.
package monitoring
