#!/usr/bin/env bash
# Install the system tools the tests and the demo need, if any is missing:
# sshfs, sshd (openssh-server), fusermount3 (fuse3), ssh-keygen. Debian/Ubuntu, as root or with sudo.
set -euo pipefail
need=()
command -v sshfs >/dev/null || need+=(sshfs)
command -v fusermount3 >/dev/null || need+=(fuse3)
[ -x /usr/sbin/sshd ] || command -v sshd >/dev/null || need+=(openssh-server)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v ip >/dev/null || need+=(iproute2)          # the network-namespace lab test
command -v setpriv >/dev/null || need+=(util-linux)    # sshfs dies with its parent (PDEATHSIG)
command -v busybox >/dev/null || need+=(busybox)       # device readings tested on a BusyBox shell too
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# sshd refuses to start without its privilege separation directory.
if [ "$(id -u)" -eq 0 ]; then mkdir -p /run/sshd; fi
if [ ! -e /dev/fuse ]; then
  echo "warning: /dev/fuse is missing; load the fuse module (modprobe fuse)" >&2
fi
