#!/usr/bin/env bash
# Install certloop on a plain Linux server with systemd, idempotently (run it again to upgrade or repair):
#
#   sudo deploy/install.sh [--wheel dist/certloop-X.whl] [--extras postgres] [--python python3.11]
#   sudo deploy/install.sh --prefix /tmp/root     # a throwaway root for tests and packaging
#
# Steps, in this order:
#   1. check the environment: Linux, Python >= 3.11 (else: use the container image), systemd, the
#      exporter's and the renewer's ports free (or held by our own running services);
#   2. create the system user `certloop` (systemd-sysusers, from deploy/systemd/certloop.sysusers.conf) and
#      the directories: /etc/certloop, /var/lib/certloop-renewer, /var/backups/certloop;
#   3. install the wheel (built from this checkout unless --wheel) into its own virtualenv /opt/certloop,
#      linked as /usr/local/bin/certloop;
#   4. install the units: certloop-exporter, certloop-renewer, certloop-backup.service + .timer, and the
#      logrotate file;
#   5. install the configs from deploy/config/ and generate the secrets (renewer token, keystore key,
#      backup passphrase), each only when missing: an operator's edits and keys are never overwritten;
#   6. without --prefix: systemctl daemon-reload and enable the units (not start: edit the configs first).
#
# With --prefix every path above lives under DIR, the user goes into DIR/etc/passwd (systemd-sysusers
# --root), ownership uses the ids from there, and nothing touches the running system (no systemctl, no
# port check unless --check-ports). A prefix install is not relocatable: the venv records its path.
set -euo pipefail

SOURCE=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=""
WHEEL=""
EXTRAS=""
PYTHON=${PYTHON:-python3}
EXPORTER_PORT=10793
RENEWER_PORT=10794
CHECK_PORTS=""

usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

while (($#)); do
  case $1 in
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --wheel) WHEEL=${2:?--wheel needs a file}; shift 2 ;;
    --extras) EXTRAS=${2:?--extras needs a list like postgres,mysql}; shift 2 ;;
    --python) PYTHON=${2:?--python needs an interpreter}; shift 2 ;;
    --exporter-port) EXPORTER_PORT=${2:?}; shift 2 ;;
    --renewer-port) RENEWER_PORT=${2:?}; shift 2 ;;
    --check-ports) CHECK_PORTS=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ $EXTRAS =~ ^[a-z0-9,]*$ ]] || die "--extras: expected names like postgres,mysql,s3, got '$EXTRAS'"
for port in "$EXPORTER_PORT" "$RENEWER_PORT"; do
  [[ $port =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "ports must be 1-65535, got '$port'"
done
if [[ -n $PREFIX ]]; then
  mkdir -p "$PREFIX"
  PREFIX=$(cd "$PREFIX" && pwd)
  [[ $PREFIX != / ]] || die "--prefix /: install without --prefix instead"
fi
R=$PREFIX  # every installed path is "$R/..."

# --- 1. the environment -------------------------------------------------------------------------------
[[ $(uname -s) == Linux ]] || die "certloop's units need Linux with systemd; elsewhere run the container image (compose/Dockerfile)"
if [[ -r /etc/os-release ]]; then
  # shellcheck disable=SC1091
  os=$(. /etc/os-release && echo "${PRETTY_NAME:-$ID}")
  say "OS: $os"
fi
command -v "$PYTHON" >/dev/null || die "no $PYTHON: install Python 3.11 or newer (e.g. apt-get install python3 python3-venv), or run the container image: docker build -f compose/Dockerfile -t certloop ."
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  die "$PYTHON is $("$PYTHON" -c 'import platform; print(platform.python_version())'); certloop needs 3.11 or newer. Install a newer Python (--python PATH) or run the container image: docker build -f compose/Dockerfile -t certloop ."
fi
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || die "$PYTHON has no venv/ensurepip module: apt-get install python3-venv"
say "Python: $("$PYTHON" -c 'import platform; print(platform.python_version())') ($PYTHON)"
command -v systemd-sysusers >/dev/null || die "systemd-sysusers not found: certloop installs systemd units and needs systemd"
if [[ -z $PREFIX ]]; then
  [[ $(id -u) -eq 0 ]] || die "run as root (or use --prefix DIR for a throwaway root)"
  [[ -d /run/systemd/system ]] || die "this system is not running systemd: run the container image instead (compose/)"
  CHECK_PORTS=1
fi

port_in_use() {  # true when something accepts connections on 127.0.0.1:$1
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
if [[ -n $CHECK_PORTS ]]; then
  for pair in "exporter:$EXPORTER_PORT" "renewer:$RENEWER_PORT"; do
    name=${pair%%:*} port=${pair##*:}
    if port_in_use "$port"; then
      if [[ -z $PREFIX ]] && systemctl is-active --quiet "certloop-$name"; then
        say "port $port: held by the running certloop-$name (upgrade)"
      else
        die "port $port (the $name's) is in use by another program: free it or pass --$name-port"
      fi
    fi
  done
fi

# --- 2. user and directories -----------------------------------------------------------------------------
install -d -m 0755 "$R/usr/lib/sysusers.d"
install -m 0644 "$SOURCE/deploy/systemd/certloop.sysusers.conf" "$R/usr/lib/sysusers.d/certloop.conf"
if [[ -n $PREFIX ]]; then
  install -d -m 0755 "$R/etc"
  systemd-sysusers --root="$R" "$R/usr/lib/sysusers.d/certloop.conf"
else
  systemd-sysusers "$R/usr/lib/sysusers.d/certloop.conf"
fi
uid=$(awk -F: '$1 == "certloop" {print $3}' "$R/etc/passwd")
gid=$(awk -F: '$1 == "certloop" {print $3}' "$R/etc/group")
[[ -n $uid && -n $gid ]] || die "systemd-sysusers did not create the user certloop"
install -d -m 0755 "$R/etc/certloop"
install -d -m 0700 -o "$uid" -g "$gid" "$R/var/lib/certloop-renewer" "$R/var/backups/certloop"

# --- 3. the package in its own virtualenv ------------------------------------------------------------------
venv=$R/opt/certloop
if [[ ! -x $venv/bin/python ]]; then
  "$PYTHON" -m venv "$venv"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ -z $WHEEL ]]; then
  say "building the wheel from $SOURCE"
  "$venv/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$work" "$SOURCE" 2> >(grep -v 'is ignored' >&2)
  WHEEL=$(ls "$work"/certloop-*.whl)
fi
[[ -f $WHEEL ]] || die "--wheel $WHEEL: no such file"
spec="$WHEEL"
[[ -n $EXTRAS ]] && spec="certloop[$EXTRAS] @ file://$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")"
# Same version already installed: pip leaves it alone; a new wheel replaces it (the upgrade path).
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$spec" 2> >(grep -v 'is ignored' >&2)
"$venv/bin/certloop" --version >/dev/null || die "the installed certloop does not run"
install -d -m 0755 "$R/usr/local/bin"
ln -sfn "$venv/bin/certloop" "$R/usr/local/bin/certloop"
say "installed $("$venv/bin/certloop" --version) into $venv"

# --- 4. units and logrotate --------------------------------------------------------------------------------
units=(certloop-exporter.service certloop-renewer.service certloop-backup.service certloop-backup.timer)
install -d -m 0755 "$R/etc/systemd/system" "$R/etc/logrotate.d"
for unit in "${units[@]}"; do
  sed -e "s|127.0.0.1:10793|127.0.0.1:$EXPORTER_PORT|g" -e "s|127.0.0.1:10794|127.0.0.1:$RENEWER_PORT|g" \
    "$SOURCE/deploy/systemd/$unit" >"$work/$unit"
  install -m 0644 "$work/$unit" "$R/etc/systemd/system/$unit"
done
install -m 0644 "$SOURCE/deploy/logrotate/certloop" "$R/etc/logrotate.d/certloop"

# --- 5. configs and secrets, only when missing ----------------------------------------------------------------
for name in exporter.yml renewer.yml; do
  if [[ -e $R/etc/certloop/$name ]]; then
    say "kept /etc/certloop/$name (yours); the current template is deploy/config/$name"
  else
    sed -e "s|127.0.0.1:10794|127.0.0.1:$RENEWER_PORT|" "$SOURCE/deploy/config/$name" >"$work/$name"
    install -m 0644 "$work/$name" "$R/etc/certloop/$name"
  fi
done
secret() {  # secret FILE PYTHON-EXPRESSION: create FILE (0640 root:certloop) from the expression's output
  if [[ ! -s $R/etc/certloop/$1 ]]; then
    (umask 077 && "$PYTHON" -c "import base64, os, secrets; print($2)" >"$R/etc/certloop/$1")
    chown "0:$gid" "$R/etc/certloop/$1"
    chmod 0640 "$R/etc/certloop/$1"
    say "generated /etc/certloop/$1"
  fi
}
secret renewer.token 'secrets.token_urlsafe(32)'
secret keystore.key 'base64.b64encode(os.urandom(32)).decode()'
secret backup.passphrase 'secrets.token_urlsafe(32)'
for name in exporter renewer; do  # under a prefix, check a copy whose paths point into it
  sed -e "s|/etc/certloop/|$R/etc/certloop/|g" -e "s|/var/lib/certloop-renewer|$R/var/lib/certloop-renewer|g" \
    "$R/etc/certloop/$name.yml" >"$work/check-$name.yml"
  "$venv/bin/certloop" "$name" --config.file="$work/check-$name.yml" --config.check >/dev/null 2>"$work/check" \
    || say "warning: /etc/certloop/$name.yml does not pass --config.check yet: $(tail -1 "$work/check")"
done

# --- 6. systemd -------------------------------------------------------------------------------------------
if [[ -z $PREFIX ]]; then
  systemctl daemon-reload
  systemctl enable certloop-exporter.service certloop-renewer.service certloop-backup.timer
  say "enabled; edit /etc/certloop/*.yml, then: systemctl start certloop-exporter certloop-renewer certloop-backup.timer"
else
  say "installed into $PREFIX (no systemctl: not the running system)"
fi
