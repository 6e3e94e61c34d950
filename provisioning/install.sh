#!/usr/bin/env bash
# Install (or update) the edge appliance on Raspberry Pi OS Bookworm (arm64) or Debian 12
# (amd64), from the source tree this script sits in. Idempotent: a second run changes
# nothing; after `git pull` it updates what changed.
#
#   sudo provisioning/install.sh                 device: intake, forward, uplink, panel
#   sudo provisioning/install.sh --start         ... and start edge.target now
#   sudo provisioning/install.sh --supervisor    ... run under supervisord instead of systemd
#   sudo provisioning/install.sh --central       central site: receive + fleet units
#   provisioning/install.sh --root /tmp/stage    stage everything under /tmp/stage: no apt,
#        no useradd, no chown, no systemctl; what those would do goes to
#        /tmp/stage/.edge-install-plan (the venv is real, for checks, but it is tied to its
#        staged path: build images in a chroot instead)
#
# Environment: EDGE_PIP_ARGS (extra pip arguments, e.g. --find-links for an offline
# wheelhouse), EDGE_PYTHON (default python3).
set -euo pipefail
umask 022

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=""
START=0
SUPERVISOR=0
CENTRAL=0
MQTT_CLIENTS=0
PI_EXTRA=auto
PYTHON=${EDGE_PYTHON:-python3}

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=$(realpath -m "$2"); shift 2 ;;
        --root=*) ROOT=$(realpath -m "${1#--root=}"); shift ;;
        --start) START=1; shift ;;
        --supervisor) SUPERVISOR=1; shift ;;
        --central) CENTRAL=1; shift ;;
        --mqtt-clients) MQTT_CLIENTS=1; shift ;;
        --pi) PI_EXTRA=yes; shift ;;
        --no-pi) PI_EXTRA=no; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage 2 ;;
    esac
done

STAGING=0
[ -n "$ROOT" ] && STAGING=1
if [ "$STAGING" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo), or stage with --root DIR" >&2
    exit 1
fi
if [ "$STAGING" -eq 1 ] && [ "$START" -eq 1 ]; then
    echo "install.sh: --start makes no sense with --root (nothing is started)" >&2
    exit 2
fi

PREFIX=/opt/edge
if [ "$CENTRAL" -eq 1 ]; then USER_NAME=edge-central; else USER_NAME=edge; fi
ARCH=$(uname -m)
if [ "$PI_EXTRA" = auto ]; then
    case "$ARCH" in aarch64|armv7l) PI_EXTRA=yes ;; *) PI_EXTRA=no ;; esac
fi
[ "$CENTRAL" -eq 1 ] && PI_EXTRA=no

# ------------------------------------------------------------------ helpers
PLAN_TMP=""
if [ "$STAGING" -eq 1 ]; then
    mkdir -p "$ROOT"
    PLAN_TMP=$(mktemp)
    trap 'rm -f "$PLAN_TMP"' EXIT
fi
say() { echo "install: $*" >&2; }
# run a system-changing command now, or (staging) write it into the plan
act() {
    if [ "$STAGING" -eq 1 ]; then
        echo "$*" >> "$PLAN_TMP"
    else
        say "$*"
        "$@"
    fi
}
# put a file in place only if its content or mode differs (keeps mtimes on re-runs)
put() { # src dest mode
    local src=$1 dest=$ROOT$2 mode=$3
    mkdir -p "$(dirname "$dest")"
    if ! cmp -s "$src" "$dest" 2>/dev/null; then
        install -m "$mode" "$src" "$dest.edge-new"
        mv -f "$dest.edge-new" "$dest"
        say "wrote $2"
    fi
    [ "$(stat -c %a "$dest")" = "${mode#0}" ] || chmod "$mode" "$dest"
}
# a directory with mode and owner (owner applied now, or planned when staging)
dir() { # path mode owner:group
    local path=$ROOT$1
    mkdir -p "$path"
    [ "$(stat -c %a "$path")" = "${2#0}" ] || chmod "$2" "$path"
    own "$1" "$3"
}
own() { # path owner:group
    if [ "$STAGING" -eq 1 ]; then
        echo "chown $2 $1" >> "$PLAN_TMP"
    elif [ "$(stat -c %U:%G "$1")" != "$2" ]; then
        chown "$2" "$1"
    fi
}

# ------------------------------------------------------------------ 1. system packages
pkgs=(python3-venv ca-certificates util-linux iproute2 openssl)
[ "$MQTT_CLIENTS" -eq 1 ] && pkgs+=(mosquitto-clients)
[ "$SUPERVISOR" -eq 1 ] && pkgs+=(supervisor)
# RPi.GPIO has no wheels: pip builds it on the device
[ "$PI_EXTRA" = yes ] && pkgs+=(python3-dev gcc libc6-dev)
if [ "$STAGING" -eq 1 ]; then
    echo "apt-get install --no-install-recommends ${pkgs[*]} (those missing)" >> "$PLAN_TMP"
else
    missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        act apt-get update -qq
        DEBIAN_FRONTEND=noninteractive act apt-get install -y -qq --no-install-recommends \
            "${missing[@]}"
    fi
fi

# ------------------------------------------------------------------ 2. user and groups
# a fixed system user, not DynamicUser=: the spool and keys need one stable owner
if [ "$STAGING" -eq 1 ]; then
    echo "useradd --system --user-group --home-dir /var/lib/$USER_NAME --no-create-home" \
         "--shell /usr/sbin/nologin $USER_NAME (if missing)" >> "$PLAN_TMP"
    [ "$CENTRAL" -eq 0 ] && echo "groupadd --system gpio (if missing);" \
        "usermod -a -G gpio edge (if not a member)" >> "$PLAN_TMP"
else
    getent passwd "$USER_NAME" >/dev/null || act useradd --system --user-group \
        --home-dir "/var/lib/$USER_NAME" --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
    if [ "$CENTRAL" -eq 0 ]; then
        # Raspberry Pi OS has gpio; elsewhere make it so SupplementaryGroups=gpio resolves
        getent group gpio >/dev/null || act groupadd --system gpio
        id -nG edge | tr ' ' '\n' | grep -qx gpio || act usermod -a -G gpio edge
    fi
fi

# ------------------------------------------------------------------ 3. the venv
extras=""
[ "$PI_EXTRA" = yes ] && extras="[pi]"
VENV=$ROOT$PREFIX
[ -x "$VENV/bin/python" ] || { say "creating venv $PREFIX"; "$PYTHON" -m venv "$VENV"; }
# what gets installed: the package source, its metadata and the extras chosen
build=$(mktemp -d)
trap 'rm -rf "$build" ${PLAN_TMP:+"$PLAN_TMP"}' EXIT
(cd "$SRC" && tar --exclude=__pycache__ --exclude='*.pyc' -cf - pyproject.toml README.md edge) \
    | tar -xf - -C "$build"
stamp=$( (cd "$build" && find . -type f -print0 | sort -z | xargs -0 sha256sum;
          echo "extras=$extras"; "$VENV/bin/python" -V) | sha256sum | cut -d' ' -f1)
if [ "$(cat "$VENV/.edge-source-sha256" 2>/dev/null)" != "$stamp" ]; then
    say "installing edge$extras into $PREFIX"
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check ${EDGE_PIP_ARGS:-} \
        "$build$extras"
    # same version number, new source: replace the package itself too
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check ${EDGE_PIP_ARGS:-} \
        --no-deps --force-reinstall "$build"
    echo "$stamp" > "$VENV/.edge-source-sha256"
fi

# ------------------------------------------------------------------ 4. directories
if [ "$CENTRAL" -eq 0 ]; then
    dir /etc/edge 0750 root:edge
    dir /var/lib/edge 0700 edge:edge
    # keys and certificates already there (provisioning writes them): private keys belong
    # to the service user alone (0600, as edge provision writes them); certificates,
    # public keys and the config are read by group edge; anything else stays root's
    for f in "$ROOT"/etc/edge/*; do
        [ -f "$f" ] || continue
        case "$f" in
            *.key) mode=600; owner=edge:edge ;;
            *.crt|*.pub|*.pem|*.toml) mode=640; owner=root:edge ;;
            *) mode=600; owner=root:root ;;
        esac
        [ "$(stat -c %a "$f")" = "$mode" ] || chmod "$mode" "$f"
        own "${f#"$ROOT"}" "$owner"
    done
    put "$SRC/provisioning/sysctl.d/60-edge.conf" /etc/sysctl.d/60-edge.conf 0644
    put "$SRC/provisioning/tmpfiles.d/edge.conf" /etc/tmpfiles.d/edge.conf 0644
else
    dir /etc/edge-central 0750 root:edge-central
    dir /var/lib/edge-central 0700 edge-central:edge-central
fi

# ------------------------------------------------------------------ 5. services
if [ "$CENTRAL" -eq 1 ]; then
    units=(edge-central-receive.service edge-central-fleet.service)
    enable=("${units[@]}")
else
    units=(edge-intake.service edge-forward.service edge-uplink.service edge-panel.service
           edge.target)
    enable=(edge.target edge-intake.service edge-forward.service edge-uplink.service
            edge-panel.service)
fi
if [ "$SUPERVISOR" -eq 1 ]; then
    dir /var/log/edge 0750 root:edge
    put "$SRC/provisioning/supervisor/edge.conf" /etc/supervisor/conf.d/edge.conf 0644
fi
for u in "${units[@]}"; do
    put "$SRC/systemd/$u" "/etc/systemd/system/$u" 0644
done
if [ "$STAGING" -eq 1 ]; then
    if [ "$CENTRAL" -eq 0 ]; then
        echo "sysctl --load /etc/sysctl.d/60-edge.conf" >> "$PLAN_TMP"
        echo "systemd-tmpfiles --create /etc/tmpfiles.d/edge.conf" >> "$PLAN_TMP"
    fi
    if [ "$SUPERVISOR" -eq 1 ]; then
        echo "supervisorctl update" >> "$PLAN_TMP"
    else
        echo "systemctl daemon-reload" >> "$PLAN_TMP"
        echo "systemctl enable ${enable[*]}" >> "$PLAN_TMP"
    fi
else
    if [ "$CENTRAL" -eq 0 ]; then
        sysctl -q --load /etc/sysctl.d/60-edge.conf || say "could not apply sysctl (container?)"
        command -v systemd-tmpfiles >/dev/null && systemd-tmpfiles --create /etc/tmpfiles.d/edge.conf
    fi
    booted=0
    [ -d /run/systemd/system ] && booted=1
    [ "$booted" -eq 1 ] && systemctl daemon-reload
    if [ "$SUPERVISOR" -eq 1 ]; then
        # one supervisor at a time: make sure the systemd units do not run the same programs
        if [ "$booted" -eq 1 ]; then
            systemctl disable --now "${enable[@]}" 2>/dev/null || true
            systemctl enable --now supervisor.service
        fi
        command -v supervisorctl >/dev/null && { supervisorctl update || true; }
    else
        for u in "${enable[@]}"; do
            systemctl is-enabled --quiet "$u" 2>/dev/null || act systemctl enable "$u"
        done
        if [ "$START" -eq 1 ]; then
            if [ "$booted" -eq 1 ]; then
                if [ "$CENTRAL" -eq 1 ]; then act systemctl start "${enable[@]}"
                else act systemctl start edge.target; fi
            else
                say "systemd is not running here: enabled, not started"
            fi
        fi
    fi
fi

# ------------------------------------------------------------------ 6. the plan (staging)
if [ "$STAGING" -eq 1 ]; then
    plan=$ROOT/.edge-install-plan
    cmp -s "$PLAN_TMP" "$plan" 2>/dev/null || install -m 0644 "$PLAN_TMP" "$plan"
    say "staged under $ROOT; system changes listed in $plan"
else
    say "done: $("$PREFIX/bin/edge" --version 2>&1 || true)"
fi
