#!/usr/bin/env bash
# Bootstrap everything `make test` and `make demo` need, from nothing, idempotently:
#   1. Debian packages for the real peers the tests drive (nginx, pebble, Prometheus, ...).
#   2. A virtualenv in .venv with certloop installed editable plus its dev extras.
# As root the Debian packages are installed; otherwise the exact install line is printed and we stop.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  nginx                         # the web server whose certificates we probe, renew and reload
  prometheus                    # scrapes the exporter; promtool checks metrics and rules
  prometheus-alertmanager       # routes alerts to the renewer; amtool checks config and templates
  prometheus-blackbox-exporter  # the peer our benchmark compares against
  pebble                        # a real ACME server (and pebble-challtestsrv for DNS)
  certbot                       # issuer backend driven for real
  lego                          # issuer backend driven for real
  dovecot-imapd                 # a real IMAP/POP3 server for STARTTLS tests
  dovecot-pop3d                 # dovecot's POP3 daemon: real STLS peer for STARTTLS tests
  slapd                         # OpenLDAP: real StartTLS (extended operation) peer for STARTTLS tests
  vsftpd                        # a real FTP server answering AUTH TLS for STARTTLS tests
  docker-compose                # validates compose files (`config`); no engine runs here
  openssl                       # fixtures inspect served material with s_client; s_server for interop tests
  gnutls-bin                    # gnutls-serv: a GnuTLS server for the TLS interoperability tests
  openjdk-17-jdk-headless       # javac/java: a JSSE server compiled at test time for interop tests
  procps                        # pkill/ps in fixtures' cleanup
  systemd                       # systemd-analyze verifies the units in deploy/systemd
  logrotate                     # checks deploy/logrotate/certloop (logrotate -d)
  wrk                           # the benchmark load generator (C, cheap; Lua cycles targets)
  valgrind                      # callgrind counts instructions for benchmarks/corework.py (A/B between trees)
  jsonnet                       # Debian 12 ships jsonnet 0.18: the mixin must render with it (tests render with both)
  dnsmasq-base                  # a real DNS server on loopback for resolver tests and name-target benchmarks
  prometheus-node-exporter      # host metrics the mixin's host alerts are evaluated on (tests/deploy)
  chromium                      # headless browser the status page tests drive (tests/renewer/test_status_browser.py)
  chromium-driver               # its WebDriver (/usr/bin/chromedriver): Selenium uses it, never downloads one
  fonts-wqy-microhei            # a CJK font, so the page's Chinese labels render in the browser tests' screenshot
)

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  line="apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=120 ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "certloop needs Debian packages that are not installed. Run as root:" >&2
    echo "  apt-get update && $line" >&2
    exit 1
  fi
  # Packages like nginx and prometheus start system services on install; the tests start
  # their own instances on loopback, so forbid service starts for the duration of the install.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -o DPkg::Lock::Timeout=120 -qq
  # shellcheck disable=SC2086
  $line
  ((created_policy)) && rm -f "$policy"
  # Debian's units may still have been started by a postinst outside policy-rc.d; they bind
  # the well-known ports we never use, but stop them so they do not hold CPU.
  for svc in nginx prometheus prometheus-alertmanager prometheus-blackbox-exporter prometheus-node-exporter dovecot; do
    pkill -x "$svc" 2>/dev/null || true
  done
fi

# kubectl renders deploy/kubernetes (built-in Kustomize v5: components, labels). Debian's
# kubernetes-client (1.20, Kustomize v2) cannot; the machine image provides a current kubectl.
if ! kubectl version --client 2>/dev/null | grep -q 'Kustomize Version: v5'; then
  echo "certloop needs kubectl with Kustomize v5 (kubectl 1.27 or newer) on PATH for tests/deploy" >&2
  exit 1
fi

PY=${PYTHON:-python3}
stamp=.venv/.certloop-installed
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi
